import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spos.errors import SposError
from spos.genes import crossover, largest, mutate, sample, smallest, to_arch, uniform_genes
from spos.space import SearchSpace

SPACE = SearchSpace()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["block", "channel", "joint"]))
def test_genetic_operators_stay_in_space_and_respect_fixed_half(seed, genes):
    rng = random.Random(seed)
    a, b = sample(SPACE, rng), sample(SPACE, rng)
    for child in (mutate(a, SPACE, rng, 0.5, genes), crossover(a, b, rng, genes)):
        child.validate(SPACE)
        if genes == "block":
            assert child.channels == a.channels
        if genes == "channel":
            assert child.blocks == a.blocks


def test_genetic_operators_are_pure_functions_of_the_rng():
    a = sample(SPACE, random.Random(1))
    b = sample(SPACE, random.Random(2))
    assert mutate(a, SPACE, random.Random(3)) == mutate(a, SPACE, random.Random(3))
    assert crossover(a, b, random.Random(4)) == crossover(a, b, random.Random(4))
    child = crossover(a, b, random.Random(5))
    assert all(c in (x, y) for c, x, y in zip(child.blocks, a.blocks, b.blocks))


def test_sample_is_uniform_enough():
    rng = random.Random(0)
    counts = [0] * 4
    for _ in range(500):
        for g in sample(SPACE, rng).blocks:
            counts[g] += 1
    assert min(counts) > 0.2 * 10000 and max(counts) < 0.3 * 10000


def test_mutate_resamples_each_gene_with_its_probability():
    # A resampled gene keeps its value with chance 1/k (k choices), so the changed fraction is
    # prob * (1 - 1/k): an operator that hands the parent back changes nothing and fails here.
    rng = random.Random(0)
    changed = {"blocks": 0, "channels": 0}
    trials = 400
    for _ in range(trials):
        a = sample(SPACE, rng)
        child = mutate(a, SPACE, rng, 0.5)
        changed["blocks"] += sum(x != y for x, y in zip(a.blocks, child.blocks))
        changed["channels"] += sum(x != y for x, y in zip(a.channels, child.channels))
    n = trials * SPACE.num_blocks
    k = len(SPACE.channel_genes)
    assert abs(changed["blocks"] / n - 0.5 * 3 / 4) < 0.03
    assert abs(changed["channels"] / n - 0.5 * (k - 1) / k) < 0.03
    a = sample(SPACE, random.Random(1))
    assert mutate(a, SPACE, random.Random(2), 0.0) == a
    for genes, half in (("block", "blocks"), ("channel", "channels")):
        children = [mutate(a, SPACE, random.Random(s), 0.5, genes) for s in range(20)]
        assert all(getattr(c, half) != getattr(a, half) for c in children)


def test_crossover_takes_about_half_of_the_genes_from_each_parent():
    rng = random.Random(0)
    from_a = from_b = 0
    for _ in range(300):
        a, b = sample(SPACE, rng), sample(SPACE, rng)
        child = crossover(a, b, rng)
        for c, x, y in zip(child.blocks + child.channels, a.blocks + a.channels, b.blocks + b.channels):
            if x != y:
                from_a += c == x
                from_b += c == y
    assert from_a + from_b > 5000
    assert abs(from_b / (from_a + from_b) - 0.5) < 0.03
    a, b = sample(SPACE, random.Random(1)), sample(SPACE, random.Random(2))
    children = {crossover(a, b, random.Random(s)) for s in range(20)}
    assert a not in children and b not in children and len(children) == 20


def test_batched_mutation_resamples_with_its_probability():
    import numpy as np

    from spos.genes import mutate_genes, uniform_genes

    rng = np.random.default_rng(0)
    allowed = np.asarray(SPACE.channel_genes)
    n = SPACE.num_blocks
    genes = uniform_genes(rng, n, allowed, 2000)
    out = mutate_genes(rng, genes, n, allowed, 0.5)
    k = len(allowed)
    assert abs((out[:, :n] != genes[:, :n]).mean() - 0.5 * 3 / 4) < 0.02
    assert abs((out[:, n:] != genes[:, n:]).mean() - 0.5 * (k - 1) / k) < 0.02
    assert np.isin(out[:, n:], allowed).all() and ((0 <= out[:, :n]) & (out[:, :n] < 4)).all()


def test_operators_keep_the_stage_layout_of_a_small_space():
    tiny = SearchSpace(stage_depths=(1, 1, 2, 1), channel_genes=(3, 6, 8))
    rng = random.Random(0)
    a, b = sample(tiny, rng), sample(tiny, rng)
    for arch in (a, mutate(a, tiny, rng, 0.5), crossover(a, b, rng), largest(tiny), smallest(tiny)):
        assert arch.stage_depths == (1, 1, 2, 1) and len(arch.blocks) == 5
        arch.validate(tiny)
    # The widest / narrowest allowed channel gene, the block with the most / fewest MACs.
    assert (largest(tiny).blocks, largest(tiny).channels) == ((3,) * 5, (8,) * 5)
    assert (smallest(tiny).blocks, smallest(tiny).channels) == ((0,) * 5, (3,) * 5)
    with pytest.raises(SposError, match="genes must be block, channel or joint, got 'both'"):
        mutate(a, tiny, rng, genes="both")


def test_sample_draws_only_and_every_one_of_the_warm_up_channel_genes():
    rng = random.Random(0)
    seen = {c for _ in range(50) for c in sample(SPACE, rng, channel_genes={9, 8}).channels}
    assert seen == {8, 9}
    assert {c for _ in range(50) for c in sample(SPACE, rng).channels} == set(SPACE.channel_genes)


def test_mutate_defaults_to_probability_a_tenth_per_gene():
    rng = random.Random(0)
    changed = n = 0
    for _ in range(500):
        a = sample(SPACE, rng)
        child = mutate(a, SPACE, rng)
        changed += sum(x != y for x, y in zip(a.blocks, child.blocks))
        n += len(a.blocks)
    assert abs(changed / n - 0.1 * 3 / 4) < 0.01


def test_block_or_channel_crossover_mixes_that_half_about_evenly():
    rng = random.Random(0)
    for genes, half in (("block", "blocks"), ("channel", "channels")):
        from_a = from_b = 0
        for _ in range(300):
            a, b = sample(SPACE, rng), sample(SPACE, rng)
            child = crossover(a, b, rng, genes)
            for c, x, y in zip(getattr(child, half), getattr(a, half), getattr(b, half)):
                if x != y:
                    from_a += c == x
                    from_b += c == y
        assert abs(from_b / (from_a + from_b) - 0.5) < 0.04, genes


def test_batched_genes_draw_every_allowed_value_and_decode_to_the_same_arch():
    tiny = SearchSpace(stage_depths=(1, 1, 2, 1), channel_genes=(3, 6, 8))
    allowed = np.asarray(tiny.channel_genes)
    genes = uniform_genes(np.random.default_rng(0), 5, allowed, 400)
    assert set(genes[:, :5].ravel()) == {0, 1, 2, 3} and set(genes[:, 5:].ravel()) == {3, 6, 8}
    archs = [sample(tiny, random.Random(s)) for s in range(10)]
    rows = np.asarray([[*a.blocks, *a.channels] for a in archs])  # N block genes, then N channel genes
    assert [to_arch(row, tiny) for row in rows] == archs
    assert all(to_arch(row, tiny).stage_depths == (1, 1, 2, 1) for row in genes[:5])
