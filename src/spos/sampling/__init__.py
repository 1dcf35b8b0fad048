"""Which path the supernet trains at each step: the channel warm-up, the samplers, coverage."""

from .samplers import KINDS, PathSampler, build_sampler
from .schedule import allowed_channel_genes

__all__ = ["KINDS", "PathSampler", "allowed_channel_genes", "build_sampler"]
