"""Searching a trained supernet (SPEC §5).

Every candidate is scored the same way (:class:`Evaluator`): extract its subnet with copied
weights, recalibrate BN exactly on a fixed set of training images, and take top-1 on a held-out
split of the *training* set (never the validation set final accuracy is reported on). The images
are decoded once per search and kept as tensors on the device.

:func:`search` runs random search (N candidates) or the evolutionary search of SPEC §5
(population 50, top 10 parents plus each other member with p 0.1, children by per-gene uniform
crossover + mutation p 0.1, 20 generations, no arch evaluated twice) under hard constraints on
MACs / params / latency / Σ score. Candidates that break a constraint are priced with the exact
cost table and never evaluated. After each generation the whole search state (population, every
evaluated candidate, RNG state) goes to ``search_state.json``, so a killed search resumes and
ends exactly where an uninterrupted one would. Under ``torchrun`` the ranks evaluate disjoint
shares of each generation and gather the results; every rank runs the same genetic operators
from the same RNG, so they agree on the next generation without further messages.

:func:`run_search` is the library call behind ``spos search``: it loads a supernet file and the
data, runs :func:`search` and writes the run folder.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from ..cost.table import BatchPricer, cost_table
from ..errors import Preempted, SposError
from ..genes import crossover, largest, mutate, sample, smallest
from ..nn.supernet import SuperNet
from ..runs import RunLock
from ..runtime import StopSignals, agree, random_state_from_json, random_state_to_json, rank_world
from ..space import Arch, SearchSpace
from ..store import Store
from .config import LatencyModel, SearchConfig
from .evaluator import Evaluator, SearchData, evaluate_shared
from .state import STATE_FILE, SearchResult, load_state, save_state, write_candidates, write_outputs


class CandidateGenerator:
    """Draws new, constraint-satisfying, never-seen archs; counts why candidates were rejected.

    A candidate is checked as the supernet's samplers check a path: the search's
    :class:`~spos.cost.bounds.Bounds` over the cost models of one
    :class:`~spos.cost.table.BatchPricer` (exact MACs and params, and the latency model).
    """

    def __init__(self, space: SearchSpace, config: SearchConfig, latency: LatencyModel | None) -> None:
        self.space, self.config, self.latency = space, config, latency
        self.bounds = config.bounds
        if config.max_latency_ms is not None and latency is None:
            raise SposError("--max-latency-ms needs a latency table; pass --latency-table FILE")
        self.table = cost_table(space)
        self.pricer = BatchPricer(space, latency)
        self.genes = config.searched_genes
        # The half that is not searched stays at these genes (None: searched).
        self.fixed_blocks: tuple[int, ...] | None = None
        self.fixed_channels: tuple[int, ...] | None = None
        if config.fix_blocks:
            self.fixed_blocks = Arch.parse(config.fix_blocks, space.stage_depths).validate(space).blocks
        elif config.fix_channels:
            self.fixed_channels = Arch.parse(config.fix_channels, space.stage_depths).validate(space).channels
        elif self.genes == "block":
            # A block-only search runs every block at the widest scale, as block-only supernet
            # training does (SPEC §4, before channel selection starts).
            self.fixed_channels = largest(space).channels
        elif self.genes == "channel":
            raise SposError("--genes channel needs the block genes to keep: pass --fix-blocks ARCH")

    def random(self, rng: random.Random) -> Arch:
        arch = sample(self.space, rng)
        return Arch(self.fixed_blocks or arch.blocks, self.fixed_channels or arch.channels, self.space.stage_depths)

    def child(self, parents: list[Arch], rng: random.Random) -> Arch:
        a, b = rng.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
        return mutate(crossover(a, b, rng, self.genes), self.space, rng, self.config.mutation_prob, self.genes)

    def draw(
        self, n: int, seen: set[str], make: Callable[[], Arch], rejected: dict[str, int]
    ) -> list[Arch]:
        """Up to ``n`` new archs from ``make``, each valid and not in ``seen`` (which grows);
        stops after a bounded number of tries and counts the rejections in ``rejected``."""
        out: list[Arch] = []
        for _ in range(max(1000, self.config.tries_per_candidate * n)):
            if len(out) == n:
                break
            arch = make()
            key = str(arch)
            reason = "duplicate" if key in seen else self.violation(arch)
            if reason is None:
                seen.add(key)
                out.append(arch)
            else:
                rejected[reason] = rejected.get(reason, 0) + 1
        return out

    def fill(self, n: int, seen: set[str], rng: random.Random, parents: list[Arch] | None = None) -> list[Arch]:
        """``n`` new archs: children of ``parents`` (random archs when None); SposError if the
        constraints leave too few. When offspring keep repeating known archs (a converged
        population), the rest are fresh random archs so that the generation still fills."""
        rejected: dict[str, int] = {}
        out: list[Arch] = []
        if parents:
            out = self.draw(n, seen, lambda: self.child(parents, rng), rejected)
        if len(out) < n:
            out += self.draw(n - len(out), seen, lambda: self.random(rng), rejected)
        if len(out) < n:
            raise SposError(self._too_tight(len(out), n, rejected))
        return out

    def violation(self, arch: Arch) -> str | None:
        """The first bound ``arch`` breaks (a :class:`~spos.cost.bounds.Bounds` field), or None."""
        return self.pricer.violation(self.bounds, arch)

    def metrics(self, arch: Arch) -> dict:
        costs = self.table(arch)
        latency = self.latency.predict(arch) if self.latency is not None else None
        return {"macs": costs.macs, "params": costs.params, "score": costs.sigma_score,
                "latency_ms": None if latency is None else float(latency)}  # fmt: skip

    def _too_tight(self, got: int, need: int, rejected: dict[str, int]) -> str:
        worst = max(rejected, key=rejected.get) if rejected else "duplicate"
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items(), key=lambda kv: -kv[1]))
        head = f"found only {got} of {need} new candidates in {sum(rejected.values()) + got} tries (rejected: {counts})"
        if worst == "duplicate":
            return (f"{head}: the reachable archs are exhausted; lower --population/--candidates "
                    f"or search more genes")  # fmt: skip
        lo, hi = self.table(smallest(self.space)), self.table(largest(self.space))
        ranges = {
            "max_macs": f"MACs of this space run from {lo.macs:,} to {hi.macs:,}",
            "min_macs": f"MACs of this space run from {lo.macs:,} to {hi.macs:,}",
            "max_params": f"params run from {lo.params:,} to {hi.params:,}",
            "max_score": f"the Σ score runs from {lo.sigma_score:.4f} to {hi.sigma_score:.4f}",
            "max_latency_ms": "see the latency table for the range",
        }
        value = getattr(self.bounds, worst)
        flag = "--" + worst.replace("_", "-")
        return f"{head}: {flag} {value:g} is too tight ({ranges[worst]}); loosen {flag}"


def fitness_of(config: SearchConfig, accuracy: float, score: float, loss: float | None = None) -> float:
    """Higher is better: top-1 (``acc``), top-1 minus ``score_ratio`` x Σ score
    (``acc-score``), or the negated held-out cross-entropy (``loss``)."""
    if config.fitness == "loss":
        return -float(loss)
    return accuracy if config.fitness == "acc" else accuracy - config.score_ratio * score


def rank_candidates(cands: list[dict]) -> list[dict]:
    # Ties broken by the arch string so that every rank and every resumption agree.
    return sorted(cands, key=lambda c: (-c["fitness"], c["arch"]))


def pareto_front(cands: list[dict], cost: str) -> list[dict]:
    """Candidates no other beats on both accuracy (higher) and ``cost`` (lower), by cost."""
    front: list[dict] = []
    for c in sorted(cands, key=lambda c: (c[cost], -c["accuracy"], c["arch"])):
        if not front or c["accuracy"] > front[-1]["accuracy"]:
            front.append(c)
    return front


def total_generations(config: SearchConfig) -> int:
    if config.method == "evolution":
        return config.generations
    return -(-config.candidates // config.population)  # random: chunks of one population


def _start_state(state_path, config: SearchConfig, space: SearchSpace, rng: random.Random, resume: bool,
                 say: Callable[[str], None]) -> dict:  # fmt: skip
    """A new search state, or the saved one (``rng`` set to where it stopped) when resuming."""
    state = {"generation": 0, "population": [], "candidates": [], "history": []}
    if state_path is not None and state_path.is_file():
        if not resume:
            raise SposError(f"{state_path.parent} already holds a search; pass --resume to continue it or "
                            f"choose another --out")  # fmt: skip
        state = load_state(state_path, config, space)
        rng.setstate(random_state_from_json(state["rng"]))
        say(f"resuming {config.method} search at generation {state['generation'] + 1}")
    elif resume:
        say(f"no {STATE_FILE} in {state_path.parent if state_path else None}; starting a new search")
    return state


def next_generation(state: dict, evaluated: dict, sampler: CandidateGenerator, config: SearchConfig,
                    seen: set[str], rng: random.Random) -> tuple[list[str], list[Arch]]:  # fmt: skip
    """``(survivors, new archs)`` of the next generation (SPEC §5): random search draws a
    population of fresh archs; evolution keeps the top ``parents`` plus each other member with
    ``p_select`` and fills the population with children of the survivors."""
    g = state["generation"]
    if config.method == "random":
        return [], sampler.fill(min(config.population, config.candidates - len(evaluated)), seen, rng)
    if g == 0:
        return [], sampler.fill(config.population, seen, rng)
    ranked = rank_candidates([evaluated[a] for a in state["population"]])
    chosen = ranked[: config.parents] + [c for c in ranked[config.parents :] if rng.random() < config.p_select]
    survivors = [c["arch"] for c in chosen]
    parents = [Arch.parse(a, sampler.space.stage_depths) for a in survivors]
    return survivors, sampler.fill(config.population - len(parents), seen, rng, parents)


def _generation_stats(state: dict, evaluated: dict, n_new: int, seconds: float) -> tuple[dict, dict]:
    """One generation's history record and the best candidate so far."""
    pop = [evaluated[a]["fitness"] for a in state["population"]]
    best_all = rank_candidates(state["candidates"])[0]
    return {"generation": state["generation"], "evaluated": n_new, "best_fitness": max(pop),
            "mean_fitness": sum(pop) / len(pop), "best_so_far": best_all["fitness"],
            "seconds": seconds}, best_all  # fmt: skip


