import csv
import gzip
import itertools
import json
import random
import struct

import pytest
import torch
import yaml

from spos import data as spos_data
from spos.cli import main
from spos.cost.table import cost_table
from spos.errors import SposError
from spos.genes import largest, smallest
from spos.nn.io import model_payload
from spos.nn.supernet import SuperNet
from spos.runs import save_checkpoint
from spos.search.config import SearchConfig
from spos.search.evaluator import Evaluator
from spos.search.evolution import pareto_front, search
from spos.space import Arch, SearchSpace


@pytest.fixture
def fake_accuracy(monkeypatch):
    """Replace evaluation by a fast deterministic score of the genes; record every evaluated arch."""
    calls: list[Arch] = []

    def score(self, arch: Arch) -> tuple[float, float]:
        calls.append(arch)
        acc = (sum(arch.blocks) + sum(arch.channels)) / (12 * len(arch.blocks))
        return acc, 1.0 - acc

    monkeypatch.setattr(Evaluator, "score", score)
    return calls


def small(**kw) -> SearchConfig:
    base = {"population": 12, "parents": 3, "generations": 5, "candidates": 20, "recal_images": 40, "holdout": 30,
            "batch_size": 16}  # fmt: skip
    return SearchConfig(**{**base, **kw})


def test_random_search_evaluates_n_distinct_candidates_all_within_constraints(supernet, data, fake_accuracy):
    table = cost_table(supernet.space)
    lo, hi = table(smallest(supernet.space)), table(largest(supernet.space))
    span = hi.macs - lo.macs
    limits = {"max_macs": lo.macs + 0.8 * span, "min_macs": lo.macs + 0.2 * span,
              "max_params": (lo.params + hi.params) / 2}  # fmt: skip

    class Latency:
        def predict(self, arch):  # ms: a stand-in proportional to MACs
            return table.macs(arch) / 1e5

    max_ms = (lo.macs + 0.65 * span) / 1e5  # binds before max_macs
    result = search(supernet, data, small(method="random", candidates=25, max_latency_ms=max_ms, **limits),
                    latency=Latency(), log=None)  # fmt: skip
    archs = [c["arch"] for c in result.candidates]
    assert len(archs) == 25 == len(set(archs)) == len(fake_accuracy)
    for arch in fake_accuracy:  # every evaluated candidate met every limit
        c = table(arch)
        assert limits["min_macs"] <= c.macs <= limits["max_macs"] and c.params <= limits["max_params"]
        assert c.macs / 1e5 <= max_ms
    assert all(c["latency_ms"] <= max_ms for c in result.candidates)


@pytest.mark.parametrize("limit,flag", [({"max_macs": 1.0}, "--max-macs"), ({"max_score": 1e-6}, "--max-score"),
                                        ({"min_macs": 1e12}, "--min-macs"), ({"max_params": 10}, "--max-params")])  # fmt: skip
def test_a_too_tight_constraint_stops_with_an_error_naming_it(supernet, data, fake_accuracy, limit, flag):
    with pytest.raises(SposError, match=f"{flag} .* is too tight"):
        search(supernet, data, small(**limit), log=None)
    assert fake_accuracy == []


def test_latency_limit_without_a_table_is_a_user_error(supernet, data, fake_accuracy):
    with pytest.raises(SposError, match="latency table"):
        search(supernet, data, small(max_latency_ms=5.0), log=None)


