"""Fixtures of the search tests: a seeded tiny supernet, random scoring data, an evaluation
counter and MACs caps inside the tiny space's range."""

from __future__ import annotations

import pytest
import torch

from spos.cost.table import cost_table
from spos.genes import largest, smallest
from spos.nn.supernet import SuperNet
from spos.search.evaluator import Evaluator, SearchData


@pytest.fixture
def supernet(tiny_space):
    torch.manual_seed(0)
    return SuperNet(tiny_space)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return SearchData(torch.randn(40, 3, 32, 32, generator=g), torch.randn(30, 3, 32, 32, generator=g),
                      torch.randint(0, 10, (30,), generator=g))  # fmt: skip


@pytest.fixture
def counted(monkeypatch):
    """Every real supernet evaluation, in order (the Evaluator still runs)."""
    calls: list[str] = []
    score = Evaluator.score
    monkeypatch.setattr(Evaluator, "score", lambda self, arch: calls.append(str(arch)) or score(self, arch))
    return calls


@pytest.fixture
def macs_cap(tiny_space):
    """``macs_cap(f)``: the MACs a fraction ``f`` of the way from the smallest arch to the largest."""
    table = cost_table(tiny_space)
    lo, hi = table(smallest(tiny_space)).macs, table(largest(tiny_space)).macs
    return lambda frac: lo + frac * (hi - lo)
