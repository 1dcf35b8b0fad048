"""Genetic operators on architectures (SPEC §4/§5): pure functions of an explicit RNG.

``sample``, ``mutate`` and ``crossover`` work on one :class:`~spos.space.Arch` with a
``random.Random``; the batched twins (``uniform_genes``, ``mutate_genes``) work on int arrays
of shape (B, 2N), N block genes then N channel genes, with a numpy ``Generator``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np

from .errors import SposError
from .space import BLOCK_NAMES, Arch, SearchSpace


def sample(
    space: SearchSpace,
    rng: random.Random,
    channel_genes: Iterable[int] | None = None,
) -> Arch:
    """A uniformly random arch; ``channel_genes`` narrows the channel choices (warm-up)."""
    allowed = sorted(channel_genes) if channel_genes is not None else list(space.channel_genes)
    n = space.num_blocks
    blocks = tuple(rng.randrange(len(BLOCK_NAMES)) for _ in range(n))
    channels = tuple(rng.choice(allowed) for _ in range(n))
    return Arch(blocks, channels, space.stage_depths)


def mutate(
    arch: Arch,
    space: SearchSpace,
    rng: random.Random,
    prob: float = 0.1,
    genes: str = "joint",
) -> Arch:
    """Resample each gene with probability ``prob``; ``genes`` is block, channel or joint."""
    _check_genes(genes)
    blocks = list(arch.blocks)
    channels = list(arch.channels)
    for i in range(len(blocks)):
        if genes in ("block", "joint") and rng.random() < prob:
            blocks[i] = rng.randrange(len(BLOCK_NAMES))
        if genes in ("channel", "joint") and rng.random() < prob:
            channels[i] = rng.choice(space.channel_genes)
    return Arch(tuple(blocks), tuple(channels), arch.stage_depths)


def crossover(a: Arch, b: Arch, rng: random.Random, genes: str = "joint") -> Arch:
    """Per-gene uniform crossover of two parents; only the searched half is mixed."""
    _check_genes(genes)
    blocks = list(a.blocks)
    channels = list(a.channels)
    for i in range(len(blocks)):
        if genes in ("block", "joint") and rng.random() < 0.5:
            blocks[i] = b.blocks[i]
        if genes in ("channel", "joint") and rng.random() < 0.5:
            channels[i] = b.channels[i]
    return Arch(tuple(blocks), tuple(channels), a.stage_depths)


def _check_genes(genes: str) -> None:
    if genes not in ("block", "channel", "joint"):
        raise SposError(f"genes must be block, channel or joint, got {genes!r}")


def largest(space: SearchSpace) -> Arch:
    """All SXB-3 at the widest allowed scale: the most MACs of any path."""
    n = space.num_blocks
    return Arch((3,) * n, (space.channel_genes[-1],) * n, space.stage_depths)


def smallest(space: SearchSpace) -> Arch:
    """All SNB-3 at the narrowest allowed scale."""
    n = space.num_blocks
    return Arch((0,) * n, (space.channel_genes[0],) * n, space.stage_depths)


def uniform_genes(rng: np.random.Generator, n: int, allowed: np.ndarray, size: int) -> np.ndarray:
    blocks = rng.integers(0, len(BLOCK_NAMES), (size, n))
    channels = allowed[rng.integers(0, len(allowed), (size, n))]
    return np.concatenate((blocks, channels), axis=1)


def mutate_genes(rng: np.random.Generator, genes: np.ndarray, n: int, allowed: np.ndarray, prob: float) -> np.ndarray:
    fresh = uniform_genes(rng, n, allowed, len(genes))
    return np.where(rng.random(genes.shape) < prob, fresh, genes)


def to_arch(genes: np.ndarray, space: SearchSpace) -> Arch:
    n = space.num_blocks
    return Arch(tuple(int(g) for g in genes[:n]), tuple(int(g) for g in genes[n:]), space.stage_depths)
