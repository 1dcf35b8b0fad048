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
from .warm import WarmStart


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

    def fill(self, n: int, seen: set[str], rng: random.Random, parents: list[Arch] | None = None,
             at_least: int | None = None) -> list[Arch]:  # fmt: skip
        """``n`` new archs: children of ``parents`` (random archs when None); SposError if the
        constraints leave fewer than ``at_least`` (default ``n``). When offspring keep repeating
        known archs (a converged population), the rest are fresh random archs so that the
        generation still fills."""
        rejected: dict[str, int] = {}
        out: list[Arch] = []
        if parents:
            out = self.draw(n, seen, lambda: self.child(parents, rng), rejected)
        if len(out) < n:
            out += self.draw(n - len(out), seen, lambda: self.random(rng), rejected)
        if len(out) < (n if at_least is None else at_least):
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
    survivors = select_survivors(state, evaluated, config, rng)
    parents = [Arch.parse(a, sampler.space.stage_depths) for a in survivors]
    return survivors, sampler.fill(config.population - len(parents), seen, rng, parents)


def select_survivors(state: dict, evaluated: dict, config: SearchConfig, rng: random.Random) -> list[str]:
    """The top ``parents`` of the population plus each other member with ``p_select``."""
    ranked = rank_candidates([evaluated[a] for a in state["population"]])
    chosen = ranked[: config.parents] + [c for c in ranked[config.parents :] if rng.random() < config.p_select]
    return [c["arch"] for c in chosen]


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
    latencies: dict[str, LatencyModel] | None = None,
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
    table its latency comes from). ``method: nsga2`` runs :func:`spos.search.nsga2.nsga2_search`
    over the latency models in ``latencies`` (name -> model; default: ``latency``) instead.
    SIGTERM / SIGINT end the current generation, save the state and raise
    :class:`~spos.errors.Preempted` on every rank.
    Longer than a screen: the generation loop with its resume and output steps in order.
    """
    config = config or SearchConfig()
    space = supernet.space
    rank, _ = rank_world()
    say = log if (log is not None and rank == 0) else (lambda msg: None)
    out = Path(out_dir) if out_dir is not None else None
    cache = _Cache(store, supernet_id, config, latency_id) if store is not None and supernet_id else None
    if config.method == "nsga2":
        latencies = latencies if latencies is not None else ({"latency": latency} if latency is not None else {})
        return _nsga2(supernet, data, config, out, resume, latencies, cache, log)
    sampler = CandidateGenerator(space, config, latency)
    evaluator = Evaluator(supernet.eval(), data, config.batch_size)

    rng = random.Random(config.seed)
    state_path = out / STATE_FILE if out is not None else None
    state = _start_state(state_path, config, space, rng, resume, say)
    if supernet_id is not None and state.setdefault("supernet", supernet_id) != supernet_id:
        raise SposError(f"{state_path} was searched on another supernet file (hash {state['supernet']}, now "
                        f"{supernet_id}): the file changed under the search; search it in another --out")  # fmt: skip
    lock = RunLock(out) if out is not None and rank == 0 else contextlib.nullcontext()
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


def _nsga2(supernet, data, config, out, resume, latencies, cache, log) -> SearchResult:
    """The NSGA-II branch of :func:`search`: a folder that holds a finished search is refused
    unless ``resume`` (which replays it from the store)."""
    from .nsga2 import nsga2_search

    if out is not None and (out / "best.json").is_file() and not resume:
        raise SposError(f"{out} already holds a search; pass --resume to replay it from the store or choose "
                        f"another --out")  # fmt: skip
    lock = RunLock(out) if out is not None and rank_world()[0] == 0 else contextlib.nullcontext()
    with lock:
        return nsga2_search(supernet, data, config, out, latencies=latencies, cache=cache, log=log)


class _Cache:
    """The search's view of the store: known scores of a generation's candidates and a
    snapshot of every score of this supernet (read on rank 0 and broadcast, so every rank
    evaluates the same rest), and the new ones written back."""

    def __init__(self, store: Store, supernet_id: str, config: SearchConfig, latency_id: str | None) -> None:
        self.store, self.supernet_id, self.latency_id = store, supernet_id, latency_id
        self.settings = store.remember_config(config.scoring)

    def known(self, archs: list[Arch]) -> dict[str, tuple[float, float]]:
        def read():
            rows = self.store.scores(self.supernet_id, self.settings, [str(a) for a in archs])
            return {k: (r["accuracy"], r["loss"]) for k, r in rows.items()}

        return _from_rank0(read)

    def snapshot(self, until: float | None = None) -> tuple[float, list[tuple[str, float, float]]]:
        """``(time, rows)``: ``(arch, accuracy, loss)`` of every score of this supernet and
        these settings written up to ``time`` (default: now)."""
        def read():
            t = time.time() if until is None else until
            return t, [(r["arch"], r["accuracy"], r["loss"]) for r in self.store.candidates(self.supernet_id)
                       if r["settings_hash"] == self.settings and r["loss"] is not None and r["created"] <= t]  # fmt: skip

        return _from_rank0(read)

    def put(self, scores: dict[str, tuple[float, float]], metrics: dict[str, dict], images: int) -> None:
        if rank_world()[0] != 0 or not scores:
            return
        rows = [{"arch": k, "accuracy": a, "loss": loss, "images": images, "macs": metrics[k]["macs"],
                 "params": metrics[k]["params"],
                 "latency": None if metrics[k]["latency_ms"] is None else {self.latency_id or "latency": metrics[k]["latency_ms"]}}
                for k, (a, loss) in scores.items()]  # fmt: skip
        self.store.put_scores(self.supernet_id, self.settings, rows)


def _from_rank0(read: Callable[[], object]):
    """``read()`` on rank 0, broadcast to every rank."""
    rank, world = rank_world()
    box = [read() if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def _evaluate(new: list[Arch], evaluator: Evaluator, cache: _Cache | None, sampler, images: int,
              known: dict | None = None) -> tuple[dict, int]:  # fmt: skip
    """(accuracy, loss) of every arch in ``new``, from the store where known (``known``: already
    looked up); and how many were."""
    if known is None:
        known = cache.known(new) if cache is not None else {}
    todo = [a for a in new if str(a) not in known]
    fresh = evaluate_shared(todo, evaluator) if todo else {}
    if cache is not None:
        cache.put(fresh, {str(a): sampler.metrics(a) for a in todo}, images)
    return {**known, **fresh}, len(known)


def _warm_start(state: dict, config: SearchConfig, space: SearchSpace, cache: _Cache | None) -> WarmStart | None:
    """The warm start of this search (:mod:`spos.search.warm`), or None: no store, switched
    off, too few stored scores, or a search that started (or was saved) cold."""
    undecided = "warm" not in state and state["generation"] == 0
    if cache is None or not config.warm_start or config.method != "evolution" or not (undecided or state.get("warm")):
        return None
    until, rows = cache.snapshot(state["warm"]["until"] if state.get("warm") else None)
    if len(rows) < config.warm_min:
        return None
    return WarmStart(space, config, rows, until)


def _propose(state, evaluated, sampler, config, seen, rng, cache, warm, say) -> tuple[list[str], list[Arch], dict, int]:
    """``(survivors, new archs, their stored scores, offspring screened out)`` of the next
    generation: SPEC §5's step, or with a warm start the pre-screened one (:mod:`.warm`)."""
    g = state["generation"]
    if warm is not None and g == 0:
        return _warm_first(state, sampler, config, seen, rng, cache, warm, say)
    if warm is None or not state.get("warm"):
        survivors, new = next_generation(state, evaluated, sampler, config, seen, rng)
        return survivors, new, (cache.known(new) if cache is not None else {}), 0
    survivors = select_survivors(state, evaluated, config, rng)
    parents = [Arch.parse(a, sampler.space.stage_depths) for a in survivors]
    slots = config.population - len(survivors)
    drawn = sampler.fill(slots * config.screen_draws, seen, rng, parents, at_least=slots)
    known = cache.known(drawn)
    kept, out = warm.screen([a for a in drawn if str(a) not in known], state["candidates"], slots)
    state.setdefault("screened", []).extend(str(a) for a in out)
    keep = {str(a) for a in kept} | set(known)
    return survivors, [a for a in drawn if str(a) in keep], known, len(out)


