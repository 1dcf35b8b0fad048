"""Warm start of an evolutionary search from the candidate store: train once, search many.

When the store already holds enough scores of a supernet (``warm_min``, with the search's
scoring settings), a new search under another budget need not start from nothing:

- its first population is the best stored archs inside its bounds (free: their scores are
  stored) plus a ``warm_random`` share of random ones for diversity;
- each later generation draws ``screen_draws`` offspring per free slot, and the accuracy
  predictor (:class:`~spos.search.predictor.AccuracyPredictor`, refitted on the store's scores
  and every score this search has made) sends only the predicted best ``screen_keep`` share of
  the slots to the supernet. Offspring the store knows are taken at no cost.

Every offspring is drawn by the search's own
:class:`~spos.search.evolution.CandidateGenerator`, so none breaks the bounds. The store is
read once, as a snapshot of the scores written before the search started (its time is kept in
the search state), so a resumed search fits the same predictor as an uninterrupted one.

A search whose first generation the store already holds whole (the same search run again)
replays the plain evolution instead, and evaluates nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..cost.model import arch_genes
from ..cost.table import cost_table
from ..space import Arch
from .config import SearchConfig
from .predictor import AccuracyPredictor


class WarmStart:
    """The store's snapshot of one supernet as fitness per arch, its best in-bounds archs and
    the predictor's pre-screen. ``rows``: ``(arch, accuracy, loss)`` of each stored score
    written up to ``until`` (a time.time() stamp, kept in the search state for resumption)."""

    def __init__(self, space, config: SearchConfig, rows: Sequence[tuple[str, float, float]], until: float) -> None:
        from .evolution import fitness_of

        self.space, self.config, self.until = space, config, until
        table = cost_table(space)
        self.stored = {a: fitness_of(config, acc, table(Arch.parse(a, space.stage_depths)).sigma_score, loss)
                       for a, acc, loss in rows}  # fmt: skip

    def seeds(self, sampler, n: int) -> list[Arch]:
        """The ``n`` best stored archs this search may visit: inside its bounds and with its
        fixed genes (``sampler``: the search's CandidateGenerator)."""
        if n < 1 or not self.stored:
            return []
        archs = [Arch.parse(a, self.space.stage_depths) for a in self.stored]
        ok = sampler.pricer.inside(sampler.bounds, arch_genes(archs))
        fits = [a for a, inside in zip(archs, ok) if inside
                and (sampler.fixed_blocks or a.blocks) == a.blocks
                and (sampler.fixed_channels or a.channels) == a.channels]  # fmt: skip
        fits.sort(key=lambda a: (-self.stored[str(a)], str(a)))
        return fits[:n]

    def first_population(self, sampler, drawn: list[Arch]) -> list[Arch]:
        """The warm first generation: the best stored archs in bounds, then random archs from
        ``drawn`` (the plain search's first draw) for the ``warm_random`` share and any slots
        the store cannot fill."""
        size = len(drawn)
        randoms = max(1, round(self.config.warm_random * size)) if self.config.warm_random > 0 else 0
        best = self.seeds(sampler, size - randoms)
        picked = {str(a) for a in best}
        return best + [a for a in drawn if str(a) not in picked][: size - len(best)]

    def screen(self, cands: list[Arch], candidates: list[dict], slots: int) -> tuple[list[Arch], list[Arch]]:
        """``(kept, screened out)``: the predicted best ``ceil(screen_keep * slots)`` of
        ``cands`` and the rest. The predictor is fitted on the snapshot plus ``candidates``
        (this search's scored candidates, dicts with arch and fitness)."""
        keep = math.ceil(self.config.screen_keep * slots)
        if len(cands) <= keep:
            return list(cands), []
        train = {**self.stored, **{c["arch"]: c["fitness"] for c in candidates}}
        genes = arch_genes([Arch.parse(a, self.space.stage_depths) for a in train])
        predictor = AccuracyPredictor(self.space).fit(genes, np.fromiter(train.values(), float, len(train)))
        order = np.argsort(-predictor.predict(arch_genes(cands)), kind="stable")
        return [cands[i] for i in order[:keep]], [cands[i] for i in order[keep:]]