def search(
    supernet: SuperNet,
    data: SearchData,
    config: SearchConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    latency: LatencyModel | None = None,
    on_generation: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] | None = print,
    supernet_id: str | None = None,
    store: Store | None = None,
    latency_id: str | None = None,
) -> SearchResult:
    """Random or evolutionary search of ``supernet`` (see the module docstring).

    ``data`` holds the recalibration and held-out images (moved to the supernet's device once).
    With ``out_dir`` the state is saved after every generation and the outputs written there
    (rank 0 only); ``resume=True`` continues from its ``search_state.json``. ``on_generation(g,
    stats)`` is called after generation ``g`` is evaluated and saved. ``supernet_id`` (the
    supernet file's hash) is saved with the state; resuming against another supernet is refused.
    With a ``store`` (:class:`spos.store.Store`) and ``supernet_id``, every candidate the store
    already scored on this supernet with these scoring settings is reused, not evaluated, and
    every new score is stored (one transaction per generation; ``latency_id`` names the latency
    table its latency comes from).
    SIGTERM / SIGINT end the current generation, save the state and raise
    :class:`~spos.errors.Preempted` on every rank.
    Longer than a screen: the generation loop with its resume and output steps in order.
    """
    config = config or SearchConfig()
    space = supernet.space
    rank, _ = rank_world()
    say = log if (log is not None and rank == 0) else (lambda msg: None)
    sampler = CandidateGenerator(space, config, latency)
    evaluator = Evaluator(supernet.eval(), data, config.batch_size)
    out = Path(out_dir) if out_dir is not None else None

    rng = random.Random(config.seed)
    state_path = out / STATE_FILE if out is not None else None
    state = _start_state(state_path, config, space, rng, resume, say)
    if supernet_id is not None and state.setdefault("supernet", supernet_id) != supernet_id:
        raise SposError(f"{state_path} was searched on another supernet file (hash {state['supernet']}, now "
                        f"{supernet_id}): the file changed under the search; search it in another --out")  # fmt: skip
    lock = RunLock(out) if out is not None and rank == 0 else contextlib.nullcontext()
    cache = _Cache(store, supernet_id, config, latency_id) if store is not None and supernet_id else None
    with lock, StopSignals() as signals:
        _generations(state, config, sampler, evaluator, rng, out, state_path, space, say, on_generation, signals,
                     cache)  # fmt: skip
    cands = state["candidates"]
    result = SearchResult(
        candidates=cands,
        top=rank_candidates(cands)[: config.top_k],
        pareto_macs=pareto_front(cands, "macs"),
        pareto_params=pareto_front(cands, "params"),
        history=state["history"],
    )
    if out is not None and rank == 0:
        write_outputs(out, result, config)
    return result


