"""The evolutionary search's candidate generator and small helpers, one behaviour at a time:
children mix their parents, fills keep every child they found, rejections are counted exactly,
the too-tight message names the bound that rejected most, and the fitness and front rules."""

from __future__ import annotations

import itertools
import random

import pytest

from spos.cost.table import cost_table
from spos.errors import SposError
from spos.genes import largest, smallest
from spos.search.config import SearchConfig
from spos.search.evolution import (
    CandidateGenerator,
    fitness_of,
    next_generation,
    pareto_front,
    total_generations,
)
from spos.space import Arch


def config(**kw) -> SearchConfig:
    base = {
        "population": 12,
        "parents": 3,
        "generations": 5,
        "candidates": 20,
        "recal_images": 40,
        "holdout": 30,
    }
    return SearchConfig(**{**base, **kw})


def arch(s: str, space) -> Arch:
    return Arch.parse(s, space.stage_depths).validate(space)


def test_a_child_mixes_two_parents_gene_by_gene_and_copies_a_single_one(tiny_space):
    gen = CandidateGenerator(tiny_space, config(mutation_prob=0.0), None)
    a, b = arch("0-0-00-0:2-2-22-2", tiny_space), arch("3-3-33-3:9-9-99-9", tiny_space)
    rng = random.Random(0)
    children = [gen.child([a, b], rng) for _ in range(40)]
    for c in children:  # every gene from one of the parents, at its own position
        assert all(g in (0, 3) for g in c.blocks) and all(g in (2, 9) for g in c.channels)
    mixed = [c for c in children if set(c.blocks) == {0, 3} or set(c.channels) == {2, 9}]
    assert len(mixed) > 30  # 2 of 2**10 gene patterns are a parent unchanged
    assert gen.child([a], random.Random(1)) == a  # one parent: crossover with itself, no mutation


def test_draw_counts_each_rejection_and_stops_after_its_bound(tiny_space, macs_cap):
    cap = macs_cap(0.5)
    gen = CandidateGenerator(tiny_space, config(max_macs=cap, tries_per_candidate=600), None)
    small, big = smallest(tiny_space), largest(tiny_space)
    seen = {str(small)}
    stream = itertools.cycle([small, big, big])  # a duplicate, then two over the MACs cap
    calls = []

    def make():
        calls.append(1)
        return next(stream)

    rejected: dict[str, int] = {}
    assert gen.draw(2, seen, make, rejected) == []
    assert len(calls) == 1200  # tries_per_candidate x n, above the floor of 1000
    assert rejected == {"duplicate": 400, "max_macs": 800}
    calls.clear()
    gen.draw(1, seen, make, rejected := {})
    assert len(calls) == 1000  # the floor


def test_fill_keeps_the_children_it_found_and_tops_up_with_random_archs(tiny_space):
    gen = CandidateGenerator(tiny_space, config(mutation_prob=0.0), None)
    # Two parents two genes apart: exactly two children are new (the parents are known).
    a, b = arch("0-0-00-0:5-5-55-5", tiny_space), arch("1-0-00-0:6-5-55-5", tiny_space)
    mixes = {str(arch("1-0-00-0:5-5-55-5", tiny_space)), str(arch("0-0-00-0:6-5-55-5", tiny_space))}
    seen = {str(a), str(b)}
    out = gen.fill(5, seen, random.Random(0), [a, b])
    assert len(out) == len({str(x) for x in out}) == 5
    assert mixes <= {str(x) for x in out}
    assert seen == {str(a), str(b), *(str(x) for x in out)}


def test_fill_returns_what_it_found_when_at_least_is_met_and_names_the_shortfall_otherwise(
    tiny_space,
):
    gen = CandidateGenerator(tiny_space, config(), None)
    three = [
        arch(s, tiny_space) for s in ("0-0-00-0:5-5-55-5", "1-0-00-0:5-5-55-5", "2-0-00-0:5-5-55-5")
    ]
    stream = itertools.cycle(three)
    gen.random = lambda rng: next(stream)
    assert gen.fill(5, set(), random.Random(0), at_least=2) == three
    with pytest.raises(SposError) as err:
        gen.fill(5, set(), random.Random(0))
    assert str(err.value) == (
        "found only 3 of 5 new candidates in 1000 tries (rejected: duplicate: 997): the reachable archs are "
        "exhausted; lower --population/--candidates or search more genes"
    )


