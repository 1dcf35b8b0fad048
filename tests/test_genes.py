import random

from hypothesis import given, settings
from hypothesis import strategies as st

from spos.genes import crossover, mutate, sample
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
