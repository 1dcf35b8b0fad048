"""NSGA-II (pymoo) over accuracy and every cost, through the same store as the evolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spos.cost.counting import count
from spos.nn.supernet import SubNet
from spos.search.config import SearchConfig
from spos.search.evolution import search
from spos.search.family import Budget, loosest, parse_budgets
from spos.space import Arch
from spos.store import Store

CONFIG = {"method": "nsga2", "population": 8, "generations": 4, "recal_images": 40, "holdout": 30,
          "batch_size": 16}  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


class _Latency:
    """A made-up device: ms grows with the channel genes of the first ``k`` blocks."""

    def __init__(self, k: int) -> None:
        self.k = k

    def predict(self, arch: Arch) -> float:
        return 0.1 * sum(arch.channels[: self.k]) + 0.01 * sum(arch.blocks)


def _objectives(row: dict) -> np.ndarray:
    return np.array([-row["score"], row["macs"], row["params"], *row["latency_ms"].values()], dtype=float)


def test_nsga2_front_is_nondominated_exact_and_a_rerun_hits_the_store(tmp_path, supernet, data, counted, macs_cap):
    space = supernet.space
    cfg = SearchConfig(max_macs=macs_cap(0.6), **CONFIG)
    lat = {"phone": _Latency(2), "server": _Latency(5)}
    store = Store(tmp_path / "s.sqlite")
    res = search(supernet, data, cfg, tmp_path / "a", store=store, supernet_id="net", latencies=lat, log=None)
    # No arch is evaluated twice, and none outside the bounds.
    assert len(counted) == len(set(counted)) == len(res.candidates) > cfg.population
    assert all(c["macs"] <= cfg.max_macs for c in res.candidates)
    front = [_objectives(r) for r in res.front]
    assert front and all(not (np.all(q <= p) and np.any(q < p)) for p in front for q in front)
    # Every candidate off the front is dominated by a front member.
    on_front = {r["arch"] for r in res.front}
    for c in res.candidates:
        if c["arch"] not in on_front:
            p = np.array([-c["fitness"], c["macs"], c["params"], *(m.predict(Arch.parse(c["arch"], space.stage_depths))
                                                                  for m in lat.values())])  # fmt: skip
            assert any(np.all(q <= p) and np.any(q < p) for q in front)
    # Costs are exact: the hook-based counter on the real subnet agrees.
    for r in res.front[:3]:
        arch = Arch.parse(r["arch"], space.stage_depths)
        exact = count(SubNet(space, arch), space.input_size, space.input_channels)
        assert (r["macs"], r["params"]) == (exact.macs, exact.params)
        assert r["latency_ms"] == pytest.approx({k: m.predict(arch) for k, m in lat.items()})
    assert json.loads((tmp_path / "a" / "pareto.json").read_text())["front"] == res.front
    # The same search again: every score comes from the store.
    counted.clear()
    again = search(supernet, data, cfg, tmp_path / "b", store=store, supernet_id="net", latencies=lat, log=None)
    assert counted == [] and again.front == res.front
    assert sum(h["reused"] for h in again.history) == len(again.candidates)


def test_latency_budgets_name_their_device_and_the_union_keeps_one_device():
    budgets = parse_budgets(["macs=1M,2M", "latency@phone=3"], ["x/phone.json", "y/server.json"])
    assert budgets[2] == Budget(budgets[2].bounds, "phone") and str(budgets[2]).endswith("on phone")
    assert len(parse_budgets(["latency=3,4"], ["x/phone.json", "y/server.json"])) == 4
    assert loosest(budgets).bounds.max_latency_ms is None and loosest(budgets[:2]).bounds.max_macs == 2e6