def test_evolution_keeps_the_top_parents_never_repeats_an_arch_and_improves(supernet, data, fake_accuracy):
    result = search(supernet, data, small(p_select=0.0, generations=6), log=None)
    cands = result.candidates
    assert len({c["arch"] for c in cands}) == len(cands) == len(fake_accuracy)
    by_gen = [[c for c in cands if c["generation"] == g] for g in range(6)]
    assert len(by_gen[0]) == 12 and all(len(g) == 12 - 3 for g in by_gen[1:])  # children fill to 12
    history = result.history
    assert [h["generation"] for h in history] == list(range(6))
    assert [h["evaluated"] for h in history] == [len(g) for g in by_gen]
    # Each record, recomputed from the candidates: best so far over every generation up to g,
    # and the population (with p_select 0: the top 3 of the previous one + generation g's
    # children), whose best never drops because those parents survive.
    pop: list[float] = []
    for g, h in enumerate(history):
        assert h["best_so_far"] == max(c["fitness"] for c in cands if c["generation"] <= g)
        pop = sorted(pop, reverse=True)[:3] + [c["fitness"] for c in by_gen[g]]
        assert h["best_fitness"] == max(pop)
        assert h["mean_fitness"] == pytest.approx(sum(pop) / len(pop))
    assert all(a["best_fitness"] <= b["best_fitness"] for a, b in itertools.pairwise(history))
    assert history[-1]["best_so_far"] > history[0]["best_fitness"]
    assert result.best["fitness"] == max(c["fitness"] for c in cands)


def test_fixing_one_half_searches_only_the_other(supernet, data, fake_accuracy, tiny_space):
    fixed = "0-1-23-3:2-3-45-6"
    arch = Arch.parse(fixed, tiny_space.stage_depths)
    search(supernet, data, small(fix_blocks=fixed, generations=3), log=None)
    assert all(a.blocks == arch.blocks for a in fake_accuracy)
    assert len({a.channels for a in fake_accuracy}) == len(fake_accuracy)
    fake_accuracy.clear()
    search(supernet, data, small(fix_channels=fixed, generations=3), log=None)
    assert all(a.channels == arch.channels for a in fake_accuracy)
    fake_accuracy.clear()
    search(supernet, data, small(genes="block", generations=3), log=None)
    assert all(a.channels == largest(tiny_space).channels for a in fake_accuracy)
    with pytest.raises(SposError, match="--fix-blocks"):
        search(supernet, data, small(genes="channel"), log=None)
    with pytest.raises(SposError, match="nothing to search"):
        small(fix_blocks=fixed, fix_channels=fixed)


def test_acc_minus_score_fitness(supernet, data, fake_accuracy):
    result = search(supernet, data, small(method="random", fitness="acc-score", score_ratio=0.5), log=None)
    for c in result.candidates:
        assert c["fitness"] == pytest.approx(c["accuracy"] - 0.5 * c["score"])
        assert c["score"] == pytest.approx(c["macs"] / 328e6 + c["params"] / 3.4e6)
    assert result.best["fitness"] == max(c["fitness"] for c in result.candidates)


def test_pareto_front_keeps_exactly_the_undominated():
    pts = [(1, 0.5), (2, 0.4), (2, 0.7), (3, 0.7), (4, 0.9), (5, 0.8), (0.5, 0.1)]
    cands = [{"arch": str(i), "macs": m, "accuracy": a} for i, (m, a) in enumerate(pts)]
    front = [(c["macs"], c["accuracy"]) for c in pareto_front(cands, "macs")]
    assert front == [(0.5, 0.1), (1, 0.5), (2, 0.7), (4, 0.9)]


def test_outputs_in_the_out_dir(supernet, data, fake_accuracy, tmp_path):
    result = search(supernet, data, small(generations=3, top_k=4), tmp_path, log=None)
    rows = list(csv.DictReader((tmp_path / "candidates.csv").open()))
    assert len(rows) == len(result.candidates)
    assert {"arch", "accuracy", "macs", "params", "score", "generation"} <= set(rows[0])
    assert {r["arch"] for r in rows} == {c["arch"] for c in result.candidates}
    best = json.loads((tmp_path / "best.json").read_text())
    fits = [c["fitness"] for c in best["top"]]
    assert len(fits) == 4 and fits == sorted(fits, reverse=True) and best["best"] == best["top"][0]
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["accuracy_vs_macs"] == result.pareto_macs and pareto["accuracy_vs_params"]
    for png in ("fitness.png", "pareto.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_extends_to_the_uninterrupted_result_and_refuses_changed_options(supernet, data, fake_accuracy, tmp_path):
    full = search(supernet, data, small(generations=4), tmp_path / "full", log=None)
    search(supernet, data, small(generations=2), tmp_path / "part", log=None)
    with pytest.raises(SposError, match="--resume"):
        search(supernet, data, small(generations=4), tmp_path / "part", log=None)
    with pytest.raises(SposError, match="mutation_prob"):
        search(supernet, data, small(generations=4, mutation_prob=0.3), tmp_path / "part", resume=True, log=None)
    resumed = search(supernet, data, small(generations=4), tmp_path / "part", resume=True, log=None)
    assert resumed.candidates == full.candidates and resumed.top == full.top


# ---- the CLI on generated IDX data and a supernet file ----------------------------------------


def _write_idx(path, array: bytes, dims: tuple[int, ...]) -> None:
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + array)


