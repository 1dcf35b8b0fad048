"""One cost-model contract: every table prices one arch and a batch the same way, and one Bounds
limits MACs, params and latency alike in the supernet's sampler and in the search."""

import random

import numpy as np
import pytest

from spos.cost.bounds import Bounds
from spos.cost.latency import LatencyTable
from spos.cost.table import alike_positions, cost_table, parts
from spos.genes import sample
from spos.sampling.samplers import build_sampler
from spos.space import BLOCK_NAMES, SCALES, SearchSpace


def _genes(archs):
    return np.asarray([[*a.blocks, *a.channels] for a in archs])


def _synthetic_latency(space, seed=0) -> LatencyTable:
    """A table with made-up per-part times (no timing): the contract does not depend on them."""
    rng = np.random.default_rng(seed)
    blocks = [[[float(rng.uniform(0.1, 1.0)) if g in space.channel_genes else None for g in range(len(SCALES))]
               for _ in BLOCK_NAMES] for _ in range(space.num_blocks)]  # fmt: skip
    return LatencyTable(space, "cpu", "torch", 2, 1, 0.05, 0.3, 0.2, blocks, scale=1.17)


def test_cost_table_and_latency_table_price_a_batch_as_one_arch_at_a_time(tiny_space):
    table, latency = cost_table(tiny_space), _synthetic_latency(tiny_space)
    archs = [sample(tiny_space, random.Random(i)) for i in range(40)]
    genes = _genes(archs)
    assert table.macs_model.predict_batch(genes).tolist() == [table(a).macs for a in archs]
    assert table.params_model.predict_batch(genes).tolist() == [table(a).params for a in archs]
    assert [table.macs_model.predict(a) for a in archs] == [table(a).macs for a in archs]
    np.testing.assert_allclose(latency.predict_batch(genes), [latency.predict(a) for a in archs], rtol=1e-12)
    # predict is overhead + scale * (stem + head + the arch's block entries), by hand:
    a = archs[0]
    by_hand = 0.05 + 1.17 * (0.3 + 0.2 + sum(latency.blocks[i][b][g] for i, (b, g) in
                                             enumerate(zip(a.blocks, a.channels))))  # fmt: skip
    assert latency.predict(a) == pytest.approx(by_hand)


def test_the_pricer_asks_latency_only_when_bounds_limit_it_and_needs_a_table_then(tiny_space):
    from spos.cost.table import BatchPricer
    from spos.errors import SposError

    latency = _synthetic_latency(tiny_space)
    genes = _genes([sample(tiny_space, random.Random(i)) for i in range(8)])
    macs_only, timed = Bounds(max_macs=1e12), Bounds(max_latency_ms=1e9)
    assert BatchPricer(tiny_space, latency).costs(macs_only, genes)["latency_ms"] is None
    np.testing.assert_allclose(BatchPricer(tiny_space, latency).costs(timed, genes)["latency_ms"],
                               latency.predict_batch(genes))  # fmt: skip
    assert BatchPricer(tiny_space).costs(timed, genes)["latency_ms"] is None
    with pytest.raises(SposError, match="^a latency bound needs a latency table; pass --latency-table FILE$"):
        BatchPricer(tiny_space).inside(timed, genes)


def test_both_tables_are_built_from_one_part_iterator(tiny_space):
    keys = [k for k, _, _ in parts(tiny_space, tiny_space.channel_genes)]
    assert keys[:2] == [("stem",), ("head",)]
    alike = alike_positions(tiny_space)
    measured = {k[1] for k in keys[2:]}
    assert measured == set(alike.values())  # one measurement per run of alike positions
    assert len(keys) == 2 + len(measured) * len(BLOCK_NAMES) * len(tiny_space.channel_genes)
    # In a stage of depth 3 the two stride-1 blocks share one measured position.
    deeper = tiny_space.replace(stage_depths=(1, 1, 3, 1))
    assert alike_positions(deeper) == {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 5}


