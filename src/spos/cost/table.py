"""The exact cost lookup table (SPEC §3): per-position × block × channel-gene MACs and params,
as two cost models (:class:`~spos.cost.model.PartCost`), and :class:`BatchPricer`, which prices
a batch of candidates with every cost model a :class:`~spos.cost.bounds.Bounds` limits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from ..space import Arch, SearchSpace
from .counting import Costs, count
from .model import ArchCostModel, PartCost, alike_positions, arch_genes, batched, part_array, parts

__all__ = ["BatchPricer", "CostTable", "alike_positions", "arch_costs", "cost_table", "parts",
           "reachable_costs"]  # fmt: skip


class CostTable:
    """Per-position × block × channel-gene MACs and params, plus stem and head (SPEC §3).

    Pricing an arch is a sum of 2 + N table entries; it equals :func:`count` on the built subnet.
    Built by counting each part (:func:`~spos.cost.model.parts`) on the ``meta`` device, so no
    weights are allocated. ``macs_model`` and ``params_model`` are its two cost models (exact
    int64 sums); ``table(arch)`` prices both at once.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        with torch.device("meta"):
            counted = {key: count(module, shape) for key, module, shape in parts(space)}
        self.stem, self.head = counted[("stem",)], counted[("head",)]

        def entries(quantity: str) -> np.ndarray:  # 0 where a part was not built (mid < 1)
            return part_array(space, lambda key: getattr(counted[key], quantity) if key in counted else None,
                              np.int64)  # fmt: skip

        self.macs_model = PartCost(self.stem.macs + self.head.macs, entries("macs"), "MACs", "MACs")
        self.params_model = PartCost(self.stem.params + self.head.params, entries("params"), "params", "params")

    def __call__(self, arch: Arch) -> Costs:
        return Costs(self.macs(arch), self.params(arch))

    def macs(self, arch: Arch) -> int:
        return self.macs_model.predict(arch)

    def params(self, arch: Arch) -> int:
        return self.params_model.predict(arch)

    def supernet_params(self) -> int:
        """Parameters of the whole supernet: all four choices at the widest allowed scale."""
        widest = self.space.channel_genes[-1]
        return int(self.params_model.base + self.params_model.blocks[:, :, widest].sum())


@functools.lru_cache(maxsize=16)
def cost_table(space: SearchSpace) -> CostTable:
    """The (cached) :class:`CostTable` of ``space``."""
    return CostTable(space)


def arch_costs(arch: Arch, space: SearchSpace) -> Costs:
    return cost_table(space)(arch)


class BatchPricer:
    """Every cost a :class:`~spos.cost.bounds.Bounds` limits, for a batch of candidates.

    The one bounds check of the samplers and the search: the exact table's ``macs_model`` and
    ``params_model`` and, when given, a ``latency`` model (ms; a
    :class:`~spos.cost.latency.LatencyTable`, or anything with ``predict``: see
    :func:`~spos.cost.model.batched`), asked only when the bounds limit latency. Candidates are
    int arrays of shape (B, 2N): N block genes then N channel genes.
    """

    def __init__(self, space: SearchSpace, latency: ArchCostModel | None = None) -> None:
        table = cost_table(space)
        self.space, self.n = space, space.num_blocks
        self.macs_model, self.params_model = table.macs_model, table.params_model
        self.latency = None if latency is None else batched(latency, space)

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact MACs and params (int64) of each candidate."""
        return self.macs_model.predict_batch(genes), self.params_model.predict_batch(genes)

    def costs(self, bounds, genes: np.ndarray) -> dict[str, np.ndarray | None]:
        """``macs``, ``params`` and, when ``bounds`` limit it, ``latency_ms`` of each candidate:
        the keyword arguments of :meth:`Bounds.mask` and :meth:`Bounds.violations`."""
        macs, params = self(genes)
        ask = self.latency is not None and bounds.needs_latency
        return {"macs": macs, "params": params, "latency_ms": self.latency.predict_batch(genes) if ask else None}

    def inside(self, bounds, genes: np.ndarray) -> np.ndarray:
        """Which candidates ``bounds`` admit (bool array)."""
        return bounds.mask(**self.costs(bounds, genes))

    def violation(self, bounds, arch: Arch) -> str | None:
        """The first bound ``arch`` breaks (a :class:`Bounds` field name), or None."""
        return bounds.violations(**self.costs(bounds, arch_genes([arch])))[0]

    def reachable(self, genes: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """Exact (min, max) MACs and (min, max) params over paths using channel ``genes``."""
        return self.macs_model.reachable(genes), self.params_model.reachable(genes)


def reachable_costs(
    space: SearchSpace, channel_genes: Sequence[int] | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Exact ((min, max) MACs, (min, max) params) of paths using ``channel_genes`` (default: all
    the space allows). Each bound is reached by some path; not every pair of values is."""
    return BatchPricer(space).reachable(channel_genes if channel_genes is not None else space.channel_genes)
