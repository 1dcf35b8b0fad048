"""Train once, search many: the candidate store, the predictor and one call for many budgets."""

from __future__ import annotations

import numpy as np
import pytest

from spos.cost.bounds import Bounds
from spos.cost.table import cost_table
from spos.errors import SposError
from spos.search.config import SearchConfig
from spos.search.evolution import search
from spos.search.family import loosest, parse_budgets
from spos.search.predictor import AccuracyPredictor, answer_budget, heldout_tau
from spos.space import Arch
from spos.store import Store

CONFIG = {"population": 10, "parents": 3, "generations": 4, "recal_images": 40, "holdout": 30, "batch_size": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_store_round_trip_keeps_every_field(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        rows = [{"arch": "0-1-23-3:2-3-45-6", "accuracy": 0.5, "loss": 1.25, "images": 30, "macs": 123, "params": 45,
                 "latency": {"phone": 3.5}}]  # fmt: skip
        store.put_scores("net", "set", rows)
        (got,) = store.candidates("net")
        assert {k: got[k] for k in rows[0]} == rows[0]
        assert store.scores("net", "set", ["0-1-23-3:2-3-45-6", "0-0-00-0:2-2-22-2"]).keys() == {"0-1-23-3:2-3-45-6"}
        assert (store.hits["supernet_score"], store.misses["supernet_score"]) == (1, 1)


def _open_and_write(path: str, i: int, barrier) -> None:
    barrier.wait()  # every process ready: open the new file at the same moment
    with Store(path) as store:
        store.put_scores("net", "set", [{"arch": f"0-0-00-{i}:2-2-22-2", "accuracy": 0.5}])


def test_processes_opening_one_new_store_at_once_all_get_in(tmp_path):
    # torchrun ranks open one new store at once. Without the set-up retry, one in four rounds
    # failed here ("duplicate column name" from two openers adding a column, or "database is
    # locked" from a WAL snapshot that another opener's schema change made stale).
    import multiprocessing as mp

    ctx = mp.get_context("fork")  # cheap, so that the openers really race
    for r in range(12):
        path = str(tmp_path / f"new{r}.sqlite")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_and_write, args=(path, i, barrier)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * 4, f"round {r}"
        with Store(path) as store:
            assert len(store.candidates("net")) == 4


def test_a_repeated_search_evaluates_nothing_and_an_overlapping_one_reuses(tmp_path, supernet, data, counted,
                                                                            macs_cap):  # fmt: skip
    cfg = SearchConfig(max_macs=macs_cap(0.6), **CONFIG)
    store = Store(tmp_path / "s.sqlite")
    first = search(supernet, data, cfg, tmp_path / "a", store=store, supernet_id="net")
    fresh = len(counted)
    assert fresh == len(first.candidates) > 0
    counted.clear()
    again = search(supernet, data, cfg, tmp_path / "b", store=store, supernet_id="net")
    assert counted == [] and again.top == first.top  # zero supernet evaluations, same answer
    assert sum(h["reused"] for h in again.history) == len(again.candidates)
    # Another supernet file: no stale hits, everything is evaluated again.
    counted.clear()
    search(supernet, data, cfg, tmp_path / "c", store=store, supernet_id="other-net")
    assert len(counted) == fresh


def test_predictor_ranks_a_learnable_score_and_reports_heldout_tau(tiny_space):
    rng = np.random.default_rng(0)
    n = tiny_space.num_blocks
    genes = np.concatenate((rng.integers(0, 4, (300, n)), rng.integers(2, 10, (300, n))), axis=1)
    truth = genes[:, :n].sum(1) * 0.01 + genes[:, n:].sum(1) * 0.005 + rng.normal(0, 0.002, 300)
    assert heldout_tau(tiny_space, genes, truth) > 0.7
    pred = AccuracyPredictor(tiny_space).fit(genes[:200], truth[:200]).predict(genes[200:])
    assert np.corrcoef(pred, truth[200:])[0, 1] > 0.9


def test_answer_budget_never_returns_an_arch_over_its_budget(tiny_space, macs_cap):
    rng = np.random.default_rng(1)
    table = cost_table(tiny_space)
    # A score that rewards MACs: the predictor pushes toward the budget's edge, never over it.
    known = {}
    for _ in range(200):
        a = Arch(tuple(int(x) for x in rng.integers(0, 4, tiny_space.num_blocks)),
                 tuple(int(x) for x in rng.integers(2, 10, tiny_space.num_blocks)), tiny_space.stage_depths)  # fmt: skip
        known[str(a)] = table(a).macs / 1e9
    evaluated: list[Arch] = []

    def evaluate(archs):
        evaluated.extend(archs)
        return {str(a): table(a).macs / 1e9 for a in archs}

    for frac in (0.3, 0.5, 0.7):
        cap = macs_cap(frac)
        ans = answer_budget(Bounds(max_macs=cap), tiny_space, known, evaluate, top_k=5)
        assert table(ans.arch).macs <= cap and ans.evaluated <= 5
        assert all(table(a).macs <= cap for a in evaluated)
        inside = [s for a, s in known.items() if table(Arch.parse(a, tiny_space.stage_depths)).macs <= cap]
        assert ans.score >= max(inside)  # at least the best stored arch inside the budget
    with pytest.raises(SposError, match="inside the budget"):
        answer_budget(Bounds(max_macs=1.0), tiny_space, known, evaluate)


def test_family_budgets_parse_and_their_union(tiny_space):
    budgets = parse_budgets(["macs=0.9M,1.2M", "params=50K"])
    assert [b.bounds.max_macs for b in budgets] == [0.9e6, 1.2e6, None]
    assert budgets[2].bounds.max_params == 50e3
    assert loosest(budgets[:2]).bounds.max_macs == 1.2e6 and loosest(budgets).bounds.max_macs is None
    with pytest.raises(SposError, match="KEY=V1,V2"):
        parse_budgets(["flops=1M"])
