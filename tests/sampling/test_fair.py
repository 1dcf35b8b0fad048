"""FairNAS strict fairness: every choice block once per step at every position."""

import numpy as np
import pytest

from spos.cost.bounds import Bounds
from spos.cost.table import cost_table
from spos.sampling.samplers import build_sampler
from spos.space import BLOCK_NAMES


def test_each_step_trains_every_choice_block_once_at_every_position(tiny_space):
    sampler = build_sampler(tiny_space, "fair", seed=3)
    firsts = set()
    for _ in range(20):
        paths = sampler.sample_step(0)
        assert len(paths) == sampler.paths_per_step == len(BLOCK_NAMES)
        for position in range(tiny_space.num_blocks):
            assert sorted(p.blocks[position] for p in paths) == list(range(len(BLOCK_NAMES)))
        firsts.add(paths[0].blocks)
    assert len(firsts) > 10  # the permutations are random, not one fixed assignment


def test_fair_paths_keep_channels_inside_the_window_when_they_can(tiny_space):
    table = cost_table(tiny_space)
    sampler = build_sampler(tiny_space, "fair", seed=0)
    macs = sorted(table(p).macs for _ in range(200) for p in sampler.sample_step(0))
    window = Bounds(min_macs=macs[len(macs) // 4], max_macs=macs[3 * len(macs) // 4])
    constrained = build_sampler(tiny_space, "fair", seed=0, window=window)
    paths = [p for _ in range(100) for p in constrained.sample_step(0)]
    inside = np.mean([window.contains(table(p)) for p in paths])
    assert inside > 0.9 and constrained.window_misses == round((1 - inside) * len(paths))
    # Fairness is kept whatever the window does to the channels.
    for step in range(0, len(paths), 4):
        group = paths[step : step + 4]
        assert all(sorted(p.blocks[i] for p in group) == [0, 1, 2, 3] for i in range(tiny_space.num_blocks))


@pytest.mark.parametrize("warmup", [None, 2])
def test_fair_sampler_resumes_its_sequence_exactly(tiny_space, warmup):
    a = build_sampler(tiny_space, "fair", seed=5, warmup_start_epoch=warmup)
    for _ in range(7):
        a.sample_step(1)
    b = build_sampler(tiny_space, "fair", seed=99, warmup_start_epoch=warmup)
    b.load_state_dict(a.state_dict())
    assert [a.sample_step(3) for _ in range(5)] == [b.sample_step(3) for _ in range(5)]


def test_every_path_without_a_draw_in_the_window_is_one_miss_and_the_counts_survive_a_resume(tiny_space):
    from spos.sampling.fair import FairSampler

    window = Bounds(max_macs=1e12)  # a closed window every path is inside ...
    sampler = FairSampler(tiny_space, seed=3, window=window)
    assert (sampler.seed, sampler.window) == (3, window)  # keyword arguments reach the base class
    sampler._pricer.inside = lambda bounds, genes: np.zeros(len(genes), dtype=bool)  # ... refused
    sampler.sample_step(0)
    sampler.sample_step(0)
    assert (sampler.count, sampler.window_misses) == (8, 8)  # 4 paths a step, each a miss
    state = sampler.state_dict()
    assert (state["count"], state["window_misses"]) == (8, 8)
    resumed = FairSampler(tiny_space, seed=0, window=window)
    resumed.load_state_dict(state)
    assert (resumed.seed, resumed.count, resumed.window_misses) == (3, 8, 8)
    resumed.load_state_dict({k: v for k, v in state.items() if k != "window_misses"})  # older states
    assert resumed.window_misses == 0
    # sample() is the first path of the group sample_step() would draw from the same state.
    twin = FairSampler(tiny_space, seed=3)
    assert FairSampler(tiny_space, seed=3).sample(0) == twin.sample_step(0)[0]