def test_the_too_tight_message_names_the_bound_that_rejected_most_with_the_space_range(
    tiny_space, macs_cap
):
    table = cost_table(tiny_space)
    lo, hi = table(smallest(tiny_space)), table(largest(tiny_space))
    gen = CandidateGenerator(tiny_space, config(max_macs=1e6, max_params=2e4), None)
    # The most frequent reason is named, whatever the insertion order or alphabet say.
    msg = gen._too_tight(1, 4, {"max_params": 2, "duplicate": 1, "max_macs": 5})
    assert msg == (
        f"found only 1 of 4 new candidates in 9 tries (rejected: max_macs: 5, max_params: 2, duplicate: 1): "
        f"--max-macs 1e+06 is too tight (MACs of this space run from {lo.macs:,} to {hi.macs:,}); loosen --max-macs"
    )
    msg = gen._too_tight(0, 4, {"max_macs": 2, "max_params": 7})
    assert msg.startswith(
        "found only 0 of 4 new candidates in 9 tries (rejected: max_params: 7, max_macs: 2): "
    )
    assert msg.endswith(f"--max-params 20000 is too tight (params run from {lo.params:,} to {hi.params:,}); "
                        "loosen --max-params")  # fmt: skip
    assert gen._too_tight(0, 3, {"duplicate": 4, "max_macs": 1}).endswith("the reachable archs are exhausted; "
                                                                          "lower --population/--candidates or search more genes")  # fmt: skip
    assert "the reachable archs are exhausted" in gen._too_tight(0, 1, {})

    class Latency:
        def predict(self, a):
            return 1.0

    gen = CandidateGenerator(tiny_space, config(max_latency_ms=0.5), Latency())
    assert gen._too_tight(0, 2, {"max_latency_ms": 3}).endswith(
        "--max-latency-ms 0.5 is too tight (see the latency table for the range); loosen --max-latency-ms"
    )


def test_set_up_errors_name_the_missing_option(tiny_space):
    with pytest.raises(SposError) as err:
        CandidateGenerator(tiny_space, config(max_latency_ms=5.0), None)
    assert str(err.value) == "--max-latency-ms needs a latency table; pass --latency-table FILE"
    with pytest.raises(SposError) as err:
        CandidateGenerator(tiny_space, config(genes="channel"), None)
    assert str(err.value) == "--genes channel needs the block genes to keep: pass --fix-blocks ARCH"


def test_children_of_the_next_generation_descend_from_the_survivors(tiny_space):
    cfg = config(p_select=0.0, mutation_prob=0.0)
    gen = CandidateGenerator(tiny_space, cfg, None)
    rng = random.Random(0)
    parents = [
        arch(s, tiny_space) for s in ("0-0-00-0:3-4-56-7", "0-0-00-0:8-2-63-3", "0-0-00-0:5-9-47-2")
    ]
    others = gen.fill(9, set(), random.Random(1))
    population = [*parents, *others]
    evaluated = {
        str(a): {"arch": str(a), "fitness": 1.0 if a in parents else 0.0} for a in population
    }
    state = {"generation": 1, "population": [str(a) for a in population]}
    survivors, children = next_generation(state, evaluated, gen, cfg, set(evaluated), rng)
    assert sorted(survivors) == sorted(str(p) for p in parents)
    assert len(children) == 9
    for c in children:
        assert c.blocks == (0,) * 5
        assert all(g in {p.channels[i] for p in parents} for i, g in enumerate(c.channels))


def test_fitness_rules():
    assert fitness_of(config(fitness="loss"), 0.9, 0.4, loss=0.3) == -0.3
    assert fitness_of(config(fitness="acc", score_ratio=0.5), 0.8, 0.4) == 0.8
    assert fitness_of(config(fitness="acc-score", score_ratio=0.5), 0.8, 0.4) == pytest.approx(0.6)


def test_pareto_front_keeps_the_best_of_equal_costs_and_random_search_counts_whole_generations():
    cands = [{"arch": "a", "macs": 1, "accuracy": 0.5}, {"arch": "b", "macs": 1, "accuracy": 0.7}]
    assert [c["arch"] for c in pareto_front(cands, "macs")] == ["b"]
    n = total_generations(config(method="random", candidates=25, population=12))
    assert n == 3 and isinstance(n, int)
