"""``spos search --budget``: one call for a family of budgets, from one pool of scores."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from idx_fixtures import TINY_SPACE, write_fashion

from spos.cli import main
from spos.cost.table import cost_table
from spos.genes import largest, smallest
from spos.runs import load_checkpoint
from spos.space import Arch, SearchSpace

SEARCH = ["--population", "6", "--parents", "2", "--generations", "3", "--recal-images", "32", "--holdout", "48",
          "--batch-size", "16", "--device", "cpu"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def supernet_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm", n_train=256, n_val=32)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"space": {**TINY_SPACE, "dropout": 0.0}, "epochs": 1, "max_steps": 3,
                                   "batch_size": 32, "lr": 0.05, "warmup_steps": 1, "val_size": 0,
                                   "holdout": 64, "progress": False}))  # fmt: skip
    assert main(["train-supernet", "--config", str(cfg), "--out", str(tmp_path / "net")]) == 0
    return tmp_path / "net" / "final.pt"


def _caps(path) -> tuple[list[float], SearchSpace]:
    space = SearchSpace.from_dict(load_checkpoint(path)["space"])
    table = cost_table(space)
    lo, hi = table(smallest(space)).macs, table(largest(space)).macs
    return [lo + f * (hi - lo) for f in (0.35, 0.5, 0.7)], space


def test_family_without_predictor_equals_separate_searches(tmp_path, supernet_file, capsys):
    caps, space = _caps(supernet_file)
    budget = "macs=" + ",".join(f"{c:.0f}" for c in caps)
    assert main(["search", "--supernet", str(supernet_file), "--budget", budget, "--no-predictor",
                 "--out", str(tmp_path / "fam" / "run"), *SEARCH]) == 0  # fmt: skip
    family = json.loads((tmp_path / "fam" / "run" / "family.json").read_text())
    assert (tmp_path / "fam" / "run" / "family.csv").is_file() and (tmp_path / "fam" / "run" / "family.png").is_file()
    table = cost_table(space)
    separate = 0
    for cap, row in zip(caps, family["budgets"]):
        alone = tmp_path / f"alone-{cap:.0f}"
        assert main(["search", "--supernet", str(supernet_file), "--max-macs", f"{cap:.0f}", "--no-store",
                     "--out", str(alone), *SEARCH]) == 0  # fmt: skip
        best = json.loads((alone / "best.json").read_text())["best"]
        separate += len((alone / "candidates.csv").read_text().splitlines()) - 1
        assert row["arch"] == best["arch"] and row["score"] == pytest.approx(best["fitness"])
        assert table(Arch.parse(row["arch"], space.stage_depths)).macs <= cap
    # Later budgets reused what earlier ones scored: fewer evaluations than separate searches.
    assert family["fill"] is None and sum(r["evaluated"] for r in family["budgets"]) < separate
    assert family["pareto"] and all("macs" in r for r in family["pareto"])


def test_family_with_predictor_fills_the_store_once_then_answers_from_it(tmp_path, supernet_file, capsys):
    caps, space = _caps(supernet_file)
    out = tmp_path / "fam" / "run"
    args = ["search", "--supernet", str(supernet_file), "--budget", "macs=" + ",".join(f"{c:.0f}" for c in caps),
            "--min-store", "15", "--screen-top-k", "3", "--out", str(out), *SEARCH]  # fmt: skip
    assert main(args) == 0
    family = json.loads((out / "family.json").read_text())
    assert family["fill"] is not None and family["fill"]["evaluated"] > 0
    table = cost_table(space)
    for cap, row in zip(caps, family["budgets"]):
        assert row["evaluated"] <= 3 and table(Arch.parse(row["arch"], space.stage_depths)).macs <= cap
    # A second call finds the pool big enough: no fill search, at most top-k evaluations per budget.
    assert main([*args[:-len(SEARCH) - 2], "--out", str(tmp_path / "fam" / "again"), *SEARCH]) == 0
    again = json.loads((tmp_path / "fam" / "again" / "family.json").read_text())
    assert again["fill"] is None and all(r["evaluated"] <= 3 for r in again["budgets"])


def test_an_nsga2_family_reads_each_winner_from_its_pool(tmp_path, supernet_file):
    caps = _caps(supernet_file)[0][1:]
    out = tmp_path / "fam" / "nsga2"
    args = ["search", "--supernet", str(supernet_file), "--method", "nsga2", "--no-predictor", "--budget",
            "macs=" + ",".join(f"{c:.0f}" for c in caps), "--out", str(out), *SEARCH, "--generations", "5"]  # fmt: skip
    assert main(args) == 0
    family = json.loads((out / "family.json").read_text())
    pool = {}
    for row in csv.DictReader((out / "pool-search" / "candidates.csv").open()):
        pool[row["arch"]] = (float(row["fitness"]), int(row["macs"]))
    assert family["fill"]["method"] == "nsga2" and family["fill"]["evaluated"] == len(pool)
    for cap, row in zip(caps, family["budgets"]):
        inside = {a: f for a, (f, m) in pool.items() if m <= cap}
        assert row["evaluated"] == 0 and row["score"] == pytest.approx(max(inside.values()))
        assert inside[row["arch"]] == pytest.approx(row["score"])
    # Again: NSGA-II replays from the store, no evaluation anywhere.
    assert main([*args[: -len(SEARCH) - 3], str(tmp_path / "fam" / "again"), *SEARCH, "--generations", "5"]) == 0
    again = json.loads((tmp_path / "fam" / "again" / "family.json").read_text())
    assert again["fill"]["evaluated"] == 0 and [r["arch"] for r in again["budgets"]] == [r["arch"] for r in family["budgets"]]
