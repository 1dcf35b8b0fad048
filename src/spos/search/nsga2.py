"""Multi-objective search: NSGA-II from pymoo over held-out accuracy and every cost at once.

``spos search --method nsga2`` (or :func:`nsga2_search`) maximises the search's fitness (held-out
top-1 by default) while it minimises MACs, params and the latency on every ``--latency-table``,
and returns the Pareto front over all of them. pymoo's NSGA-II (non-dominated sorting and
crowding distance) chooses the parents; spos supplies the genes and the operators of SPEC §5:
per-gene uniform crossover and per-gene mutation with ``mutation_prob``. The first population
is drawn by the search's own :class:`~spos.search.evolution.CandidateGenerator` (inside the
bounds). The bounds are NSGA-II constraints: a candidate that breaks one is priced with the
exact cost table and never evaluated.

Every score goes through the search's view of the candidate store (the same one the evolution
uses), so no arch is evaluated twice, within this search or across searches: a rerun of the
same command (or ``--resume`` after a kill) replays from the store and evaluates nothing.
:func:`pareto` is the front of any pool of scores; the family search (``--budget``) reads each
budget's winner from the pool NSGA-II leaves in the store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..cost.model import arch_genes, batched
from ..cost.table import cost_table
from ..errors import SposError
from ..genes import to_arch
from ..runtime import rank_world
from ..space import BLOCK_NAMES, Arch
from .config import LatencyModel, SearchConfig
from .evaluator import Evaluator
from .state import SearchResult, write_candidates, write_outputs

#: Objectives of a front besides the fitness, each minimised.
COSTS = ("macs", "params")


def pareto(space, known: dict[str, float], tables: dict) -> list[dict]:
    """The candidates no other beats on score (``known``: arch -> score, higher is better) and
    every cost at once (MACs, params, latency per table in ``tables``: name -> latency model),
    best score first."""
    from pymoo.util.nds.non_dominated_sorting import find_non_dominated

    if not known:
        return []
    archs = [Arch.parse(a, space.stage_depths) for a in known]
    genes = arch_genes(archs)
    table = cost_table(space)
    costs = [table.macs_model.predict_batch(genes), table.params_model.predict_batch(genes)]
    costs += [np.asarray(batched(t, space).predict_batch(genes), dtype=float) for t in tables.values()]
    score = np.asarray(list(known.values()), dtype=float)
    front = sorted(find_non_dominated(np.stack([-score, *costs], axis=1).astype(float)), key=lambda i: -score[i])
    return [{"arch": str(archs[i]), "score": float(score[i]), "macs": int(costs[0][i]), "params": int(costs[1][i]),
             "latency_ms": {name: float(costs[2 + j][i]) for j, name in enumerate(tables)}} for i in front]  # fmt: skip


class _GeneMutation:
    """SPEC §5's mutation as a pymoo operator: each gene resampled uniformly with ``prob``."""

    def __new__(cls, prob: float):
        from pymoo.core.mutation import Mutation

        class GeneMutation(Mutation):
            def _do(self, problem, X, random_state=None, **kwargs):
                fresh = random_state.integers(problem.xl, problem.xu + 1, size=X.shape)
                return np.where(random_state.random(X.shape) < prob, fresh, X)

        return GeneMutation()


