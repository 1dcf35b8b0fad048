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


class CostTable:
    """Per-position × block × channel-gene MACs and params, plus stem and head (SPEC §3).

    Pricing an arch is a sum of 2 + N table entries; it equals :func:`count` on the built subnet.
    Built by counting each part on the ``meta`` device, so no weights are allocated.
    """

    def __init__(self, space: SearchSpace) -> None:
        from ..nn.blocks import ChoiceBlock
        from ..nn.supernet import make_classifier, make_head, make_stem
        self.space = space
        positions = space.positions()
        n = len(positions)
        self.block_macs = np.zeros((n, len(BLOCK_NAMES), len(SCALES)), dtype=np.int64)
        self.block_params = np.zeros_like(self.block_macs)
        last = space.final_size
        with torch.device("meta"):
            stem = count(make_stem(space), space.input_size, space.input_channels)
            head = count(nn.Sequential(make_head(space), make_classifier(space)),
                         (space.stage_channels[-1], last, last))  # fmt: skip
            done: dict[tuple, int] = {}  # positions of one stage after its first are alike
            for p in positions:
                key = (p.in_channels, p.out_channels, p.stride, p.input_size, p.act, p.use_se)
                if key in done:
                    self.block_macs[p.index] = self.block_macs[done[key]]
                    self.block_params[p.index] = self.block_params[done[key]]
                    continue
                done[key] = p.index
                for b in range(len(BLOCK_NAMES)):
                    for g in range(len(SCALES)):
                        mid = mid_channels(p.out_channels, g)
                        if mid < 1:
                            continue
                        block = ChoiceBlock(p.in_channels, p.out_channels, p.stride, b, mid, p.act, p.use_se)
                        c = count(block, (p.in_channels, p.input_size, p.input_size))
                        self.block_macs[p.index, b, g] = c.macs
                        self.block_params[p.index, b, g] = c.params
        self.stem, self.head = stem, head
        self._index = np.arange(n)

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
    """Exact MACs / params of many candidates at once from the lookup table's numpy arrays.

    Candidates are int arrays of shape (B, 2N): N block genes then N channel genes.
    """

    def __init__(self, space: SearchSpace) -> None:
        table = cost_table(space)
        self.n = space.num_blocks
        self.block_macs = table.block_macs
        self.block_params = table.block_params
        self.base_macs = table.stem.macs + table.head.macs
        self.base_params = table.stem.params + table.head.params
        self._pos = np.arange(self.n)

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, c = genes[:, : self.n], genes[:, self.n :]
        macs = self.base_macs + self.block_macs[self._pos, b, c].sum(axis=1)
        params = self.base_params + self.block_params[self._pos, b, c].sum(axis=1)
        return macs, params

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
