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
