"""Warm start: a search on a supernet the store knows seeds from it and pre-screens offspring."""

from __future__ import annotations

import shutil

import pytest

from spos.cost.table import cost_table
from spos.search.config import SearchConfig
from spos.search.evolution import search
from spos.space import Arch
from spos.store import Store

CONFIG = {"population": 10, "parents": 3, "generations": 6, "recal_images": 40, "holdout": 30, "batch_size": 16,
          "warm_min": 20}  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def filled(tmp_path, supernet, data, macs_cap) -> Store:
    """A store that holds one search of the supernet under 60% of the MACs range."""
    store = Store(tmp_path / "s.sqlite")
    search(supernet, data, SearchConfig(max_macs=macs_cap(0.6), **CONFIG), tmp_path / "fill", store=store,
           supernet_id="net", log=None)  # fmt: skip
    return store


def test_an_overlapping_warm_search_evaluates_at_most_half_of_a_fresh_one(tmp_path, supernet, data, counted,
                                                                           filled, macs_cap):  # fmt: skip
    space, table, store = supernet.space, cost_table(supernet.space), filled
    moved = SearchConfig(max_macs=0.9 * macs_cap(0.6), **CONFIG)
    counted.clear()
    fresh = search(supernet, data, moved, tmp_path / "fresh", log=None)
    n_fresh = len(counted)
    counted.clear()
    logs: list[str] = []
    warm = search(supernet, data, moved, tmp_path / "warm", store=store, supernet_id="net", log=logs.append)
    assert n_fresh == len(fresh.candidates) and 0 < len(counted) <= n_fresh / 2
    assert any("warm start from" in m for m in logs) and any("screened out by the predictor" in m for m in logs)
    assert sum(h["screened"] for h in warm.history) > 0 and sum(h["reused"] for h in warm.history) > 0
    # Pre-screened or stored, nothing breaks the moved budget; the stored seeds compete too.
    assert all(table(Arch.parse(c["arch"], space.stage_depths)).macs <= moved.max_macs for c in warm.candidates)
    assert all(table(Arch.parse(a, space.stage_depths)).macs <= moved.max_macs for a in counted)


def test_warm_start_is_off_below_warm_min_and_when_switched_off(tmp_path, supernet, data, filled, macs_cap):
    store = filled
    moved = {**CONFIG, "max_macs": 0.9 * macs_cap(0.6)}
    for name, cfg in (("few", SearchConfig(**{**moved, "warm_min": 10_000})),
                      ("off", SearchConfig(**moved, warm_start=False))):  # fmt: skip
        res = search(supernet, data, cfg, tmp_path / name, store=store, supernet_id="net", log=None)
        assert sum(h["screened"] for h in res.history) == 0 and "warm" not in _state(tmp_path / name)


def test_a_resumed_warm_search_ends_where_an_uninterrupted_one_does(tmp_path, supernet, data, filled, macs_cap):
    filled.close()
    shutil.copy(tmp_path / "s.sqlite", tmp_path / "copy.sqlite")
    cfg = SearchConfig(max_macs=0.9 * macs_cap(0.6), **CONFIG)
    ref = search(supernet, data, cfg, tmp_path / "ref", store=Store(tmp_path / "copy.sqlite"), supernet_id="net",
                 log=None)  # fmt: skip

    def stop(g, stats):
        if g == 2:
            raise KeyboardInterrupt

    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(KeyboardInterrupt):
        search(supernet, data, cfg, tmp_path / "run", store=store, supernet_id="net", log=None, on_generation=stop)
    assert _state(tmp_path / "run")["generation"] == 3 and _state(tmp_path / "run")["screened"]
    res = search(supernet, data, cfg, tmp_path / "run", store=store, supernet_id="net", log=None, resume=True)
    assert [c["arch"] for c in res.candidates] == [c["arch"] for c in ref.candidates] and res.top == ref.top


def _state(folder) -> dict:
    import json

    return json.loads((folder / "search_state.json").read_text())
