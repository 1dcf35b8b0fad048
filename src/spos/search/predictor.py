"""Train once, search many: an accuracy predictor fitted on the store's supernet scores, and the
answer to a new budget in seconds (once-for-all's recipe, on SPOS's supernet).

:class:`AccuracyPredictor` is a ridge regression (scikit-learn) on the one-hot block and channel
genes of every position plus the arch's exact MACs and params, fitted to the supernet scores a
store holds for one supernet file and one set of scoring settings. :func:`answer_budget` uses
it as a pre-screen: it prices a large pool of in-budget candidates (uniform draws plus
mutations of the best stored archs inside the budget), evaluates only the ``top_k`` the
predictor likes best on the supernet (storing them), and returns the best supernet score among
those and the stored archs inside the budget. Costs go through the one
:class:`~spos.cost.table.BatchPricer`, so no answer ever breaks its budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..cost.bounds import Bounds
from ..cost.model import arch_genes
from ..cost.table import BatchPricer
from ..errors import SposError
from ..genes import mutate_genes, to_arch, uniform_genes
from ..space import BLOCK_NAMES, Arch, SearchSpace


class AccuracyPredictor:
    """Supernet score from genes: ``fit(genes, scores)`` then ``predict(genes)`` (arrays of
    shape (B, 2N), N block genes then N channel genes)."""

    def __init__(self, space: SearchSpace, alpha: float = 1.0) -> None:
        from sklearn.linear_model import Ridge

        self.space, self.pricer = space, BatchPricer(space)
        self.model = Ridge(alpha=alpha)
        self.fitted_on = 0

    def features(self, genes: np.ndarray) -> np.ndarray:
        genes = np.asarray(genes, dtype=np.int64)
        n = self.space.num_blocks
        blocks = np.eye(len(BLOCK_NAMES))[genes[:, :n]].reshape(len(genes), -1)
        channels = np.eye(10)[genes[:, n:]].reshape(len(genes), -1)
        macs, params = self.pricer(genes)
        return np.concatenate((blocks, channels, macs[:, None] / 1e6, params[:, None] / 1e6), axis=1)

    def fit(self, genes: np.ndarray, scores: Sequence[float]) -> AccuracyPredictor:
        if len(genes) < 2:
            raise SposError(f"the predictor needs scored candidates to learn from; the store has {len(genes)}")
        self.model.fit(self.features(genes), np.asarray(scores, dtype=float))
        self.fitted_on = len(genes)
        return self

    def predict(self, genes: np.ndarray) -> np.ndarray:
        return self.model.predict(self.features(genes))


def heldout_tau(space: SearchSpace, genes: np.ndarray, scores: np.ndarray, fraction: float = 0.2, seed: int = 0) -> float:
    """Kendall τ between predicted and stored scores on a held-out ``fraction`` of the store
    (the predictor fitted on the rest): how far to trust its pre-screen."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(genes))
    cut = max(1, int(round(len(genes) * fraction)))
    test, train = order[:cut], order[cut:]
    pred = AccuracyPredictor(space).fit(genes[train], scores[train]).predict(genes[test])
    return float(kendalltau(pred, scores[test]).statistic)


@dataclass
class BudgetAnswer:
    """What :func:`answer_budget` found for one budget."""

    bounds: Bounds
    arch: Arch
    score: float  # supernet score (held-out top-1 of the search's fitness) of ``arch``
    evaluated: int  # supernet evaluations this answer made
    screened: int  # in-budget candidates the predictor ranked
    seconds: float


def candidate_pool(space: SearchSpace, pricer: BatchPricer, bounds: Bounds, seeds: np.ndarray,
                   rng: np.random.Generator, size: int = 20000) -> np.ndarray:  # fmt: skip
    """Distinct in-budget gene rows: ``size`` uniform draws and as many mutations of ``seeds``
    (the best stored archs), filtered by the budget."""
    n, allowed = space.num_blocks, np.asarray(space.channel_genes)
    pool = [uniform_genes(rng, n, allowed, size)]
    if len(seeds):
        parents = seeds[rng.integers(0, len(seeds), size)]
        pool.append(mutate_genes(rng, parents, n, allowed, 2.0 / (2 * n)))
    genes = np.unique(np.concatenate(pool), axis=0)
    return genes[pricer.inside(bounds, genes)]


def answer_budget(
    bounds: Bounds,
    space: SearchSpace,
    known: dict[str, float],
    evaluate,
    latency=None,
    top_k: int = 10,
    pool: int = 20000,
    seed: int = 0,
) -> BudgetAnswer:
    """The best arch inside ``bounds``: the ``top_k`` predicted best of an in-budget pool are
    evaluated (``evaluate(list[Arch]) -> {arch: score}``), the stored ones (``known``: arch
    string -> score) compete too; ``top_k=0``: the best stored one. Raises :class:`SposError`
    when nothing lies inside."""
    t0 = time.perf_counter()
    pricer = BatchPricer(space, latency)
    stored = arch_genes([Arch.parse(a, space.stage_depths) for a in known])
    scores = np.asarray(list(known.values()), dtype=float)
    inside = pricer.inside(bounds, stored) if len(stored) else np.zeros(0, dtype=bool)
    fresh: list[Arch] = []
    cands = np.zeros((0, 2 * space.num_blocks), dtype=np.int64)
    if top_k > 0:  # 0: the best stored arch inside the budget, no predictor, no evaluation
        predictor = AccuracyPredictor(space).fit(stored, scores)
        best_known = stored[inside][np.argsort(-scores[inside])[:50]]
        cands = candidate_pool(space, pricer, bounds, best_known, np.random.default_rng(seed), pool)
        order = np.argsort(-predictor.predict(cands), kind="stable") if len(cands) else []
        fresh = [a for a in (to_arch(cands[i], space) for i in order) if str(a) not in known][:top_k]
    if not fresh and not inside.any():
        raise SposError(f"no arch of this space lies inside the budget ({bounds}) among {len(known)} stored and "
                        f"{len(cands)} drawn ones; loosen it")  # fmt: skip
    results = dict(evaluate(fresh)) if fresh else {}
    results.update({a: float(s) for (a, s), ok in zip(known.items(), inside) if ok})
    best = max(results, key=lambda a: (results[a], a))
    return BudgetAnswer(bounds, Arch.parse(best, space.stage_depths), results[best], len(fresh), len(cands),
                        time.perf_counter() - t0)  # fmt: skip