@pytest.mark.parametrize("kind", ["random", "strolling"])
def test_a_latency_window_bounds_the_supernet_sampler(tiny_space, kind):
    latency = _synthetic_latency(tiny_space, seed=1)
    pool = [sample(tiny_space, random.Random(i)) for i in range(400)]
    ms = np.sort([latency.predict(a) for a in pool])
    limit = float(ms[len(ms) // 3])  # a third of uniform paths are under it
    sampler = build_sampler(tiny_space, kind, seed=0, window=Bounds(max_latency_ms=limit), latency=latency)
    got = [latency.predict(sampler.sample(0)) for _ in range(60)]
    assert max(got) <= limit + 1e-9
    # Without the latency model the same window is refused in one line, not silently ignored.
    with pytest.raises(Exception, match="latency table"):
        build_sampler(tiny_space, kind, seed=0, window=Bounds(max_latency_ms=limit))


def test_the_search_and_the_sampler_share_one_bounds_check(tiny_space):
    from spos.search.config import SearchConfig
    from spos.search.evolution import CandidateGenerator

    latency = _synthetic_latency(tiny_space, seed=2)
    pool = [sample(tiny_space, random.Random(i)) for i in range(400)]
    limit = float(np.median([latency.predict(a) for a in pool]))
    gen = CandidateGenerator(tiny_space, SearchConfig(max_latency_ms=limit), latency)
    for a in pool[:100]:
        over = latency.predict(a) > limit
        assert (gen.violation(a) == "max_latency_ms") == over
        table = cost_table(tiny_space)
        assert gen.bounds.violation(table(a).macs, table(a).params, latency.predict(a)) == gen.violation(a)


def test_the_cost_table_prices_in_whole_numbers_names_its_models_and_backs_the_helpers(tiny_space):
    from spos.cost.table import BatchPricer, CostTable, arch_costs, reachable_costs

    table = CostTable(tiny_space)  # built here, not taken from cost_table's cache
    arch = sample(tiny_space, random.Random(0))
    assert arch_costs(arch, tiny_space) == table(arch)
    assert type(table.macs(arch)) is int and type(table.params(arch)) is int  # exact int64 sums
    assert table.macs_model.blocks.dtype == np.int64 == table.params_model.blocks.dtype
    assert (table.macs_model.unit, table.macs_model.name) == ("MACs", "MACs")
    assert (table.params_model.unit, table.params_model.name) == ("params", "params")
    everything = BatchPricer(tiny_space).reachable(tiny_space.channel_genes)
    assert reachable_costs(tiny_space) == everything
    narrow = reachable_costs(tiny_space, tiny_space.channel_genes[:1])
    assert narrow == BatchPricer(tiny_space).reachable(tiny_space.channel_genes[:1]) != everything


def test_parts_price_every_width_with_a_channel_and_the_tables_follow_them():
    import torch

    from spos.cost.counting import count
    from spos.cost.table import CostTable
    from spos.nn.blocks import ChoiceBlock
    from spos.nn.supernet import SubNet
    from spos.space import mid_channels

    # Stage 1 has 8 output channels: channel gene 0 (x0.2) gives a 0-channel main branch (no
    # part), gene 1 (x0.4) a 1-channel one; the space itself offers genes 2..9 only.
    narrow = SearchSpace(stage_depths=(1, 1, 3, 1), stage_channels=(8, 16, 24, 32), input_size=16,
                         num_classes=10, stem_channels=4, stem_stride=1, last_channels=32)  # fmt: skip
    assert [mid_channels(8, g) for g in (0, 1, 2)] == [0, 1, 2]
    with torch.device("meta"):
        keys = [k for k, _, _ in parts(narrow)]
        assert {k[1] for k in keys[2:]} == {0, 1, 2, 3, 5}  # position 4 is measured as 3
        assert [k[3] for k in keys[2:] if k[1:3] == (0, 0)] == list(range(1, len(SCALES)))
        assert all(len([k for k in keys[2:] if k[1:3] == (q, b)]) == len(SCALES)
                   for q in (1, 2, 3, 5) for b in range(len(BLOCK_NAMES)))  # fmt: skip
        one_wide = count(ChoiceBlock(4, 8, 2, 0, 1, "relu", False), (4, 16, 16))
    table = CostTable(narrow)
    assert table.macs_model.blocks[0, 0, 0] == 0 == table.params_model.blocks[0, 0, 0]
    assert (table.macs_model.blocks[0, 0, 1], table.params_model.blocks[0, 0, 1]) == (one_wide.macs, one_wide.params)
    assert one_wide.macs > 0
    for seed in range(3):
        arch = sample(narrow, random.Random(seed))
        with torch.device("meta"):
            assert table(arch) == count(SubNet(narrow, arch), narrow.input_size)


def test_the_tables_price_squeeze_excite_positions_with_their_se():
    import torch

    from spos.cost.counting import count
    from spos.cost.table import CostTable
    from spos.nn.supernet import SubNet

    se = SearchSpace(stage_depths=(1, 1, 2, 1), stage_channels=(24, 48, 96, 192), input_size=32, num_classes=10,
                     stem_channels=8, stem_stride=1, last_channels=64, use_se=True)  # fmt: skip
    plain = se.replace(use_se=False)
    assert [p.use_se for p in se.positions()] == [False, False, True, True, True]
    with_se, without = CostTable(se), CostTable(plain)
    assert (with_se.params_model.blocks[2:] > without.params_model.blocks[2:]).all()  # SE adds weights
    for seed in range(3):
        arch = sample(se, random.Random(seed))
        with torch.device("meta"):
            assert with_se(arch) == count(SubNet(se, arch), se.input_size)
