"""FairNAS strict fairness (Chu et al., 2021) for the SPOS supernet: several paths per step.

Each training step trains m = 4 paths (one per choice block) and makes one optimizer step on
their summed gradients. At every block position the 4 paths hold a random permutation of the 4
choice blocks, so every choice block is trained exactly once per step: no block type gets more
updates than another, whatever the window. A window-constrained sampler cannot promise that
(the strolling sampler of the built-in preset trains SXB-3 at 45-69% of the steps at some
positions, because SXB-3 paths fit its MACs window more often; see docs/fidelity.md).

Channel genes are not permuted (there are 10 of them and 4 paths): each path draws its channel
genes uniformly from those the channel warm-up allows, and when a window is given, the first of
``CHANNEL_DRAWS`` draws that puts the path inside the window is kept (the block genes stay as the
permutation says). If none does, the path keeps its last draw and ``window_misses`` counts it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..genes import to_arch
from ..space import BLOCK_NAMES, Arch
from .samplers import PathSampler


class FairSampler(PathSampler):
    """Strict fairness: :meth:`sample_step` returns 4 paths whose block genes are a permutation
    of the 4 choice blocks at every position (see the module docstring)."""

    kind = "fair"
    CHANNEL_DRAWS = 64

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.window_misses = 0

    @property
    def paths_per_step(self) -> int:
        return len(BLOCK_NAMES)

    def sample_step(self, epoch: int = 0) -> list[Arch]:
        allowed = np.asarray(self.allowed(epoch), dtype=np.int64)
        n, m = self.space.num_blocks, len(BLOCK_NAMES)
        blocks = np.stack([self._rng.permutation(m) for _ in range(n)], axis=1)  # m x n
        paths = []
        for i in range(m):
            channels = allowed[self._rng.integers(0, len(allowed), (self.CHANNEL_DRAWS, n))]
            genes = np.concatenate((np.broadcast_to(blocks[i], (self.CHANNEL_DRAWS, n)), channels), axis=1)
            pick = len(genes) - 1
            if self.window is not None and not self.window.is_open:
                hits = np.flatnonzero(self._pricer.inside(self.window, genes))
                if len(hits):
                    pick = int(hits[0])
                else:
                    self.window_misses += 1
            paths.append(to_arch(genes[pick], self.space))
        self.count += m
        return paths

    def sample(self, epoch: int = 0) -> Arch:
        """One path (the first of a fair group); training asks :meth:`sample_step`."""
        return self.sample_step(epoch)[0]

    def _extra_state(self) -> dict:
        return {"window_misses": self.window_misses}

    def _load_extra_state(self, state: Mapping) -> None:
        self.window_misses = int(state.get("window_misses", 0))
