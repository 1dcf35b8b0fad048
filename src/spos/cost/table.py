"""The exact cost lookup table (SPEC §3): per-position × block × channel-gene MACs and params;
pricing an arch, one or a batch at a time, is a sum of table entries.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..space import BLOCK_NAMES, SCALES, Arch, SearchSpace, mid_channels
from .counting import Costs, count


def parts(space: SearchSpace, channel_genes=None):
    """Every part a cost model prices, as ``(key, module, input shape)``: ``("stem",)``,
    ``("head",)`` (head + classifier) and ``("block", position, block gene, channel gene)``
    for the first position of each run of alike positions (same channels, stride, size, act, SE;
    :func:`alike_positions` maps the rest). Modules are built on the current default device, so
    ``with torch.device("meta")`` costs no memory. ``channel_genes`` default: all with mid >= 1."""
    from ..nn.blocks import ChoiceBlock
    from ..nn.supernet import make_classifier, make_head, make_stem

    last = space.final_size
    yield ("stem",), make_stem(space), (space.input_channels, space.input_size, space.input_size)
    yield ("head",), nn.Sequential(make_head(space), make_classifier(space)), (space.stage_channels[-1], last, last)
    alike = alike_positions(space)
    for p in space.positions():
        if alike[p.index] != p.index:
            continue
        for b in range(len(BLOCK_NAMES)):
            for g in channel_genes if channel_genes is not None else range(len(SCALES)):
                mid = mid_channels(p.out_channels, g)
                if mid >= 1:
                    block = ChoiceBlock(p.in_channels, p.out_channels, p.stride, b, mid, p.act, p.use_se)
                    yield ("block", p.index, b, g), block, (p.in_channels, p.input_size, p.input_size)


def alike_positions(space: SearchSpace) -> dict[int, int]:
    """Position -> the first position with the same block shapes (one stage's later blocks)."""
    first: dict[tuple, int] = {}
    return {p.index: first.setdefault((p.in_channels, p.out_channels, p.stride, p.input_size, p.act, p.use_se),
                                      p.index) for p in space.positions()}  # fmt: skip


class PartCost:
    """A cost model that is a sum over parts: ``base + sum of blocks[position, block, gene]``.

    The one interface every cost model offers: :meth:`predict` for one arch and
    :meth:`predict_batch` for int gene arrays of shape (B, 2N) (N block genes, then N channel
    genes). NaN entries are parts that were never measured.
    """

    def __init__(self, base: float, blocks: np.ndarray, unit: str) -> None:
        self.base, self.blocks, self.unit = float(base), np.asarray(blocks, dtype=float), unit
        self._pos = np.arange(self.blocks.shape[0])

    def predict(self, arch: Arch) -> float:
        return float(self.predict_batch(np.asarray([[*arch.blocks, *arch.channels]]))[0])

    def predict_batch(self, genes: np.ndarray) -> np.ndarray:
        n = len(self._pos)
        return self.base + self.blocks[self._pos, genes[:, :n], genes[:, n:]].sum(axis=1)

    def reachable(self, channel_genes: Sequence[int]) -> tuple[float, float]:
        """Exact (min, max) over paths using ``channel_genes``."""
        b = self.blocks[:, :, list(channel_genes)].reshape(len(self._pos), -1)
        return self.base + float(b.min(1).sum()), self.base + float(b.max(1).sum())


class CostTable:
    """Per-position × block × channel-gene MACs and params, plus stem and head (SPEC §3).

    Pricing an arch is a sum of 2 + N table entries; it equals :func:`count` on the built subnet.
    Built by counting each part (:func:`parts`) on the ``meta`` device, so no weights are
    allocated. ``macs_model`` and ``params_model`` are its two :class:`PartCost` models.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        n = space.num_blocks
        self.block_macs = np.zeros((n, len(BLOCK_NAMES), len(SCALES)), dtype=np.int64)
        self.block_params = np.zeros_like(self.block_macs)
        with torch.device("meta"):
            counted = {key: count(module, shape) for key, module, shape in parts(space)}
        for p, q in alike_positions(space).items():
            for b in range(len(BLOCK_NAMES)):
                for g in range(len(SCALES)):
                    c = counted.get(("block", q, b, g))
                    if c is not None:
                        self.block_macs[p, b, g], self.block_params[p, b, g] = c.macs, c.params
        self.stem, self.head = counted[("stem",)], counted[("head",)]
        self._index = np.arange(n)
        self.macs_model = PartCost(self.stem.macs + self.head.macs, self.block_macs, "MACs")
        self.params_model = PartCost(self.stem.params + self.head.params, self.block_params, "params")

    def __call__(self, arch: Arch) -> Costs:
        return Costs(self.macs(arch), self.params(arch))

    def macs(self, arch: Arch) -> int:
        return int(self.stem.macs + self.head.macs + self.block_macs[self._index, arch.blocks, arch.channels].sum())

    def params(self, arch: Arch) -> int:
        return int(self.stem.params + self.head.params + self.block_params[self._index, arch.blocks, arch.channels].sum())

    def supernet_params(self) -> int:
        """Parameters of the whole supernet: all four choices at the widest allowed scale."""
        widest = self.space.channel_genes[-1]
        return int(self.stem.params + self.head.params + self.block_params[:, :, widest].sum())


@functools.lru_cache(maxsize=16)
def cost_table(space: SearchSpace) -> CostTable:
    """The (cached) :class:`CostTable` of ``space``."""
    return CostTable(space)


def arch_costs(arch: Arch, space: SearchSpace) -> Costs:
    return cost_table(space)(arch)


class BatchPricer:
    """Exact MACs / params (and, with a latency model, predicted ms) of many candidates at once.

    Candidates are int arrays of shape (B, 2N): N block genes then N channel genes. The MACs and
    params sums are exact integers (int64), as the table's.
    """

    def __init__(self, space: SearchSpace, latency=None) -> None:
        table = cost_table(space)
        self.n = space.num_blocks
        self.block_macs = table.block_macs
        self.block_params = table.block_params
        self.base_macs = table.stem.macs + table.head.macs
        self.base_params = table.stem.params + table.head.params
        self.latency = latency  # any cost model with predict_batch (e.g. a LatencyTable)
        self._pos = np.arange(self.n)

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, c = genes[:, : self.n], genes[:, self.n :]
        macs = self.base_macs + self.block_macs[self._pos, b, c].sum(axis=1)
        params = self.base_params + self.block_params[self._pos, b, c].sum(axis=1)
        return macs, params

    def inside(self, bounds, genes: np.ndarray) -> np.ndarray:
        """Which candidates ``bounds`` (a :class:`~spos.cost.bounds.Bounds`) admits, latency included."""
        latency = self.latency.predict_batch(genes) if self.latency is not None and bounds.needs_latency else None
        return bounds.mask(*self(genes), latency)

    def reachable(self, genes: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """Exact (min, max) MACs and (min, max) params over paths using channel ``genes``."""
        g = list(genes)
        m = self.block_macs[:, :, g].reshape(self.n, -1)
        p = self.block_params[:, :, g].reshape(self.n, -1)
        return ((int(self.base_macs + m.min(1).sum()), int(self.base_macs + m.max(1).sum())),
                (int(self.base_params + p.min(1).sum()), int(self.base_params + p.max(1).sum())))  # fmt: skip


def reachable_costs(
    space: SearchSpace, channel_genes: Sequence[int] | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Exact ((min, max) MACs, (min, max) params) of paths using ``channel_genes`` (default: all
    the space allows). Each bound is reached by some path; not every pair of values is."""
    return BatchPricer(space).reachable(channel_genes if channel_genes is not None else space.channel_genes)
