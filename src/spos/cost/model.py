"""The one cost-model contract: ``predict(arch) -> float`` and ``predict_batch(genes) -> array``.

Every table-based cost model (the exact MACs / params table, the latency table) is a sum over
the same parts of a space: the stem, the head and one entry per (position, block gene, channel
gene). :func:`parts` is the one iterator over those parts, :func:`part_array` spreads what was
priced per part over every position, and :class:`PartCost` is the sum both tables share.

Batches are int arrays of shape (B, 2N): N block genes, then N channel genes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
from torch import nn

from ..errors import SposError
from ..genes import to_arch
from ..space import BLOCK_NAMES, SCALES, Arch, SearchSpace, mid_channels


class ArchCostModel(Protocol):
    """The least a cost model offers: one arch at a time (e.g. a stand-in in a test)."""

    def predict(self, arch: Arch) -> float:
        """The cost of ``arch`` in the model's unit."""


class CostModel(ArchCostModel, Protocol):
    """A cost model that also prices a batch: what samplers and the search's bounds use."""

    def predict_batch(self, genes: np.ndarray) -> np.ndarray:
        """The cost of each row of an int array of shape (B, 2N)."""


def arch_genes(archs: Sequence[Arch]) -> np.ndarray:
    """Archs as the int gene array of shape (B, 2N) every ``predict_batch`` takes."""
    return np.asarray([[*a.blocks, *a.channels] for a in archs], dtype=np.int64)


def parts(space: SearchSpace, channel_genes=None) -> Iterator[tuple[tuple, nn.Module, tuple]]:
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


def part_array(space: SearchSpace, value: Callable[[tuple], float | None], dtype=float, fill=0) -> np.ndarray:
    """``value(key)`` of every block part (keys as :func:`parts` yields them), spread over all
    positions: shape (N, 4 block genes, 10 channel genes); ``fill`` where ``value`` is None."""
    out = np.full((space.num_blocks, len(BLOCK_NAMES), len(SCALES)), fill, dtype=dtype)
    for p, q in alike_positions(space).items():
        for b in range(len(BLOCK_NAMES)):
            for g in range(len(SCALES)):
                v = value(("block", q, b, g))
                if v is not None:
                    out[p, b, g] = v
    return out


class PartCost:
    """A cost model that is a sum over parts: ``base + sum of blocks[position, block, gene]``.

    ``base`` is what every arch pays (stem, head, a fixed overhead). Integer ``blocks`` keep
    integer sums (exact MACs / params); NaN entries of float ``blocks`` are parts that were
    never priced, and pricing an arch that uses one is an error naming it.
    """

    def __init__(self, base: float, blocks: np.ndarray, unit: str, name: str = "cost") -> None:
        self.blocks = np.asarray(blocks)
        self.base = self.blocks.dtype.type(base)
        self.unit, self.name = unit, name
        self._pos = np.arange(self.blocks.shape[0])
        self._may_miss = self.blocks.dtype.kind == "f" and bool(np.isnan(self.blocks).any())

    def predict(self, arch: Arch) -> float:
        return self.predict_batch(arch_genes([arch]))[0].item()

    def predict_batch(self, genes: np.ndarray) -> np.ndarray:
        n = len(self._pos)
        entries = self.blocks[self._pos, genes[:, :n], genes[:, n:]]
        if self._may_miss and np.isnan(entries).any():
            row, i = np.argwhere(np.isnan(entries))[0]
            b, g = genes[row, i], genes[row, n + i]
            raise SposError(f"the {self.name} table has no entry for position {i}, {BLOCK_NAMES[b]} at "
                            f"scale {SCALES[g]}; rebuild it for this search space")  # fmt: skip
        return self.base + entries.sum(axis=1)

    def reachable(self, channel_genes: Sequence[int]) -> tuple[float, float]:
        """Exact (min, max) over paths using ``channel_genes``."""
        b = self.blocks[:, :, list(channel_genes)].reshape(len(self._pos), -1)
        return (self.base + b.min(1).sum()).item(), (self.base + b.max(1).sum()).item()


class PerArch:
    """A batched form of a model that prices one arch at a time (a loop over the rows)."""

    def __init__(self, model: ArchCostModel, space: SearchSpace) -> None:
        self.model, self.space = model, space

    def predict(self, arch: Arch) -> float:
        return float(self.model.predict(arch))

    def predict_batch(self, genes: np.ndarray) -> np.ndarray:
        return np.asarray([self.predict(to_arch(row, self.space)) for row in genes], dtype=float)


def batched(model: ArchCostModel, space: SearchSpace) -> CostModel:
    """``model`` itself when it has ``predict_batch``, else its :class:`PerArch` form."""
    return model if hasattr(model, "predict_batch") else PerArch(model, space)