class _Cache:
    """The search's view of the store: known scores of a generation's candidates (read on rank
    0 and broadcast, so every rank evaluates the same rest), and the new ones written back."""

    def __init__(self, store: Store, supernet_id: str, config: SearchConfig, latency_id: str | None) -> None:
        self.store, self.supernet_id, self.latency_id = store, supernet_id, latency_id
        self.settings = store.remember_config(config.scoring)

    def known(self, archs: list[Arch]) -> dict[str, tuple[float, float]]:
        rank, world = rank_world()
        found = None
        if rank == 0:
            rows = self.store.scores(self.supernet_id, self.settings, [str(a) for a in archs])
            found = {k: (r["accuracy"], r["loss"]) for k, r in rows.items()}
        if world > 1:
            box = [found]
            dist.broadcast_object_list(box, src=0)
            found = box[0]
        return found

    def put(self, scores: dict[str, tuple[float, float]], metrics: dict[str, dict], images: int) -> None:
        if rank_world()[0] != 0 or not scores:
            return
        rows = [{"arch": k, "accuracy": a, "loss": loss, "images": images, "macs": metrics[k]["macs"],
                 "params": metrics[k]["params"],
                 "latency": None if metrics[k]["latency_ms"] is None else {self.latency_id or "latency": metrics[k]["latency_ms"]}}
                for k, (a, loss) in scores.items()]  # fmt: skip
        self.store.put_scores(self.supernet_id, self.settings, rows)


