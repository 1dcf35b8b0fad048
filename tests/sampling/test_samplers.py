import functools
import io
import random
import time
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spos.cli import main
from spos.cost.bounds import Bounds
from spos.cost.counting import Costs, sigma_score
from spos.cost.model import arch_genes
from spos.cost.table import BatchPricer, cost_table, reachable_costs
from spos.errors import SposError
from spos.genes import sample, to_arch, uniform_genes
from spos.sampling.coverage import SPEC_WINDOW, compare_samplers, default_window, sampling_coverage
from spos.sampling.samplers import KINDS, RandomSampler, build_sampler, climb_into_window
from spos.sampling.schedule import allowed_channel_genes, full_range_epoch, usable_channel_genes
from spos.space import SearchSpace

TINY = SearchSpace(stage_depths=(1, 1, 2, 1), stage_channels=(24, 48, 96, 192), input_size=32,
                   num_classes=10, stem_channels=8, stem_stride=1, last_channels=64)  # fmt: skip
SMALL = SearchSpace.preset("oneshot", width=0.5, stage_depths=(1, 1, 2, 1), input_size=28,
                           input_channels=1, num_classes=10, stem_stride=2)  # fmt: skip
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# SPEC §4 warm-up, written out: epochs after the start -> lowest allowed scale.
SPEC_FLOOR_SCALE = {0: 1.8, 1: 1.6, 2: 1.4, 3: 1.2, 4: 1.0, 5: 1.0, 6: 0.8, 7: 0.8, 8: 0.8,
                    9: 0.6, 10: 0.6, 11: 0.6, 12: 0.6}  # fmt: skip


def scales(genes):
    return [round(0.2 * (g + 1), 1) for g in genes]


def test_warmup_schedule_matches_spec_epoch_by_epoch():
    space = SearchSpace()  # default: scales 0.6..2.0
    for epoch in range(140):
        got = scales(allowed_channel_genes(space, epoch, start_epoch=60))
        if epoch < 60:
            assert got == [2.0], epoch
        else:
            floor = SPEC_FLOOR_SCALE.get(epoch - 60, 0.6)
            want = [s for s in (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0) if s >= floor]
            assert got == want, epoch
    # e = 0 is exactly {1.8, 2.0}
    assert scales(allowed_channel_genes(space, 60, 60)) == [1.8, 2.0]


def test_full_range_epoch_is_the_first_epoch_allowing_every_usable_gene():
    space = SearchSpace()  # 0.6 (e = 9 .. 12) is the narrowest
    assert full_range_epoch(space, 60) == 69 and full_range_epoch(space, 3) == 12 and full_range_epoch(space, 0) == 9
    assert full_range_epoch(space, None) == 0
    assert full_range_epoch(space, 3, min_gene=4) == 7  # 1.0 from e = 4
    assert full_range_epoch(SearchSpace(channel_genes=tuple(range(10))), 60) == 73
    for start in (0, 3, 60):
        e = full_range_epoch(space, start)
        assert allowed_channel_genes(space, e, start) == space.channel_genes != allowed_channel_genes(space, e - 1, start)


def test_warmup_stops_at_the_configured_minimum():
    space = SearchSpace()
    assert scales(allowed_channel_genes(space, 66, 60, min_gene=4))[0] == 1.0  # 6-8 would be 0.8
    assert scales(allowed_channel_genes(space, 200, 60, min_gene=4))[0] == 1.0
    full = SearchSpace(channel_genes=tuple(range(10)))  # 0.2..2.0 allowed: after e = 12 all of it
    assert scales(allowed_channel_genes(full, 72, 60))[0] == 0.6
    assert scales(allowed_channel_genes(full, 73, 60))[0] == 0.2
    assert allowed_channel_genes(space, 5, None) == space.channel_genes  # no warm-up
    with pytest.raises(SposError, match="minimum channel gene"):
        allowed_channel_genes(space, 0, None, min_gene=10)


@settings(max_examples=60, deadline=None)
@given(
    genes=st.sets(st.integers(0, 9), min_size=1),
    start=st.integers(0, 50),
    min_gene=st.one_of(st.none(), st.integers(0, 9)),
)
def test_warmup_is_a_growing_subset_of_the_space(genes, start, min_gene):
    space = SearchSpace(channel_genes=tuple(genes))
    if min_gene is not None and min_gene > max(genes):
        with pytest.raises(SposError):
            allowed_channel_genes(space, 0, start, min_gene)
        return
    prev = None
    for epoch in range(start + 20):
        got = set(allowed_channel_genes(space, epoch, start, min_gene))
        assert got and got <= set(genes)
        assert min(got) >= (min_gene if min_gene is not None else min(genes))
        if prev is not None:
            assert prev <= got  # the warm-up only ever widens the choice
        prev = got
    assert max(prev) == max(genes)


#: Hits in 2**15 uniform draws below which rejection sampling may refuse a window (its own probe
#: needs 16; 40 leaves room for the noise of two independent counts).
RARE_HITS = 40