def _warm_first(state, sampler, config, seen, rng, cache, warm, say) -> tuple[list[str], list[Arch], dict, int]:
    """Generation 0 of a search that may start warm: the plain first draw when the store holds
    all of it (this search ran before: replay it), else the best stored archs plus random ones."""
    drawn = sampler.fill(config.population, seen, rng)
    known = cache.known(drawn)
    if len(known) == len(drawn):
        state["warm"] = None
        say("the store holds this search's first generation whole: replaying it from the store")
        return [], drawn, known, 0
    new = warm.first_population(sampler, drawn)
    seen.difference_update(str(a) for a in drawn)
    seen.update(str(a) for a in new)
    state["warm"] = {"until": warm.until, "stored": len(warm.stored)}
    known = cache.known(new)
    say(f"warm start from {len(warm.stored)} stored scores of this supernet: {len(known)} of the first "
        f"{len(new)} candidates are stored ones inside the bounds; each later generation draws "
        f"{config.screen_draws} offspring per slot and evaluates the predicted best {config.screen_keep:.0%} "
        f"of the slots")  # fmt: skip
    return [], new, known, 0


def _record(state: dict, evaluated: dict, new: list[Arch], scores: dict, sampler, config, slots: int) -> list[str]:
    """Add ``new`` with their ``scores`` to the candidates; the best ``slots`` of them (in
    drawn order) join the population."""
    for arch in new:
        key = str(arch)
        m = sampler.metrics(arch)
        acc, loss = scores[key]
        evaluated[key] = {"arch": key, "generation": state["generation"], "accuracy": acc, "loss": loss,
                          "fitness": fitness_of(config, acc, m["score"], loss), **m}  # fmt: skip
        state["candidates"].append(evaluated[key])
    top = {c["arch"] for c in rank_candidates([evaluated[str(a)] for a in new])[:slots]}
    return [str(a) for a in new if str(a) in top]


