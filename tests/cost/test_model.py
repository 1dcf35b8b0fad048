"""The cost-model contract on real tables: a measured latency table and the exact MACs / params
table price a batch as they price one arch, and one Bounds check (BatchPricer) limits latency in
the supernet's samplers, in the search and in ``spos plot-sampling``."""

import json
import random

import numpy as np
import pytest
import torch

from spos.cli import main
from spos.cost.bounds import Bounds
from spos.cost.counting import count, num_params
from spos.cost.latency import LatencyTable
from spos.cost.model import PerArch, arch_genes
from spos.cost.table import BatchPricer, cost_table
from spos.errors import SposError
from spos.genes import largest, sample, smallest
from spos.nn.supernet import SubNet, SuperNet
from spos.sampling.samplers import build_sampler
from spos.search.config import SearchConfig
from spos.search.evolution import CandidateGenerator
from spos.space import Arch, SearchSpace

#: The conftest's tiny space, three channel genes: its latency table is measured in ~0.3 s.
SPACE = SearchSpace(stage_depths=(1, 1, 2, 1), stage_channels=(24, 48, 96, 192), input_size=32,
                    input_channels=3, num_classes=10, stem_channels=8, stem_stride=1, last_channels=64,
                    channel_genes=(2, 5, 9))  # fmt: skip


@pytest.fixture(scope="module")
def latency() -> LatencyTable:
    return LatencyTable.build(SPACE, "cpu", "torch", threads=1, warmup=1, repeats=3, rounds=1, calibration_archs=2)


@pytest.fixture(scope="module")
def pool() -> list[Arch]:
    return [sample(SPACE, random.Random(i)) for i in range(300)]


def quantile_ms(latency, pool, q: float) -> float:
    return float(np.quantile([latency.predict(a) for a in pool], q))


def test_a_measured_latency_table_prices_a_batch_exactly_as_one_arch_at_a_time(latency, pool):
    genes = arch_genes(pool)
    batch = latency.predict_batch(genes)
    assert batch.tolist() == [latency.predict(a) for a in pool]  # bit for bit: one code path
    a = pool[0]
    by_hand = latency.overhead_ms + latency.scale * (
        latency.stem_ms + latency.head_ms + sum(latency.blocks[i][b][g] for i, (b, g) in enumerate(zip(a.blocks, a.channels)))
    )
    assert batch[0] == pytest.approx(by_hand, rel=1e-12)
    assert latency.scale != 1.0  # the fit is applied to the batch too, not only to predict
    # A gene the table never measured is an error naming the part, in the batch as one at a time.
    unmeasured = genes[:3].copy()
    unmeasured[1, SPACE.num_blocks + 2] = 4  # scale 1.0 at position 2
    with pytest.raises(SposError, match="no entry for position 2, .* scale 1.0"):
        latency.predict_batch(unmeasured)
    with pytest.raises(SposError, match="latency table prices 5-block archs"):
        latency.predict_batch(genes[:, :-1])


def test_the_exact_table_prices_a_batch_as_the_counter_prices_each_built_subnet(pool):
    table, pricer = cost_table(SPACE), BatchPricer(SPACE)
    archs = pool[:12] + [smallest(SPACE), largest(SPACE)]
    genes = arch_genes(archs)
    macs, params = pricer(genes)
    assert macs.dtype == params.dtype == np.int64  # exact integers, not floats
    built = [count(SubNet(SPACE, a), SPACE.input_size, SPACE.input_channels) for a in archs]
    assert macs.tolist() == [c.macs for c in built] == table.macs_model.predict_batch(genes).tolist()
    assert params.tolist() == [c.params for c in built] == [table.params(a) for a in archs]
    assert [table(a) for a in archs] == built
    (m_lo, m_hi), (p_lo, p_hi) = pricer.reachable(SPACE.channel_genes)
    all_macs, all_params = pricer(arch_genes(pool))
    assert m_lo <= all_macs.min() < all_macs.max() <= m_hi and p_lo <= all_params.min() <= all_params.max() <= p_hi
    with torch.device("meta"):
        assert table.supernet_params() == num_params(SuperNet(SPACE))


def test_bounds_mask_and_first_violation_agree_on_every_bound_and_reject_unpriced_costs():
    rng = np.random.default_rng(0)
    macs, params = rng.uniform(0, 10e6, 500), rng.uniform(0, 2e6, 500)
    ms = rng.uniform(0, 4, 500)
    macs[7], params[7], ms[7] = 5e6, 1e6, np.nan  # inside but for a latency part never priced
    b = Bounds(min_macs=2e6, max_macs=8e6, min_params=0.2e6, max_params=1.8e6, max_score=0.4, max_latency_ms=3)
    first = b.violations(macs, params, ms)
    assert b.mask(macs, params, ms).tolist() == [v is None for v in first]
    assert 50 < first.count(None) < 450 and len(set(first)) == 7  # every bound rejects some
    assert first[7] == "max_latency_ms"
    assert [b.violation(m, p, t) for m, p, t in zip(macs, params, ms)] == first
    # The order is the documented one: MACs before params before score before latency.
    assert b.violation(9e6, 1.9e6, 5) == "max_macs" and b.violation(5e6, 1.9e6, 5) == "max_params"
    assert b.violation(7e6, 1.7e6, 5) == "max_score" and Bounds(max_latency_ms=3).violation(5e6, 1e6, 5) == "max_latency_ms"
    with pytest.raises(SposError, match="latency table"):
        b.mask(macs, params)


