"""Bounds on their own: parsing and validation, the config round trip, explicit scores and
latencies, the excess a sampler climbs down, and the text users read. The samplers' and the
search's use of Bounds is tested beside them (tests/cost/test_model.py, tests/sampling/)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from spos.cost.bounds import Bounds, fmt_amount
from spos.errors import SposError


def test_fmt_amount_writes_open_bounds_as_any_and_scales_by_the_unit():
    assert fmt_amount(None) == "any"
    assert fmt_amount(1.2e6) == "1.2M" and fmt_amount(330e6) == "330M"
    assert fmt_amount(1500, 1e3, "k") == "1.5k"


def test_bounds_turn_numbers_and_numeric_strings_into_floats():
    b = Bounds(min_macs="9e5", max_macs=1_200_000, max_latency_ms=3)
    assert b.min_macs == 9e5 and type(b.min_macs) is float
    assert b.max_macs == 1.2e6 and type(b.max_macs) is float
    assert type(b.max_latency_ms) is float and b.min_params is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_macs": "lots"}, "bound max_macs must be a number, got 'lots'"),
        ({"max_params": [1]}, "bound max_params must be a number, got [1]"),
        ({"max_params": -1}, "bound max_params is negative (-1); costs are never below 0"),
        ({"min_macs": 2e6, "max_macs": 1e6}, "the MACs window is empty: minimum 2M > maximum 1M; swap the bounds"),
        ({"min_params": 0.5e6, "max_params": 0.25e6},
         "the params window is empty: minimum 0.5M > maximum 0.25M; swap the bounds"),
    ],
)
def test_bad_bounds_are_one_line_errors_naming_the_bound_and_the_fix(kwargs, message):
    with pytest.raises(SposError) as err:
        Bounds(**kwargs)
    assert str(err.value) == message


def test_a_window_of_one_value_is_allowed_and_holds_exactly_that_value():
    b = Bounds(min_macs=1e6, max_macs=1e6, min_params=5e5, max_params=5e5)
    assert b.mask(np.array([1e6, 1e6 + 1, 1e6]), np.array([5e5, 5e5, 5e5 - 1])).tolist() == [True, False, False]


def test_bounds_round_trip_through_a_config_mapping_and_refuse_unknown_keys():
    b = Bounds(min_macs=9e5, max_macs=1.2e6, max_score=0.5)
    d = b.to_dict()
    assert d == {"min_macs": 9e5, "max_macs": 1.2e6, "min_params": None, "max_params": None,
                 "max_score": 0.5, "max_latency_ms": None}  # fmt: skip
    assert Bounds.from_dict(d) == b
    assert Bounds.from_dict(None) == Bounds() and Bounds.from_dict({}).is_open
    assert Bounds.from_dict({"max_macs": "1e6"}) == Bounds(max_macs=1e6)
    with pytest.raises(SposError) as err:
        Bounds.from_dict({"max_flops": 1e6}, where="search budget")
    assert str(err.value) == (
        "unknown search budget keys ['max_flops']; allowed: ['max_latency_ms', 'max_macs', "
        "'max_params', 'max_score', 'min_macs', 'min_params']"
    )
    with pytest.raises(SposError, match=r"^unknown window keys \['x'\]"):
        Bounds.from_dict({"x": 1})


def test_an_explicit_score_is_used_instead_of_the_one_computed_from_macs_and_params():
    b = Bounds(max_score=0.5)
    macs, params = np.array([1.0, 1.0, 1e9]), np.array([1.0, 1.0, 1e9])  # computed scores: ~0, ~0, huge
    score = np.array([0.4, 0.6, 0.5])
    assert b.mask(macs, params, score=score).tolist() == [True, False, True]
    assert b.violations(macs, params, score=score) == [None, "max_score", None]
    assert b.mask(macs, params).tolist() == [True, True, False]  # without it: the Σ score of the costs


def test_one_arch_and_contains_check_the_latency_they_are_given():
    b = Bounds(max_macs=2e6, max_latency_ms=5)
    arch = SimpleNamespace(macs=1e6, params=1e5)
    assert b.violation(1e6, 1e5, 6.0) == "max_latency_ms" and b.violation(1e6, 1e5, 5.0) is None
    assert b.contains(arch, latency_ms=4.0) and not b.contains(arch, latency_ms=6.0)
    assert not b.contains(SimpleNamespace(macs=3e6, params=1e5), latency_ms=1.0)
    with pytest.raises(SposError) as err:
        b.contains(arch)
    assert str(err.value) == "a latency bound needs a latency table; pass --latency-table FILE"
    assert Bounds(max_macs=2e6).contains(arch)  # no latency bound: no latency needed


def test_excess_is_the_distance_outside_each_bound_in_units_of_its_scale():
    b = Bounds(min_macs=10, max_macs=20, max_params=100, max_latency_ms=2)
    costs = {"macs": np.array([4, 15, 28]), "params": np.array([50, 150, 300]), "latency_ms": np.array([1.0, 3.0, 2.0])}
    v = b.excess(costs, {"macs": 2, "params": 50})
    assert v.dtype == np.float64
    # below min MACs by 6 (3 scales); over max params by 50 (1); over max MACs by 8 (4) + params by 200 (4)
    assert v.tolist() == [3.0, 1.0, 8.0]
    assert b.excess(costs, {"macs": 2, "params": 50, "latency_ms": 0.5}).tolist() == [3.0, 3.0, 8.0]
    assert b.excess(costs, {}).tolist() == [0.0, 0.0, 0.0]  # quantities without a scale are left out
    assert Bounds(max_macs=20).excess({"macs": np.array([21])}, {"macs": 4}).tolist() == [0.25]


def test_bounds_print_as_users_read_them():
    assert str(Bounds(0.9e6, 1.2e6)) == "MACs 0.9M..1.2M, params any..any"
    assert str(Bounds(min_params=2.8e6, max_params=5e6)) == "MACs any..any, params 2.8M..5M"
    assert str(Bounds(max_macs=330e6, max_score=0.5, max_latency_ms=3)) == (
        "MACs any..330M, params any..any, Σ score ≤ 0.5, latency ≤ 3 ms"
    )