class _Genome:
    """Arch <-> pymoo's integer vector: N block genes, then N indices into the allowed channel
    genes; genes the search holds fixed have equal lower and upper bounds."""

    def __init__(self, sampler) -> None:
        space = sampler.space
        self.space, self.n = space, space.num_blocks
        self.allowed = np.asarray(space.channel_genes)
        self.xl = np.zeros(2 * self.n, dtype=int)
        self.xu = np.array([len(BLOCK_NAMES) - 1] * self.n + [len(self.allowed) - 1] * self.n)
        fixed = (sampler.fixed_blocks, 0), (sampler.fixed_channels, self.n)
        for genes, at in fixed:
            if genes is not None:
                x = self.encode([Arch(genes, genes, space.stage_depths)])[0]
                self.xl[at : at + self.n] = self.xu[at : at + self.n] = x[at : at + self.n]

    def encode(self, archs: list[Arch]) -> np.ndarray:
        genes = arch_genes(archs)
        index = np.searchsorted(self.allowed, genes[:, self.n :])
        return np.concatenate((genes[:, : self.n], index), axis=1)

    def decode(self, x: np.ndarray) -> list[Arch]:
        x = np.asarray(np.rint(x), dtype=int)
        genes = np.concatenate((x[:, : self.n], self.allowed[x[:, self.n :]]), axis=1)
        return [to_arch(g, self.space) for g in genes]


def _constraints(bounds, macs, params, score, latency) -> np.ndarray:
    """One column per active bound, <= 0 when it holds (relative amounts: comparable scales)."""
    cols = []
    for cap, value in ((bounds.max_macs, macs), (bounds.max_params, params), (bounds.max_score, score),
                       (bounds.max_latency_ms, latency)):  # fmt: skip
        if cap is not None:
            cols.append(value / max(cap, 1e-12) - 1.0)
    if bounds.min_macs is not None:
        cols.append(1.0 - macs / max(bounds.min_macs, 1e-12))
    return np.stack(cols, axis=1) if cols else np.zeros((len(macs), 0))


def nsga2_search(
    supernet,
    data,
    config: SearchConfig,
    out_dir=None,
    *,
    latencies: dict[str, LatencyModel] | None = None,
    cache=None,
    log: Callable[[str], None] | None = print,
) -> SearchResult:
    """NSGA-II over (fitness, MACs, params, latency per model in ``latencies``) for
    ``config.generations`` generations of ``config.population`` (see the module docstring).
    ``latencies``: name -> latency model; the first one prices ``config.max_latency_ms``.
    ``cache``: the search's store view (``spos.search.evolution._Cache``) or None."""
    from .evolution import CandidateGenerator

    try:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.operators.crossover.ux import UniformCrossover
    except ImportError:
        raise SposError("--method nsga2 needs pymoo: pip install 'pymoo>=0.6.2,<0.7'") from None
    rank, _ = rank_world()
    say = log if (log is not None and rank == 0) else (lambda msg: None)
    latencies = dict(latencies or {})
    sampler = CandidateGenerator(supernet.space, config, next(iter(latencies.values()), None))
    genome = _Genome(sampler)
    first = sampler.fill(config.population, set(), random.Random(config.seed))
    algorithm = NSGA2(pop_size=config.population, sampling=genome.encode(first), crossover=UniformCrossover(),
                      mutation=_GeneMutation(config.mutation_prob), eliminate_duplicates=True)  # fmt: skip
    run = _Run(supernet, data, config, sampler, genome, latencies, cache)
    algorithm.setup(run.problem(), termination=("n_gen", config.generations), seed=config.seed)
    out = Path(out_dir) if out_dir is not None else None
    while algorithm.has_next():
        t0 = time.perf_counter()
        pop = algorithm.ask()
        F, G, stats = run.generation(pop.get("X"))
        run.tell(algorithm, pop, F, G)
        stats["seconds"] = time.perf_counter() - t0
        run.history.append(stats)
        if out is not None and rank == 0:
            write_candidates(out / "candidates.csv", run.candidates)
        say(f"generation {stats['generation'] + 1}/{config.generations}: {stats['evaluated'] - stats['reused']} "
            f"evaluated, {stats['reused']} from the store, {stats['infeasible']} outside the bounds (not evaluated), "
            f"in {stats['seconds']:.1f} s; best so far {100 * stats['best_so_far']:.2f}")  # fmt: skip
    return run.result(out, rank)