def _generations(state, config, sampler, evaluator, rng, out, state_path, space, say, on_generation, signals,
                 cache=None) -> None:  # fmt: skip
    """The generation loop of :func:`search`, saving the state after each generation."""
    rank, _ = rank_world()
    evaluated = {c["arch"]: c for c in state["candidates"]}
    seen = set(evaluated) | set(state.get("screened", ()))
    warm = _warm_start(state, config, space, cache)
    total = total_generations(config)
    while state["generation"] < total:
        g = state["generation"]
        t0 = time.perf_counter()
        survivors, new, known, screened = _propose(state, evaluated, sampler, config, seen, rng, cache, warm, say)
        scores, reused = _evaluate(new, evaluator, cache, sampler, config.holdout, known)
        state["reused"] = state.get("reused", 0) + reused
        state["population"] = survivors + _record(state, evaluated, new, scores, sampler, config,
                                                  config.population - len(survivors))  # fmt: skip
        stats, best_all = _generation_stats(state, evaluated, len(new), time.perf_counter() - t0)
        stats.update(reused=reused, screened=screened)
        state["history"].append(stats)
        state["generation"] = g + 1
        state["rng"] = random_state_to_json(rng.getstate())
        if out is not None and rank == 0:
            save_state(state_path, state, config, space)
            write_candidates(out / "candidates.csv", state["candidates"])
        say(f"generation {g + 1}/{total}: {len(new) - reused} evaluated, {reused} from the store"
            f"{f', {screened} screened out by the predictor' if screened else ''}, in {stats['seconds']:.1f} s; "
            f"population best {stats['best_fitness']:.4f} mean {stats['mean_fitness']:.4f}; best so far "
            f"{best_all['arch']} acc {best_all['accuracy']:.4f}")  # fmt: skip
        if on_generation is not None:
            on_generation(g, stats)
        if agree([signals.requested], evaluator.data.holdout_labels.device)[0] and state["generation"] < total:
            where = f"state saved in {state_path}: run the same command with --resume to continue" if out else "nothing saved (no --out)"
            raise Preempted(f"{signals.name} after generation {g + 1} of {total}; {where}")