@pytest.mark.parametrize("kind", ["random", "strolling"])
def test_a_latency_bound_narrows_the_sampling_window_and_every_path_meets_both(latency, pool, kind):
    table = cost_table(SPACE)
    macs = np.sort([table.macs(a) for a in pool])
    limit = quantile_ms(latency, pool, 0.3)
    window = Bounds(min_macs=float(macs[30]), max_macs=float(macs[270]), max_latency_ms=limit)
    sampler = build_sampler(SPACE, kind, seed=0, window=window, latency=latency)
    paths = [sampler.sample(0) for _ in range(80)]
    assert all(latency.predict(a) <= limit for a in paths)
    assert all(window.min_macs <= table.macs(a) <= window.max_macs for a in paths)
    # Without the latency bound the same MACs window hands out slower paths: the bound binds.
    open_ms = build_sampler(SPACE, kind, seed=0, window=Bounds(min_macs=window.min_macs, max_macs=window.max_macs))
    assert max(latency.predict(open_ms.sample(0)) for _ in range(80)) > limit


def test_the_strolling_climb_reaches_a_latency_window_that_uniform_draws_never_hit():
    # Entries proportional to each part's MACs (not timed, so the window's rarity is fixed).
    macs = cost_table(SPACE).macs_model.blocks
    blocks = [[[float(macs[p, b, g]) * 1e-6 if g in SPACE.channel_genes else None for g in range(macs.shape[2])]
               for b in range(macs.shape[1])] for p in range(macs.shape[0])]  # fmt: skip
    latency = LatencyTable(SPACE, "cpu", "torch", 1, 1, 0.01, 0.1, 0.1, blocks, scale=1.1)
    lo, hi = latency.model.reachable(SPACE.channel_genes)
    limit = lo + 0.005 * (hi - lo)  # the fastest corner of the space
    uniform = latency.predict_batch(arch_genes([sample(SPACE, random.Random(i)) for i in range(20000)]))
    assert (uniform <= limit).sum() == 0
    sampler = build_sampler(SPACE, "strolling", seed=1, window=Bounds(max_latency_ms=limit), latency=latency)
    assert all(latency.predict(sampler.sample(0)) <= limit for _ in range(20))


@pytest.mark.parametrize("kind", ["random", "strolling"])
def test_a_latency_model_that_bounds_nothing_leaves_the_sampled_paths_unchanged(latency, pool, kind):
    table = cost_table(SPACE)
    macs = np.sort([table.macs(a) for a in pool])
    window = Bounds(min_macs=float(macs[100]), max_macs=float(macs[200]))
    plain = build_sampler(SPACE, kind, seed=3, window=window)
    with_model = build_sampler(SPACE, kind, seed=3, window=window, latency=latency)
    assert [str(plain.sample(0)) for _ in range(40)] == [str(with_model.sample(0)) for _ in range(40)]
    assert plain.state_dict() == with_model.state_dict()


def test_the_search_rejects_candidates_over_a_latency_bound_through_the_shared_bounds(latency, pool):
    limit = quantile_ms(latency, pool, 0.4)
    gen = CandidateGenerator(SPACE, SearchConfig(max_latency_ms=limit), latency)
    got = gen.fill(30, set(), random.Random(0))
    assert len(got) == 30 and all(latency.predict(a) <= limit for a in got)
    pricer = BatchPricer(SPACE, latency)
    genes = arch_genes(pool)
    expected = gen.bounds.violations(**pricer.costs(gen.bounds, genes))
    assert [gen.violation(a) for a in pool] == expected
    assert expected.count("max_latency_ms") == sum(latency.predict(a) > limit for a in pool) > 100
    # A model with only predict (a stand-in) is priced arch by arch and decides the same.
    class StandIn:
        predict = staticmethod(latency.predict)

    assert not hasattr(StandIn(), "predict_batch")
    stand_in = CandidateGenerator(SPACE, SearchConfig(max_latency_ms=limit), StandIn())
    assert isinstance(stand_in.pricer.latency, PerArch)
    assert [stand_in.violation(a) for a in pool] == expected
    # Below every arch's latency the search stops with an error naming the flag.
    tight = CandidateGenerator(SPACE, SearchConfig(max_latency_ms=0.5 * quantile_ms(latency, pool, 0.0)), latency)
    with pytest.raises(SposError, match="--max-latency-ms .* is too tight"):
        tight.fill(5, set(), random.Random(0))


def test_plot_sampling_bounds_latency_with_a_latency_table_of_its_space(latency, tmp_path, capsys):
    cli_space = SearchSpace.preset("oneshot", width=0.5, input_size=32, num_classes=1000, stage_depths=(1, 1, 2, 1))
    own = LatencyTable.build(cli_space, "cpu", "torch", threads=1, warmup=1, repeats=2, rounds=1, calibration_archs=0)
    own.save(tmp_path / "own.json")
    latency.save(tmp_path / "other.json")
    limit = quantile_ms(own, [sample(cli_space, random.Random(i)) for i in range(300)], 0.5)
    args = ["plot-sampling", "--width", "0.5", "--input-size", "32", "--stage-depths", "1", "1", "2", "1",
            "--samples", "60", "--out", str(tmp_path / "s.png"), "--json", "--max-latency-ms", str(limit)]  # fmt: skip
    assert main([*args, "--latency-table", str(tmp_path / "own.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["window"]["max_latency_ms"] == limit
    assert out["in_window"]["random"] == out["in_window"]["strolling"] == 1.0 > out["in_window"]["uniform"]
    # No table, or a table of another space (it never measured these channel genes): refused.
    assert main(args) == 2
    assert "latency table" in capsys.readouterr().err
    assert main([*args, "--latency-table", str(tmp_path / "other.json")]) == 2
    assert "no entry for position" in capsys.readouterr().err