class _Run:
    """One NSGA-II search's scoring: decode, price, look up or evaluate, record."""

    def __init__(self, supernet, data, config, sampler, genome, latencies, cache) -> None:
        self.config, self.sampler, self.genome, self.latencies, self.cache = config, sampler, genome, latencies, cache
        self.evaluator = Evaluator(supernet.eval(), data, config.batch_size)
        self.evaluated: dict[str, dict] = {}
        self.candidates: list[dict] = []
        self.history: list[dict] = []
        self.table = cost_table(supernet.space)

    def problem(self):
        from pymoo.core.problem import Problem

        n_constr = _constraints(self.config.bounds, *np.zeros((4, 1))).shape[1]
        return Problem(n_var=len(self.genome.xl), n_obj=len(COSTS) + 1 + len(self.latencies),
                       n_ieq_constr=n_constr, xl=self.genome.xl, xu=self.genome.xu, vtype=int)  # fmt: skip

    def generation(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """Objectives F and constraints G of pymoo's candidates ``X``; history stats."""
        from .evolution import _evaluate, fitness_of

        archs = self.genome.decode(X)
        genes = arch_genes(archs)
        macs, params = self.sampler.pricer(genes)
        space = self.sampler.space
        lat = {name: np.asarray(batched(t, space).predict_batch(genes), dtype=float)
               for name, t in self.latencies.items()}  # fmt: skip
        score = np.array([self.table(a).sigma_score for a in archs])
        first_lat = next(iter(lat.values()), np.zeros(len(archs)))
        G = _constraints(self.config.bounds, macs, params, score, first_lat)
        ok = (G <= 0).all(axis=1)
        new = list({str(a): a for a, good in zip(archs, ok) if good and str(a) not in self.evaluated}.values())
        scores, reused = _evaluate(new, self.evaluator, self.cache, self.sampler, self.config.holdout)
        g = len(self.history)
        where = {str(a): i for i, a in enumerate(archs)}
        for a in new:
            acc, loss = scores[str(a)]
            m = {**self.sampler.metrics(a), "latency": {k: float(v[where[str(a)]]) for k, v in lat.items()}}
            self.evaluated[str(a)] = {"arch": str(a), "generation": g, "accuracy": acc, "loss": loss,
                                      "fitness": fitness_of(self.config, acc, m["score"], loss), **m}  # fmt: skip
            self.candidates.append(self.evaluated[str(a)])
        fit = np.array([self.evaluated[str(a)]["fitness"] if good else -1e9 for a, good in zip(archs, ok)])
        F = np.stack([-fit, macs, params, *lat.values()], axis=1).astype(float)
        best = max((c["fitness"] for c in self.candidates), default=float("nan"))
        return F, G, {"generation": g, "evaluated": len(new), "reused": reused, "infeasible": int((~ok).sum()),
                      "best_fitness": float(fit[ok].max()) if ok.any() else float("nan"),
                      "mean_fitness": float(fit[ok].mean()) if ok.any() else float("nan"), "best_so_far": best}  # fmt: skip

    @staticmethod
    def tell(algorithm, pop, F, G) -> None:
        from pymoo.core.evaluator import Evaluator as PymooEvaluator
        from pymoo.problems.static import StaticProblem

        PymooEvaluator().eval(StaticProblem(algorithm.problem, F=F, G=G), pop)
        algorithm.tell(infills=pop)

    def result(self, out, rank: int) -> SearchResult:
        from .evolution import pareto_front, rank_candidates

        if not self.candidates:
            raise SposError("NSGA-II found no candidate inside the bounds; loosen them")
        front = pareto(self.sampler.space, {c["arch"]: c["fitness"] for c in self.candidates}, self.latencies)
        result = SearchResult(candidates=self.candidates, top=rank_candidates(self.candidates)[: self.config.top_k],
                              pareto_macs=pareto_front(self.candidates, "macs"),
                              pareto_params=pareto_front(self.candidates, "params"), history=self.history,
                              front=front)  # fmt: skip
        if out is not None and rank == 0:
            write_outputs(out, result, self.config)
        return result