@functools.cache
def uniform_hits(space: SearchSpace, window: Bounds, genes: tuple[int, ...], draws: int = 2**15) -> int:
    """How many of ``draws`` uniform paths (channel genes from ``genes``) lie inside ``window``,
    by plain sampling and the exact table (no sampler code), counted up to RARE_HITS."""
    rng, table, hits = random.Random(12345), cost_table(space), 0
    for _ in range(draws):
        hits += window.contains(table(sample(space, rng, genes)))
        if hits >= RARE_HITS:
            break
    return hits


def window_around(space, seed, d):
    """A window around a sampled path's costs (so some path lies inside)."""
    c = cost_table(space)(sample(space, random.Random(seed)))
    return Bounds(c.macs * (1 - d[0]), c.macs * (1 + d[1]), c.params * (1 - d[2]), c.params * (1 + d[3]))


@FAST
@given(seed=st.integers(0, 10_000), d=st.tuples(*[st.floats(0.002, 0.3)] * 4), kind=st.sampled_from(["random", "strolling"]))
def test_every_constrained_sample_is_in_the_window(seed, d, kind):
    window = window_around(TINY, seed, d)
    table = cost_table(TINY)
    try:
        sampler = build_sampler(TINY, kind, seed=seed, window=window)
    except SposError as e:
        # Only rejection sampling may give up, and only on a window too narrow for it: one that
        # uniform draws, counted here independently of the sampler's own probe, rarely hit.
        assert kind == "random" and "strolling" in str(e)
        assert uniform_hits(TINY, window, TINY.channel_genes) < RARE_HITS
        return
    for _ in range(60):
        arch = sampler.sample(epoch=0)
        arch.validate(TINY)
        assert window.contains(table(arch)), (str(arch), window)


@FAST
@given(seed=st.integers(0, 1000), kind=st.sampled_from(["random", "strolling"]))
def test_constrained_samples_respect_warmup_and_window(seed, kind):
    space, table = SearchSpace(), cost_table(SearchSpace())
    sampler = build_sampler(space, kind, seed=seed, window=SPEC_WINDOW, warmup_start_epoch=0)
    for epoch in (0, 3, 5, 9, 13):
        allowed = allowed_channel_genes(space, epoch, 0)
        for _ in range(5):
            before = sampler.warmup_fallbacks
            arch = sampler.sample(epoch)
            assert set(arch.channels) <= set(allowed)
            # Either in the window, or this very sample is a counted fallback, and only where the
            # warm-up's genes cannot reach the window: strolling reaches anything reachable (a
            # MACs floor above the window's ceiling is the only excuse), rejection sampling
            # anything uniform draws hit at least 1 in ~2,000 times (measured independently).
            fell_back = sampler.warmup_fallbacks - before
            assert fell_back in (0, 1)
            if not fell_back:
                assert SPEC_WINDOW.contains(table(arch)), (epoch, str(arch))
            elif kind == "strolling":
                assert reachable_costs(space, allowed)[0][0] > SPEC_WINDOW.max_macs, epoch
            else:
                assert uniform_hits(space, SPEC_WINDOW, allowed) < RARE_HITS, epoch
    assert sampler.warmup_fallbacks >= 5  # epoch 0 allows only 2.0: every such path is > 330M MACs
    (lo, _), _ = reachable_costs(space, (9,))
    assert lo > SPEC_WINDOW.max_macs


def test_strolling_covers_more_of_the_window_than_random():
    results = {}
    for name, space in (("oneshot", SearchSpace()), ("small", SMALL)):
        window = default_window(space)
        r = compare_samplers(space, window, n=1000, seed=0, kinds=("random", "strolling"))
        results[name] = r.coverage
        print(f"{name}: window {window}; coverage random {r.coverage['random']:.1%}, "
              f"strolling {r.coverage['strolling']:.1%}")  # fmt: skip
        assert r.in_window == {"random": 1.0, "strolling": 1.0}
        assert r.coverage["strolling"] > 1.3 * r.coverage["random"]


def test_strolling_sweeps_every_bin_up_and_down():
    space = SearchSpace()
    sampler = build_sampler(space, "strolling", seed=3, window=SPEC_WINDOW)
    bins = sampler.bins(space.channel_genes)
    assert len(bins) == 7 and bins[0] == (190e6, 210e6) and bins[-1] == (310e6, 330e6)  # 20M bins
    table = cost_table(space)
    sampler.sample()  # the first step places the population and the sweep's start
    centres, macs = [], []
    for _ in range(4 * len(bins)):  # two full cycles: up, down, up, down
        centres.append(sum(bins[sampler.bin]) / 2)  # the bin this step aims at
        macs.append(table(sampler.sample()).macs)
    # The trained path follows the bin it aims at (the extreme corners may lag a little) ...
    assert np.corrcoef(centres, macs)[0, 1] > 0.9
    # ... and the walk reaches both ends of the window's MACs range.
    assert min(macs) < bins[0][1] + 10e6 and max(macs) > bins[-1][0]
    small = build_sampler(SMALL, "strolling", window=default_window(SMALL))
    assert len(small.bins(SMALL.channel_genes)) == 10  # a few-M window: 10 bins, not one 20M bin
    with pytest.raises(SposError, match="bin_macs"):
        build_sampler(SMALL, "strolling", window=default_window(SMALL), bin_macs=0)