@pytest.fixture
def fashion_dir(tmp_path, monkeypatch):
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 300), ("val", 20)):
        images_file, labels_file = spos_data.FASHION_FILES[split]
        _write_idx(folder / images_file, bytes(rng.randrange(256) for _ in range(n * 784)), (n, 28, 28))
        _write_idx(folder / labels_file, bytes(rng.randrange(10) for _ in range(n)), (n,))
    monkeypatch.setenv("SPOS_DATA", str(folder))
    return folder


@pytest.fixture
def supernet_file(tmp_path):
    space = SearchSpace(stage_depths=(1, 1, 2, 1), stage_channels=(24, 48, 96, 192), input_size=28,
                        input_channels=1, num_classes=10, stem_channels=8, stem_stride=2, last_channels=64)  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path / "final.pt"
    save_checkpoint(model_payload(SuperNet(space), space, None, "supernet", {"holdout": 100, "seed": 3}), path)
    return path


def test_cli_search_decodes_once_scores_only_the_trained_holdout_and_writes_the_run(
    fashion_dir, supernet_file, tmp_path, monkeypatch, capsys
):
    decoded = []
    to_tensors = spos_data.to_tensors
    monkeypatch.setattr(spos_data, "to_tensors", lambda ds, idx, **kw: decoded.append(list(idx)) or to_tensors(ds, idx, **kw))
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({"population": 5, "parents": 2, "generations": 2, "recal-images": 40,
                                      "holdout": 50, "batch_size": 32, "max_macs": "900M"}))  # fmt: skip
    out = tmp_path / "run"
    code = main(["search", "--supernet", str(supernet_file), "--config", str(config), "--generations", "3",
                 "--max-macs", "300K", "--out", str(out), "--device", "cpu"])  # fmt: skip
    assert code == 0
    assert "best " in capsys.readouterr().out
    assert len(decoded) == 2  # recalibration set and holdout, once for the whole search
    recal, holdout = decoded
    _, trained_holdout = spos_data.holdout_split(300, 100, 3)
    assert len(recal) == 40 and len(holdout) == 50
    assert set(holdout) <= set(trained_holdout) and not set(recal) & set(trained_holdout)
    best = json.loads((out / "best.json").read_text())
    # Flags beat the file (generations 3, max MACs 300K of 178K-482K); the file beat the defaults
    # (population 5).
    assert best["generations"] == 3
    assert max(int(r["macs"]) for r in csv.DictReader((out / "candidates.csv").open())) <= 300_000
    for name in ("config.yaml", "run.json", "candidates.csv", "pareto.json", "fitness.png", "pareto.png"):
        assert (out / name).is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["population"] == 5


def test_cli_errors_are_one_line_with_the_fix(fashion_dir, supernet_file, tmp_path, capsys):
    base = ["search", "--supernet", str(supernet_file), "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main([*base, "--holdout", "200"]) == 2
    assert "--holdout 100 or less" in capsys.readouterr().err
    assert main([*base, "--max-macs", "1K", "--recal-images", "20", "--holdout", "20"]) == 2
    assert "--max-macs 1000 is too tight" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("populaton: 3\n")
    assert main([*base, "--config", str(bad)]) == 2
    assert "unknown option 'populaton'" in capsys.readouterr().err
    assert main(["search", "--out", str(tmp_path / "r")]) == 2
    assert "--supernet" in capsys.readouterr().err