def _evaluate(new: list[Arch], evaluator: Evaluator, cache: _Cache | None, sampler, images: int) -> tuple[dict, int]:
    """(accuracy, loss) of every arch in ``new``, from the store where known; and how many were."""
    known = cache.known(new) if cache is not None else {}
    todo = [a for a in new if str(a) not in known]
    fresh = evaluate_shared(todo, evaluator) if todo else {}
    if cache is not None:
        cache.put(fresh, {str(a): sampler.metrics(a) for a in todo}, images)
    return {**known, **fresh}, len(known)


def _generations(state, config, sampler, evaluator, rng, out, state_path, space, say, on_generation, signals,
                 cache=None) -> None:  # fmt: skip
    """The generation loop of :func:`search`, saving the state after each generation."""
    rank, _ = rank_world()
    evaluated = {c["arch"]: c for c in state["candidates"]}
    seen = set(evaluated)
    total = total_generations(config)
    while state["generation"] < total:
        g = state["generation"]
        t0 = time.perf_counter()
        survivors, new = next_generation(state, evaluated, sampler, config, seen, rng)
        scores, reused = _evaluate(new, evaluator, cache, sampler, config.holdout)
        state["reused"] = state.get("reused", 0) + reused
        for arch in new:
            key = str(arch)
            m = sampler.metrics(arch)
            acc, loss = scores[key]
            evaluated[key] = {"arch": key, "generation": g, "accuracy": acc, "loss": loss,
                              "fitness": fitness_of(config, acc, m["score"], loss), **m}  # fmt: skip
            state["candidates"].append(evaluated[key])
        state["population"] = survivors + [str(a) for a in new]
        stats, best_all = _generation_stats(state, evaluated, len(new), time.perf_counter() - t0)
        state["history"].append(stats)
        state["generation"] = g + 1
        state["rng"] = random_state_to_json(rng.getstate())
        if out is not None and rank == 0:
            save_state(state_path, state, config, space)
            write_candidates(out / "candidates.csv", state["candidates"])
        stats["reused"] = reused
        say(f"generation {g + 1}/{total}: {len(new) - reused} evaluated, {reused} from the store, in "
            f"{stats['seconds']:.1f} s; population best "
            f"{stats['best_fitness']:.4f} mean {stats['mean_fitness']:.4f}; best so far "
            f"{best_all['arch']} acc {best_all['accuracy']:.4f}")  # fmt: skip
        if on_generation is not None:
            on_generation(g, stats)
        if agree([signals.requested], evaluator.data.holdout_labels.device)[0] and state["generation"] < total:
            where = f"state saved in {state_path}: run the same command with --resume to continue" if out else "nothing saved (no --out)"
            raise Preempted(f"{signals.name} after generation {g + 1} of {total}; {where}")