@pytest.mark.parametrize("kind", ["random", "strolling"])
def test_unsatisfiable_window_errors_quickly(kind):
    space = SearchSpace()
    (m_lo, _m_hi), (_p_lo, p_hi) = reachable_costs(space)
    t = time.perf_counter()
    with pytest.raises(SposError, match=r"outside.*MACs 179\.774M\.\.880\.366M"):
        build_sampler(space, kind, window=Bounds(max_macs=m_lo - 1))
    # Each bound alone is reachable; together they are not (the most parameters need big MACs).
    with pytest.raises(SposError, match="not reached"):
        build_sampler(space, kind, window=Bounds(max_macs=m_lo * 1.01, min_params=p_hi * 0.99))
    assert time.perf_counter() - t < 10
    with pytest.raises(SposError, match="needs a window"):
        build_sampler(space, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_continues_the_sequence_exactly(kind):
    window = default_window(SMALL)

    def fresh():
        return build_sampler(SMALL, kind, seed=7, window=window, warmup_start_epoch=2)

    a = fresh()
    epochs = [0, 1, 2, 3, 4, 6, 9, 15]
    first = [a.sample(e) for e in epochs for _ in range(3)]
    buf = io.BytesIO()
    torch.save({"sampler": a.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["sampler"]
    rest_a = [a.sample(e) for e in (15, 16, 20) for _ in range(20)]
    b = fresh()
    b.load_state_dict(state)
    rest_b = [b.sample(e) for e in (15, 16, 20) for _ in range(20)]
    assert rest_a == rest_b and b.count == a.count
    c = fresh()  # and a fresh sampler without the state starts over, so the state mattered
    assert [c.sample(e) for e in epochs for _ in range(3)] == first


def plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(plain(v) for v in x)
    return x is None or isinstance(x, (int, float, str, torch.Tensor))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_sequence_and_plain_state(kind):
    window = default_window(TINY)
    seqs = [[s.sample(e % 3) for e in range(40)] for s in
            (build_sampler(TINY, kind, seed=s, window=window, warmup_start_epoch=1) for s in (1, 1, 2))]  # fmt: skip
    assert seqs[0] == seqs[1]
    assert seqs[0] != seqs[2]
    sampler = build_sampler(TINY, kind, seed=1, window=window)
    sampler.sample()
    assert plain(sampler.state_dict())
    other = next(k for k in KINDS if k != kind)
    with pytest.raises(SposError, match="same sampler kind"):
        build_sampler(TINY, other, window=window).load_state_dict(sampler.state_dict())


def test_uniform_draws_every_block_and_allowed_channel_evenly():
    sampler = build_sampler(TINY, "uniform", seed=0, warmup_start_epoch=0)
    archs = [sampler.sample(epoch=4) for _ in range(1000)]  # e = 4: scales >= 1.0 (genes 4..9)
    blocks = Counter(b for a in archs for b in a.blocks)
    channels = Counter(c for a in archs for c in a.channels)
    n = 1000 * TINY.num_blocks
    assert set(blocks) == {0, 1, 2, 3} and all(abs(v / n - 1 / 4) < 0.03 for v in blocks.values())
    assert set(channels) == {4, 5, 6, 7, 8, 9} and all(abs(v / n - 1 / 6) < 0.03 for v in channels.values())


def test_window_checks_and_membership():
    w = Bounds(min_macs=1e6, max_macs=2e6, max_params=5e5)
    assert w.contains(Costs(1_500_000, 1)) and not w.contains(Costs(2_000_001, 1))
    assert w.contains(Costs(1_000_000, 500_000)) and not w.contains(Costs(1_500_000, 500_001))
    with pytest.raises(SposError, match="swap the bounds"):
        Bounds(min_params=3e6, max_params=2e6)
    with pytest.raises(SposError, match="unknown sampler"):
        build_sampler(TINY, "evolution")


def test_coverage_counts_cells_among_those_any_sampler_reached():
    w = Bounds(0, 10, 0, 10)
    pts = {"a": (np.array([0.5, 1.5, 9.5, 20.0]), np.array([0.5, 0.5, 9.5, 1.0])),  # 3 cells + 1 outside
           "b": (np.array([0.5, 5.5]), np.array([0.5, 5.5]))}  # fmt: skip
    assert sampling_coverage(pts, w, grid=10) == {"a": 0.75, "b": 0.5}


def test_plot_sampling_cli_on_the_small_preset(capsys, tmp_path):
    png = tmp_path / "s.png"
    code = main(["plot-sampling", "--width", "0.5", "--stage-depths", "1", "1", "2", "1",
                 "--input-size", "28", "--input-channels", "1", "--num-classes", "10",
                 "--samples", "300", "--out", str(png)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["random"], ["strolling"])}
    assert rows["random"][1] == "100.0%" and rows["strolling"][1] == "100.0%"
    code = main(["plot-sampling", "--max-macs", "1M", "--min-macs", "0.5M", "--out", str(png)])
    assert code == 2 and "outside what this search space can reach" in capsys.readouterr().err


def test_a_minimum_channel_gene_keeps_the_genes_at_or_above_it_or_names_the_allowed_ones(tiny_space):
    space = tiny_space.replace(channel_genes=(2, 5, 9))
    assert usable_channel_genes(space) == (2, 5, 9)
    assert usable_channel_genes(space, 5) == (5, 9) and usable_channel_genes(space, 9) == (9,)
    for bad in (10, -1):
        with pytest.raises(SposError, match=r"^minimum channel gene -?\d+ leaves no channel choice in the search space "
                                            r"\(allowed genes: 2 \(0\.6\), 5 \(1\.2\), 9 \(2\.0\)\); use one of those"):
            usable_channel_genes(space, bad)  # fmt: skip


def test_uniform_sampler_makes_one_seeded_draw_per_step():

    sampler = build_sampler(TINY, "uniform", seed=3, warmup_start_epoch=0)
    rng = np.random.Generator(np.random.PCG64(3))
    for epoch in (0, 0, 2, 5, 5, 9):
        allowed = np.asarray(allowed_channel_genes(TINY, epoch, 0), dtype=np.int64)
        assert sampler.sample(epoch) == to_arch(uniform_genes(rng, TINY.num_blocks, allowed, 1)[0], TINY)
    assert sampler.count == 6


def test_sampler_state_fields_fallbacks_and_errors():
    window = default_window(SMALL)
    a = build_sampler(SMALL, "random", seed=5, window=window, warmup_start_epoch=3)
    for _ in range(4):
        a.sample(0)  # before channel selection only scale 2.0: the window is out of reach
    a.sample(30)
    assert (a.count, a.warmup_fallbacks) == (5, 4)
    state = a.state_dict()
    assert set(state) == {"kind", "seed", "count", "warmup_fallbacks", "rng"}
    assert (state["kind"], state["seed"], state["count"], state["warmup_fallbacks"]) == ("random", 5, 5, 4)
    b = build_sampler(SMALL, "random", seed=0, window=window, warmup_start_epoch=3)
    b.load_state_dict(state)
    assert (b.seed, b.count, b.warmup_fallbacks) == (5, 5, 4)
    older = {k: v for k, v in state.items() if k != "warmup_fallbacks"}  # a state from before the counter
    b.load_state_dict(older)
    assert b.warmup_fallbacks == 0
    with pytest.raises(SposError) as e:
        build_sampler(SMALL, "uniform").load_state_dict(state)
    assert str(e.value) == "sampler state is for a 'random' sampler, this one is 'uniform'; resume with the same sampler kind"
    with pytest.raises(SposError) as e:
        b.load_state_dict({k: v for k, v in state.items() if k != "count"})
    assert str(e.value) == ("sampler state is incomplete or corrupt (KeyError('count')); "
                            "resume from another checkpoint")  # fmt: skip


def test_strolling_state_fields_and_a_parents_shape_from_another_space():
    window = default_window(SMALL)
    fresh = build_sampler(SMALL, "strolling", seed=1, window=window, bin_macs=5e4, params_levels=3, train_rank=2)
    state = fresh.state_dict()
    assert state["parents"] is None  # no step yet
    assert {k: state[k] for k in ("bin", "bin_dir", "level", "level_dir", "bin_macs", "params_levels", "train_rank")} == {
        "bin": 0, "bin_dir": 1, "level": 0, "level_dir": 1, "bin_macs": 5e4, "params_levels": 3, "train_rank": 2}
    fresh.sample(0)
    state = fresh.state_dict()
    assert np.asarray(state["parents"]).shape == (5, 2 * SMALL.num_blocks)
    other = build_sampler(SMALL, "strolling", seed=1, window=window, bin_macs=5e4, params_levels=3, train_rank=2)
    other.load_state_dict(state)
    assert other.parents.dtype == np.int64 and (other.parents == fresh.parents).all()
    state["parents"] = [row[:-2] for row in state["parents"]]
    with pytest.raises(SposError) as e:
        other.load_state_dict(state)
    n = 2 * SMALL.num_blocks
    assert str(e.value) == (f"strolling state has parents of shape [5, {n - 2}], this search space needs [5, {n}]; "
                            "resume with the same search space")  # fmt: skip


@pytest.mark.parametrize("levels, expected", [(1, [0, 0, 0, 0, 0]), (2, [1, 0, 1, 0, 1]), (3, [1, 2, 1, 0, 1]),
                                              (4, [1, 2, 3, 2, 1])])  # fmt: skip
def test_strolling_params_target_steps_level_by_level_and_back(levels, expected):
    sampler = build_sampler(SMALL, "strolling", window=default_window(SMALL), params_levels=levels)
    got = []
    for _ in expected:
        sampler._next_level()
        got.append(sampler.level)
    assert got == expected


def test_unreachable_window_messages_give_the_reachable_ranges():
    space = SearchSpace()
    genes = usable_channel_genes(space, None)
    (m_lo, m_hi), (p_lo, p_hi) = reachable_costs(space)
    ranges = (f"what this search space can reach with channel scales 0.6..2.0: MACs {m_lo / 1e6:.3f}M..{m_hi / 1e6:.3f}M, "
              f"params {p_lo / 1e6:.4f}M..{p_hi / 1e6:.4f}M (not every combination is reachable); move the window "
              "inside that range")  # fmt: skip
    assert genes[0] == 2 and genes[-1] == 9  # scales 0.6..2.0
    outside = Bounds(max_macs=m_lo - 1)
    with pytest.raises(SposError) as e:
        build_sampler(space, "strolling", window=outside)
    assert str(e.value) == f"the target window ({outside}) lies outside {ranges}"
    corner = Bounds(max_macs=m_lo * 1.01, min_params=p_hi * 0.99)
    with pytest.raises(SposError) as e:
        build_sampler(space, "random", window=corner)
    assert str(e.value) == (f"the target window ({corner}) is not reached by any path found in {ranges}, widen it, "
                            "or use the strolling sampler, which reaches narrow windows and corners")  # fmt: skip


def test_random_sampler_probe_rate_batches_and_bounded_tries(monkeypatch):

    window = default_window(TINY)
    allowed = np.asarray(usable_channel_genes(TINY, None), dtype=np.int64)
    probe = uniform_genes(np.random.default_rng(0), TINY.num_blocks, allowed, RandomSampler.PROBE_DRAWS)
    hits = int(BatchPricer(TINY).inside(window, probe).sum())
    assert 16 < hits < RandomSampler.PROBE_DRAWS
    sampler = build_sampler(TINY, "random", window=window)
    assert sampler._rate[tuple(allowed.tolist())] == hits / RandomSampler.PROBE_DRAWS
    # Exactly as many probe hits as needed: reachable (at least PROBE_HITS, not more than).
    monkeypatch.setattr(RandomSampler, "PROBE_HITS", hits)
    build_sampler(TINY, "random", window=window)
    monkeypatch.setattr(RandomSampler, "PROBE_HITS", hits + 1)
    with pytest.raises(SposError, match="is not reached by any path found in"):
        build_sampler(TINY, "random", window=window)
    monkeypatch.undo()

    # Batches of 4 / rate draws (16 to 8192), until MAX_TRIES draws found nothing.
    key = tuple(allowed.tolist())
    for rate, batch in ((1 / 64, 256), (0.5, 16), (1e-6, 8192)):
        sampler._rate[key] = rate
        sizes: list[int] = []

        def miss(w, cand, sizes=sizes):  # every draw misses the window
            sizes.append(len(cand))
            return np.zeros(len(cand), bool)

        monkeypatch.setattr(sampler._pricer, "inside", miss)
        with pytest.raises(SposError) as e:
            sampler.sample()
        tries = -(-RandomSampler.MAX_TRIES // batch) * batch
        assert set(sizes) == {batch} and len(sizes) == tries // batch
        assert str(e.value).startswith(f"no path inside the window after {tries} uniform draws; the target window "
                                       f"({window}) is not reached by any path found in what this search space can "
                                       f"reach with channel scales 0.6..2.0: MACs")  # fmt: skip


def test_strolling_bins_cut_the_clipped_macs_range():
    sampler = build_sampler(SMALL, "strolling", window=default_window(SMALL))
    genes = SMALL.channel_genes

    def cut(lo, hi, bin_macs=None):
        sampler.bin_macs = bin_macs
        sampler._ranges = lambda allowed: ((lo, hi), (0.0, 1.0))
        return sampler.bins(genes)

    assert cut(200e6, 300e6) == [(200e6 + 20e6 * i, 220e6 + 20e6 * i) for i in range(5)]  # 100M: 20M bins
    assert len(cut(200e6, 299e6)) == 10  # narrower than 5 bins of 20M: 10 bins
    assert cut(1e6, 1e6 + 5) == [(1e6 + 0.5 * i, 1e6 + 0.5 * (i + 1)) for i in range(10)]
    assert cut(1e6, 1e6) == [(1e6, 1e6)]  # a single-MACs window: one empty-width bin
    assert cut(0.0, 100.0, bin_macs=30) == [(0, 30), (30, 60), (60, 90), (90, 100)]  # the last one clipped
    assert cut(0.0, 100.0, bin_macs=100) == [(0, 100)] == cut(0.0, 100.0, bin_macs=500)


def test_strolling_ranges_clip_the_window_to_what_the_genes_reach():

    (m0, m1), (p0, p1) = BatchPricer(SMALL).reachable(SMALL.channel_genes)
    inner = Bounds(min_macs=m0 + 0.3 * (m1 - m0), max_macs=m0 + 0.7 * (m1 - m0),
                   min_params=p0 + 0.3 * (p1 - p0), max_params=p0 + 0.7 * (p1 - p0))  # fmt: skip
    genes = np.asarray(SMALL.channel_genes, dtype=np.int64)
    sampler = build_sampler(SMALL, "strolling", window=inner)
    assert sampler._ranges(genes) == ((inner.min_macs, inner.max_macs), (inner.min_params, inner.max_params))
    open_top = Bounds(min_macs=inner.min_macs, min_params=inner.min_params)
    assert build_sampler(SMALL, "strolling", window=open_top)._ranges(genes) == (
        (inner.min_macs, m1), (inner.min_params, p1))  # fmt: skip
    open_bottom = Bounds(max_macs=inner.max_macs, max_params=inner.max_params)
    assert build_sampler(SMALL, "strolling", window=open_bottom)._ranges(genes) == (
        (m0, inner.max_macs), (p0, inner.max_params))  # fmt: skip


@pytest.mark.parametrize("parts", [2, 4, 10])
def test_strolling_starts_in_the_populations_bin_heading_for_the_far_end(parts):
    import copy


    genes = np.asarray(SMALL.channel_genes, dtype=np.int64)
    pricer = BatchPricer(SMALL)
    (lo, hi), _ = pricer.reachable(SMALL.channel_genes)
    window = Bounds(min_macs=lo, max_macs=hi)  # the whole range: populations start anywhere
    table = cost_table(SMALL)
    starts = set()
    for seed in range(8):
        sampler = build_sampler(SMALL, "strolling", seed=seed, window=window, bin_macs=(hi - lo) / parts)
        bins = sampler.bins(genes)
        assert len(bins) == parts
        parents = copy.deepcopy(sampler)._init_parents(genes)  # the population the first step places
        start = float(np.median(pricer(parents)[0]))
        first = next(i for i, (_, b_hi) in enumerate(bins) if start <= b_hi)
        heading = -1 if first >= parts / 2 else 1
        starts.add(first)
        for b in (first, first + heading):  # the first two paths: the start bin, then the next one
            b_lo, b_hi = bins[b]
            assert b_lo <= table(sampler.sample()).macs <= b_hi
    assert starts >= {2: {0, 1}, 4: {1, 2}, 10: {4, 5}}[parts]  # either half, so both headings


def _strolling_with_pool(kids, m_range, p_range, parents=None, **options):
    """A strolling sampler whose next step sees exactly ``parents`` + ``kids`` (gene rows), the
    MACs range ``m_range`` as one bin and the params range ``p_range`` (what the window and the
    children draw would give): the step's ranking alone decides what it trains."""

    sampler = build_sampler(SMALL, "strolling", seed=0, window=default_window(SMALL), **options)
    allowed = np.asarray(SMALL.channel_genes, dtype=np.int64)
    if parents is None:
        parents = uniform_genes(np.random.default_rng(99), SMALL.num_blocks, allowed, 5)
    sampler.parents = np.asarray(parents, dtype=np.int64)
    sampler.bin_macs = m_range[1] - m_range[0] + 1  # one bin: the whole range
    sampler._ranges = lambda allowed: (m_range, p_range)
    sampler._draw_children = lambda allowed, lo, hi: np.concatenate((sampler.parents, kids))
    return sampler


def _priced_rows(rows):
    macs, params = BatchPricer(SMALL)(np.asarray(rows))
    return macs.astype(float), params.astype(float)


def _priced(n, seed=0):
    genes = uniform_genes(np.random.default_rng(seed), SMALL.num_blocks,
                          np.asarray(SMALL.channel_genes, dtype=np.int64), n)  # fmt: skip
    genes = np.unique(genes, axis=0)
    return genes, *_priced_rows(genes)


def _arch(row):

    return to_arch(row, SMALL)


@pytest.mark.parametrize("levels, level", [(2, 1), (3, 1), (4, 2)])
def test_strolling_trains_the_in_bin_child_nearest_the_params_target(levels, level):
    genes, macs, params = _priced(200)
    m_range = (macs.min(), macs.max())  # every child is in the bin
    p_range = (np.quantile(params, 0.2), np.quantile(params, 0.9))
    target = p_range[0] + (p_range[1] - p_range[0]) * level / (levels - 1)
    rng = np.random.default_rng(levels)
    kids = genes[rng.permutation(len(genes))[:11]]
    kmacs, kparams = _priced_rows(kids)
    order = np.lexsort((np.abs(kmacs[:10] - sum(m_range) / 2), np.abs(kparams[:10] - target)))
    kids = np.concatenate((kids[order], kids[10:]))  # the best first, the 11th in-bin child last
    sampler = _strolling_with_pool(kids, m_range, p_range, params_levels=levels)
    sampler.level = level
    assert sampler.sample() == _arch(kids[0])
    assert (sampler.parents == kids[:5]).all()  # the best five become the parents
    ranked = _strolling_with_pool(kids, m_range, p_range, params_levels=levels, train_rank=9)
    ranked.level = level
    assert ranked.sample() == _arch(kids[9])  # train_rank 9: the 10th of the 10 in-bin children


@pytest.mark.parametrize("centre_kid_is_larger", [True, False])
def test_strolling_breaks_params_ties_by_the_distance_to_the_bin_centre(centre_kid_is_larger):
    genes, macs, params = _priced(400, seed=1)
    by_params = np.argsort(params, kind="stable")
    # Two children with adjacent params and different MACs: the params target halfway between
    # them ties them; the bin is centred on one of them.
    i = next(k for k in range(len(by_params) - 1)
             if params[by_params[k]] < params[by_params[k + 1]] and macs[by_params[k]] != macs[by_params[k + 1]])  # fmt: skip
    a, b = by_params[i], by_params[i + 1]
    if (macs[a] > macs[b]) != centre_kid_is_larger:
        a, b = b, a
    target = (params[a] + params[b]) / 2
    span = np.abs(macs - macs[a]).max() + 1
    m_range = (macs[a] - span, macs[a] + span)  # centre: the MACs of a; every child inside
    others = [k for k in by_params if k not in (a, b)][-8:]  # far from the target in params
    kids = genes[[b, a, *others]]
    sampler = _strolling_with_pool(kids, m_range, (target, params.max()), params_levels=2)
    assert sampler.level == 0  # target = the params range's low end
    assert sampler.sample() == _arch(genes[a])


def test_strolling_never_trains_a_parent_and_tops_up_with_distinct_nearest_children():
    genes, macs, params = _priced(300, seed=2)
    by_macs = np.argsort(macs, kind="stable")
    parents = genes[by_macs[150:155]]
    kids_in = genes[by_macs[155:167]]  # 12 children, in the bin with the parents ...
    m_range = (macs[by_macs[150]], macs[by_macs[166]])
    p_range = (params[by_macs[152]], params.max())  # ... and the target is parent 2's params
    sampler = _strolling_with_pool(kids_in, m_range, p_range, parents=parents, params_levels=2)
    chosen = sampler.sample()
    assert chosen in [_arch(k) for k in kids_in[:10]]
    assert chosen not in [_arch(p) for p in parents]
    # Only 3 children in the bin: the rest is topped up with the nearest other ones (children
    # before parents), each candidate once.
    parents = genes[by_macs[100:105]]
    few = np.concatenate((genes[by_macs[150:153]], genes[by_macs[200:230]]))
    m_range = (macs[by_macs[150]], macs[by_macs[152]])
    topped = _strolling_with_pool(few, m_range, p_range, parents=parents, params_levels=2)
    topped.sample()
    assert len(np.unique(topped.parents, axis=0)) == 5
    assert all(any((p == k).all() for k in few[:3]) for p in topped.parents[:3])  # the in-bin ones lead
    # A bin index from a larger bin count (the allowed genes changed) is clamped, not an error.
    topped.bin = 7
    topped.sample()
    assert topped.bin == 0
    # train_rank past the candidates: the last one.
    short = _strolling_with_pool(few[:3], m_range, p_range, parents=genes[by_macs[290:295]], params_levels=2,
                                 train_rank=9)  # fmt: skip
    assert short.sample() in [_arch(k) for k in (*few[:3], *genes[by_macs[290:295]])]


def test_strolling_children_cross_two_distinct_parents_uniformly():

    (lo, _), _ = BatchPricer(SMALL).reachable(SMALL.channel_genes)
    sampler = build_sampler(SMALL, "strolling", seed=4, window=Bounds(min_macs=lo))  # every path inside
    sampler.MUTATION = 0.0  # children are pure crossovers
    n = SMALL.num_blocks
    allowed = np.asarray(SMALL.channel_genes, dtype=np.int64)
    # Parent p's channel gene at position c is 2 + (p + c) % 5: each gene names its parent.
    sampler.parents = np.asarray([[p % 4] * n + [2 + (p + c) % 5 for c in range(n)] for p in range(5)], dtype=np.int64)
    pools = [sampler._draw_children(allowed, np.inf, np.inf) for _ in range(2)]  # no child in the bin:
    pairs, one_parent = Counter(), 0  # every batch is drawn
    for pool in pools:
        assert (pool[:5] == sampler.parents).all() and len(pool) == 5 + sampler.BATCH * sampler.MAX_BATCHES
        for start in range(5, len(pool), sampler.BATCH):
            batch_pairs = set()
            for kid in pool[start : start + sampler.BATCH]:
                who = {int((g - 2 - c) % 5) for c, g in enumerate(kid[n:])}
                assert len(who) <= 2
                if len(who) == 1:
                    one_parent += 1
                    continue
                i, j = sorted(who)
                assert all(b in (i % 4, j % 4) for b in kid[:n])  # block genes from the same two
                pairs[i, j] += 1
                batch_pairs.add((i, j))
            assert len(batch_pairs) >= 7  # each child picks its own pair
    kids = sum(len(p) - 5 for p in pools)
    assert one_parent / kids < 0.12  # 2 / 2^5 of uniform crossovers take every channel from one
    assert set(pairs) == {(i, j) for i in range(5) for j in range(i + 1, 5)}
    assert all(0.08 < c / sum(pairs.values()) < 0.12 for c in pairs.values())  # every pair alike
    # Drawing stops as soon as CHILDREN children lie in the bin.
    sampler.BATCH, sampler.MAX_BATCHES = 1, 1000
    assert len(sampler._draw_children(allowed, 0, np.inf)) == 5 + sampler.CHILDREN


def test_strolling_walk_ping_pongs_over_the_bins_and_steps_the_level_at_each_end():
    sampler = build_sampler(SMALL, "strolling", window=default_window(SMALL), params_levels=3)

    def walk(k, start, heading, steps):
        sampler.bin, sampler.bin_dir, sampler.level, sampler.level_dir = start, heading, 0, 1
        out = []
        for _ in range(steps):
            sampler._advance(k)
            out.append((sampler.bin, sampler.bin_dir, sampler.level))
        return out

    assert walk(4, 0, 1, 7) == [(1, 1, 0), (2, 1, 0), (3, -1, 1), (2, -1, 1), (1, -1, 1), (0, 1, 2), (1, 1, 2)]
    assert walk(2, 0, 1, 4) == [(1, -1, 1), (0, 1, 2), (1, -1, 1), (0, 1, 0)]
    assert walk(1, 0, 1, 4) == [(0, 1, 1), (0, 1, 2), (0, 1, 1), (0, 1, 0)]  # one bin: every step a turn
    # After the bin count shrank (the allowed genes changed) the walk turns back inside.
    assert walk(4, 6, 1, 2) == [(3, -1, 1), (2, -1, 1)]
    assert walk(4, 3, 1, 1) == [(2, -1, 0)]
    assert walk(4, 0, -1, 1) == [(1, 1, 0)]


def test_strolling_counts_children_in_the_bin_inclusively_and_stops_at_children():
    genes, macs, _ = _priced(50, seed=5)
    sampler = build_sampler(SMALL, "strolling", seed=2, window=default_window(SMALL))
    allowed = np.asarray(SMALL.channel_genes, dtype=np.int64)
    one = genes[int(np.argmin(np.abs(macs - np.median(macs))))]
    sampler.window = Bounds(min_macs=float(macs.min()) - 1)  # every child is in the window
    sampler.parents = np.repeat(one[None], 5, axis=0)  # identical parents: every child is `one`
    sampler.MUTATION, sampler.BATCH, sampler.MAX_BATCHES = 0.0, 1, 1000
    x = float(_priced_rows(one[None])[0][0])
    pool = sampler._draw_children(allowed, x, x)  # a bin of one MACs value, hit by every child
    assert len(pool) == 5 + sampler.CHILDREN
    sampler.parents = genes[:5]
    sampler.MUTATION = 0.1
    lo, hi = np.quantile(macs, [0.4, 0.6])
    pool = sampler._draw_children(allowed, lo, hi)
    kid_macs = _priced_rows(pool[5:])[0]
    in_bin = (kid_macs >= lo) & (kid_macs <= hi)
    assert in_bin.sum() == sampler.CHILDREN and in_bin[-1]  # the last child drawn was the 10th in the bin


def test_strolling_options_defaults_and_their_messages():
    window = default_window(SMALL)
    state = build_sampler(SMALL, "strolling", window=window).state_dict()
    assert (state["bin_macs"], state["params_levels"], state["train_rank"]) == (None, 5, 0)
    build_sampler(SMALL, "strolling", window=window, bin_macs=0.5, params_levels=1, train_rank=9)  # all allowed
    for options, message in (({"bin_macs": 0}, "bin_macs must be positive, got 0"),
                             ({"params_levels": 0}, "params_levels must be at least 1, got 0"),
                             ({"train_rank": 10}, "train_rank must be in 0..9, got 10"),
                             ({"train_rank": -1}, "train_rank must be in 0..9, got -1")):  # fmt: skip
        with pytest.raises(SposError) as e:
            build_sampler(SMALL, "strolling", window=window, **options)
        assert str(e.value) == message
    narrow = build_sampler(SMALL, "strolling", window=window, min_channel_gene=4)
    assert narrow.full_genes == (4, 5, 6, 7, 8, 9)
    assert all(min(narrow.sample(40).channels) >= 4 for _ in range(20))
    assert repr(build_sampler(SMALL, "random", seed=5, window=window)) == f"RandomSampler(seed=5, window={window}, count=0)"


def test_sample_and_sample_step_default_to_epoch_0_of_the_warm_up():
    for draw in ("sample", "sample_step"):
        sampler = build_sampler(TINY, "uniform", seed=1, warmup_start_epoch=0)
        got = [getattr(sampler, draw)() for _ in range(200)]
        archs = got if draw == "sample" else [a for step in got for a in step]
        assert {c for a in archs for c in a.channels} == {8, 9}  # epoch 0 of the warm-up: scales 1.8, 2.0


def test_climbing_reaches_a_params_corner_and_returns_only_paths_inside_every_bound():

    pricer = BatchPricer(SMALL)
    (m0, m1), (p0, p1) = pricer.reachable(SMALL.channel_genes)
    allowed = np.asarray(SMALL.channel_genes, dtype=np.int64)
    corner = Bounds(max_params=p0 + 0.01 * (p1 - p0))  # 1% of the params range: uniform draws never hit it
    uniform = uniform_genes(np.random.default_rng(0), SMALL.num_blocks, allowed, 1 << 15)
    assert not pricer.inside(corner, uniform).any()
    found = climb_into_window(pricer, corner, allowed, np.random.default_rng(1), need=5)
    assert found.shape == (5, 2 * SMALL.num_blocks) and found.dtype == np.int64 and pricer.inside(corner, found).all()
    sampler = build_sampler(SMALL, "strolling", window=corner)
    assert all(pricer.inside(corner, arch_genes([a])).all() for a in
               (sampler.sample() for _ in range(5)))  # fmt: skip
    # A Σ score bound is checked too, although the climb only minimises MACs and params excess:
    # half the paths in this MACs band break it.
    band = Bounds(min_macs=m0 + 0.4 * (m1 - m0), max_macs=m0 + 0.6 * (m1 - m0))
    macs, params = pricer(uniform[pricer.inside(band, uniform)])
    scored = Bounds(min_macs=band.min_macs, max_macs=band.max_macs, max_score=float(np.median(sigma_score(macs, params))))
    found = climb_into_window(pricer, scored, allowed, np.random.default_rng(2), need=40)
    assert len(found) == 40 and pricer.inside(scored, found).all()
