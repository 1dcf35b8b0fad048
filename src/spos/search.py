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

import csv
import io
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from .bn import recalibrate_bn
from .costs import Costs, cost_table
from .errors import SposError
from .runs import atomic_write_json, atomic_write_text, write_run_info
from .space import Arch, SearchSpace, crossover, largest, mutate, sample, smallest
from .supernet import SuperNet

STATE_FILE = "search_state.json"
STATE_VERSION = 1
# Options that may change between a search and its resumption: they only extend it.
_EXTENDABLE = ("generations", "candidates")


class LatencyModel(Protocol):
    def predict(self, arch: Arch) -> float:
        """Latency of ``arch`` in milliseconds."""


# ---- configuration ---------------------------------------------------------------------------


def parse_amount(text: str) -> float:
    """A number with an optional K/M/G suffix (330M, 3.4e6, 2.5K); ValueError otherwise."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text.strip()[-1:].lower(), 1.0)
    return float(text.strip()[:-1] if scale != 1.0 else text) * scale


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result (SPEC §5 defaults).

    MACs are multiply-accumulates per image; params are counts; latency in milliseconds;
    ``max_score`` bounds the Σ normalized score (MACs / 328M + params / 3.4M). Accuracies are
    fractions in [0, 1]; fitness is ``acc`` or ``acc - score_ratio * score`` (``acc-score``).
    """

    method: str = "evolution"  # evolution | random
    genes: str = "joint"  # block | channel | joint
    fix_blocks: str | None = None  # arch string whose block genes stay fixed (searches channels)
    fix_channels: str | None = None  # arch string whose channel genes stay fixed (searches blocks)
    population: int = 50
    parents: int = 10
    p_select: float = 0.1
    mutation_prob: float = 0.1
    generations: int = 20
    candidates: int = 100  # random search: how many archs to evaluate
    max_macs: float | None = None
    min_macs: float | None = None
    max_params: float | None = None
    max_score: float | None = None
    max_latency_ms: float | None = None
    fitness: str = "acc"  # acc | acc-score
    score_ratio: float = 0.1
    recal_images: int = 2000  # BN recalibration images (SPEC: 20,000 on ImageNet)
    holdout: int = 5000  # held-out training images that score candidates
    # Seed of the holdout split; None: the supernet training's (read from its file), else 0.
    holdout_seed: int | None = None
    batch_size: int = 256
    top_k: int = 10
    seed: int = 0
    tries_per_candidate: int = 200  # bound on rejected samples before a constraint is "too tight"

    def __post_init__(self) -> None:
        # Values from YAML files arrive as whatever YAML made of them ("3e8" is a string there).
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type))
            if kind is None or value is None or isinstance(value, bool):
                continue
            try:
                if isinstance(value, str):
                    value = parse_amount(value)
                object.__setattr__(self, f.name, kind(value))
            except (TypeError, ValueError):
                raise SposError(f"{f.name.replace('_', '-')} must be a number, got {value!r}") from None
        if self.method not in ("evolution", "random"):
            raise SposError(f"method must be evolution or random, got {self.method!r}")
        if self.genes not in ("block", "channel", "joint"):
            raise SposError(f"genes must be block, channel or joint, got {self.genes!r}")
        if self.fitness not in ("acc", "acc-score"):
            raise SposError(f"fitness must be acc or acc-score, got {self.fitness!r}")
        if self.fix_blocks and self.fix_channels:
            raise SposError("--fix-blocks and --fix-channels together leave nothing to search; pass one")
        if self.fix_blocks and self.genes == "block":
            raise SposError("--fix-blocks holds the block genes fixed; search --genes channel (or joint)")
        if self.fix_channels and self.genes == "channel":
            raise SposError("--fix-channels holds the channel genes fixed; search --genes block (or joint)")
        for name in ("population", "generations", "candidates", "recal_images", "holdout", "top_k",
                     "tries_per_candidate"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise SposError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise SposError(f"batch-size must be at least 2 (BN recalibration), got {self.batch_size}")
        if self.method == "evolution" and not 1 <= self.parents < self.population:
            raise SposError(
                f"parents ({self.parents}) must be at least 1 and below the population ({self.population})"
            )
        for name in ("p_select", "mutation_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SposError(f"{name.replace('_', '-')} must be a probability in [0, 1]")
        if self.min_macs is not None and self.max_macs is not None and self.min_macs > self.max_macs:
            raise SposError(f"min-macs {self.min_macs:g} is above max-macs {self.max_macs:g}")

    @property
    def searched_genes(self) -> str:
        """The genes the operators touch: fixing one half searches the other."""
        if self.fix_blocks:
            return "channel"
        if self.fix_channels:
            return "block"
        return self.genes

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SposError(f"unknown search options {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Constraints:
    """Hard limits; ``None`` is no limit. Units as in :class:`SearchConfig`."""

    max_macs: float | None = None
    min_macs: float | None = None
    max_params: float | None = None
    max_score: float | None = None
    max_latency_ms: float | None = None

    @classmethod
    def of(cls, config: SearchConfig) -> Constraints:
        return cls(config.max_macs, config.min_macs, config.max_params, config.max_score, config.max_latency_ms)

    def violation(self, costs: Costs, latency_ms: float | None) -> str | None:
        """The name of the first limit ``costs``/``latency_ms`` break, or None."""
        if self.max_macs is not None and costs.macs > self.max_macs:
            return "max_macs"
        if self.min_macs is not None and costs.macs < self.min_macs:
            return "min_macs"
        if self.max_params is not None and costs.params > self.max_params:
            return "max_params"
        if self.max_score is not None and costs.sigma_score > self.max_score:
            return "max_score"
        if self.max_latency_ms is not None and latency_ms is not None and latency_ms > self.max_latency_ms:
            return "max_latency_ms"
        return None


# ---- candidate evaluation --------------------------------------------------------------------


@dataclass
class SearchData:
    """Decoded, unaugmented training images: BN-recalibration set and held-out scoring split."""

    recal_images: torch.Tensor  # N x C x H x W, normalised
    holdout_images: torch.Tensor
    holdout_labels: torch.Tensor  # int64 class indices

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format = torch.preserve_format
    ) -> SearchData:
        images = (self.recal_images, self.holdout_images)
        recal, holdout = (t.to(device, memory_format=memory_format) for t in images)
        return SearchData(recal, holdout, self.holdout_labels.to(device))


class Evaluator:
    """Scores archs of one supernet: subnet extraction, exact BN recalibration, top-1 on the holdout."""

    def __init__(
        self, supernet: SuperNet, data: SearchData, batch_size: int = 256, channels_last: bool = True
    ) -> None:
        device = next(supernet.parameters()).device
        # NHWC: 2.3x faster candidates on the CPU preset, the same accuracies.
        layout = torch.channels_last if channels_last else torch.preserve_format
        self.supernet, self.data, self.batch_size = supernet, data.to(device, layout), batch_size
        self.channels_last = channels_last

    @torch.no_grad()
    def accuracy(self, arch: Arch) -> float:
        """Top-1 of ``arch`` on the held-out split, as a fraction."""
        net = self.supernet.subnet(arch)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        recalibrate_bn(net, self.data.recal_images, self.batch_size)
        net.eval()
        images, labels = self.data.holdout_images, self.data.holdout_labels
        correct = torch.zeros((), dtype=torch.int64, device=labels.device)
        for start in range(0, len(labels), self.batch_size):
            logits = net(images[start : start + self.batch_size])
            correct += (logits.argmax(1) == labels[start : start + self.batch_size]).sum()
        return int(correct) / len(labels)  # one device sync per candidate


# ---- distributed helpers ---------------------------------------------------------------------


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> None:
    """Join the ``torchrun`` process group (gloo on CPU, NCCL on GPU) if there is one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _evaluate_shared(archs: list[Arch], evaluator: Evaluator) -> dict[str, float]:
    """Accuracy of each arch; with several ranks each evaluates every world-th arch."""
    rank, world = _world()
    mine = {str(a): evaluator.accuracy(a) for a in archs[rank::world]}
    if world == 1:
        return mine
    gathered: list[dict[str, float] | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    merged: dict[str, float] = {}
    for part in gathered:
        merged.update(part or {})
    return merged


# ---- the search ------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Every evaluated candidate (dicts: arch, generation, accuracy, fitness, macs, params,
    score, latency_ms), the best first ``top``, the Pareto fronts and per-generation history."""

    candidates: list[dict]
    top: list[dict]
    pareto_macs: list[dict]
    pareto_params: list[dict]
    history: list[dict] = field(default_factory=list)

    @property
    def best(self) -> dict:
        return self.top[0]


class _Sampler:
    """Draws new, constraint-satisfying, never-seen archs; counts why candidates were rejected."""

    def __init__(self, space: SearchSpace, config: SearchConfig, latency: LatencyModel | None) -> None:
        self.space, self.config, self.latency = space, config, latency
        self.constraints = Constraints.of(config)
        if config.max_latency_ms is not None and latency is None:
            raise SposError("--max-latency-ms needs a latency table; pass --latency-table FILE")
        self.table = cost_table(space)
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
        latency = self.latency.predict(arch) if self.latency is not None else None
        return self.constraints.violation(self.table(arch), latency)

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
        value = getattr(self.constraints, worst)
        flag = "--" + worst.replace("_", "-")
        return f"{head}: {flag} {value:g} is too tight ({ranges[worst]}); loosen {flag}"


def _fitness(config: SearchConfig, accuracy: float, score: float) -> float:
    return accuracy if config.fitness == "acc" else accuracy - config.score_ratio * score


def _rank(cands: list[dict]) -> list[dict]:
    # Ties broken by the arch string so that every rank and every resumption agree.
    return sorted(cands, key=lambda c: (-c["fitness"], c["arch"]))


def pareto_front(cands: list[dict], cost: str) -> list[dict]:
    """Candidates no other beats on both accuracy (higher) and ``cost`` (lower), by cost."""
    front: list[dict] = []
    for c in sorted(cands, key=lambda c: (c[cost], -c["accuracy"], c["arch"])):
        if not front or c["accuracy"] > front[-1]["accuracy"]:
            front.append(c)
    return front


def _total_generations(config: SearchConfig) -> int:
    if config.method == "evolution":
        return config.generations
    return -(-config.candidates // config.population)  # random: chunks of one population


def search(
    supernet: SuperNet,
    data: SearchData,
    config: SearchConfig = SearchConfig(),
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    latency: LatencyModel | None = None,
    on_generation: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> SearchResult:
    """Random or evolutionary search of ``supernet`` (see the module docstring).

    ``data`` holds the recalibration and held-out images (moved to the supernet's device once).
    With ``out_dir`` the state is saved after every generation and the outputs written there
    (rank 0 only); ``resume=True`` continues from its ``search_state.json``. ``on_generation(g,
    stats)`` is called after generation ``g`` is evaluated and saved.
    """
    space = supernet.space
    rank, _ = _world()
    say = log if (log is not None and rank == 0) else (lambda msg: None)
    sampler = _Sampler(space, config, latency)
    evaluator = Evaluator(supernet.eval(), data, config.batch_size)
    out = Path(out_dir) if out_dir is not None else None

    rng = random.Random(config.seed)
    state = {"generation": 0, "population": [], "candidates": [], "history": []}
    state_path = out / STATE_FILE if out is not None else None
    if state_path is not None and state_path.is_file():
        if not resume:
            raise SposError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
        state = _load_state(state_path, config, space)
        rng.setstate(_rng_from_json(state["rng"]))
        say(f"resuming {config.method} search at generation {state['generation'] + 1}")
    elif resume:
        say(f"no {STATE_FILE} in {out}; starting a new search")

    evaluated = {c["arch"]: c for c in state["candidates"]}
    seen = set(evaluated)
    total = _total_generations(config)
    while state["generation"] < total:
        g = state["generation"]
        t0 = time.perf_counter()
        if config.method == "random":
            n = min(config.population, config.candidates - len(evaluated))
            new = sampler.fill(n, seen, rng)
            survivors: list[str] = []
        elif g == 0:
            new = sampler.fill(config.population, seen, rng)
            survivors = []
        else:
            ranked = _rank([evaluated[a] for a in state["population"]])
            chosen = ranked[: config.parents] + [c for c in ranked[config.parents :] if rng.random() < config.p_select]
            survivors = [c["arch"] for c in chosen]
            parents = [Arch.parse(a, space.stage_depths) for a in survivors]
            new = sampler.fill(config.population - len(parents), seen, rng, parents)

        accuracies = _evaluate_shared(new, evaluator)
        for arch in new:
            key = str(arch)
            m = sampler.metrics(arch)
            acc = accuracies[key]
            evaluated[key] = {"arch": key, "generation": g, "accuracy": acc,
                              "fitness": _fitness(config, acc, m["score"]), **m}  # fmt: skip
            state["candidates"].append(evaluated[key])
        state["population"] = survivors + [str(a) for a in new]
        pop = [evaluated[a]["fitness"] for a in state["population"]]
        best_all = _rank(state["candidates"])[0]
        stats = {"generation": g, "evaluated": len(new), "best_fitness": max(pop),
                 "mean_fitness": sum(pop) / len(pop), "best_so_far": best_all["fitness"],
                 "seconds": time.perf_counter() - t0}  # fmt: skip
        state["history"].append(stats)
        state["generation"] = g + 1
        state["rng"] = _rng_to_json(rng.getstate())
        if out is not None and rank == 0:
            _save_state(state_path, state, config, space)
            _write_candidates(out / "candidates.csv", state["candidates"])
        say(f"generation {g + 1}/{total}: {len(new)} evaluated in {stats['seconds']:.1f} s "
            f"({stats['seconds'] / max(1, len(new)):.2f} s each); population best "
            f"{stats['best_fitness']:.4f} mean {stats['mean_fitness']:.4f}; best so far "
            f"{best_all['arch']} acc {best_all['accuracy']:.4f}")  # fmt: skip
        if on_generation is not None:
            on_generation(g, stats)

    cands = state["candidates"]
    result = SearchResult(
        candidates=cands,
        top=_rank(cands)[: config.top_k],
        pareto_macs=pareto_front(cands, "macs"),
        pareto_params=pareto_front(cands, "params"),
        history=state["history"],
    )
    if out is not None and rank == 0:
        write_outputs(out, result, config)
    return result


# ---- state and outputs -----------------------------------------------------------------------


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(obj: list) -> tuple:
    return (obj[0], tuple(obj[1]), obj[2])


def _save_state(path: Path, state: dict, config: SearchConfig, space: SearchSpace) -> None:
    atomic_write_json(path, {"version": STATE_VERSION, "config": config.to_dict(), "space": space.to_dict(),
                             **state})  # fmt: skip


def _load_state(path: Path, config: SearchConfig, space: SearchSpace) -> dict:
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SposError(f"cannot read search state {path}: {e}; delete it to start over") from None
    if saved.get("version") != STATE_VERSION:
        raise SposError(f"{path} was written by another spos version; start a new search with another --out")
    if saved["space"] != space.to_dict():
        raise SposError(f"{path} belongs to a search of another supernet space; use another --out")
    now = config.to_dict()
    changed = sorted(k for k in now if k not in _EXTENDABLE and saved["config"].get(k) != now[k])
    if changed:
        was = ", ".join(f"{k}={saved['config'].get(k)!r}" for k in changed)
        raise SposError(f"cannot resume with changed options ({was} when saved); pass the same options "
                        f"or choose another --out")  # fmt: skip
    return {k: saved[k] for k in ("generation", "population", "candidates", "history", "rng")}


CSV_FIELDS = ("generation", "arch", "accuracy", "fitness", "macs", "params", "score", "latency_ms")


def _write_candidates(path: Path, cands: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(cands)
    atomic_write_text(path, buf.getvalue())


def write_outputs(out: str | os.PathLike, result: SearchResult, config: SearchConfig) -> None:
    """candidates.csv, best.json (top-k), pareto.json (accuracy vs MACs and vs params) and the
    plots fitness.png (best/mean fitness per generation) and pareto.png."""
    out = Path(out)
    _write_candidates(out / "candidates.csv", result.candidates)
    atomic_write_json(out / "best.json", {"best": result.best, "top": result.top, "method": config.method,
                                          "evaluated": len(result.candidates),
                                          "generations": len(result.history)})  # fmt: skip
    atomic_write_json(out / "pareto.json", {"accuracy_vs_macs": result.pareto_macs,
                                            "accuracy_vs_params": result.pareto_params})  # fmt: skip
    _plot(out, result, config)


def _plot(out: Path, result: SearchResult, config: SearchConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    gens = [h["generation"] + 1 for h in result.history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(gens, [h["best_fitness"] for h in result.history], "o-", label="population best")
    ax.plot(gens, [h["mean_fitness"] for h in result.history], "s--", label="population mean")
    ax.plot(gens, [h["best_so_far"] for h in result.history], ":", color="k", label="best so far")
    ax.set_xlabel("generation" if config.method == "evolution" else "batch of candidates")
    ax.set_ylabel("fitness (top-1)" if config.fitness == "acc" else f"fitness (top-1 − {config.score_ratio:g}·score)")
    ax.set_title(f"{config.method} search: {len(result.candidates)} candidates")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_png(fig, out / "fitness.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, cost, front, unit in ((axes[0], "macs", result.pareto_macs, "MACs (M)"),
                                  (axes[1], "params", result.pareto_params, "params (M)")):  # fmt: skip
        ax.scatter([c[cost] / 1e6 for c in result.candidates], [100 * c["accuracy"] for c in result.candidates],
                   s=10, alpha=0.5, c=[c["generation"] for c in result.candidates], cmap="viridis")  # fmt: skip
        ax.step([c[cost] / 1e6 for c in front], [100 * c["accuracy"] for c in front], "r-", where="post",
                label="Pareto front")  # fmt: skip
        ax.scatter([c[cost] / 1e6 for c in front], [100 * c["accuracy"] for c in front], s=25, c="r")
        ax.set_xlabel(unit)
        ax.set_ylabel("held-out top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("candidates (colour: generation)")
    fig.tight_layout()
    _save_png(fig, out / "pareto.png")
    plt.close(fig)


def _save_png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    from .runs import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


# ---- the library call behind `spos search` ---------------------------------------------------


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: this rank's GPU under torchrun (LOCAL_RANK) or the only one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SposError(f"device {device} requested but no GPU is available; pass --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return dev


def trained_holdout(train_config: dict, n: int) -> tuple[int, int] | None:
    """``(size, seed)`` of the holdout a supernet's training left out of ``n`` train images,
    from the ``config`` its file carries (spos.train: ``holdout`` fraction or count, ``seed``);
    None when the file does not say."""
    if "holdout" not in train_config or "seed" not in train_config:
        return None
    h = float(train_config["holdout"])
    return (round(h * n) if h < 1 else int(h)), int(train_config["seed"])


def load_search_data(
    data: str, space: SearchSpace, config: SearchConfig, train_config: dict | None = None
) -> SearchData:
    """Decode the recalibration subset and the held-out images of ``data``'s training set once.

    The holdout is the split supernet training left out (``spos.data.holdout_split`` with the
    size and seed in ``train_config``, the training's config): the search scores on
    ``config.holdout`` of those images, so it never scores on images the supernet trained on.
    Without a training config the split is ``holdout_split(n, config.holdout, holdout_seed or 0)``.
    The recalibration images are a subset of the rest drawn with ``config.seed``. Both use the
    eval transform (no augmentation).
    """
    from .data import to_tensors

    ds, recal_idx, holdout_idx = search_split(data, space, config, train_config)
    recal, _ = to_tensors(ds, recal_idx, batch_size=config.batch_size)
    images, labels = to_tensors(ds, holdout_idx, batch_size=config.batch_size)
    if tuple(images.shape[1:]) != (space.input_channels, space.input_size, space.input_size):
        raise SposError(f"data {data!r} gives {tuple(images.shape[1:])} images; the supernet expects "
                        f"{(space.input_channels, space.input_size, space.input_size)}: pass the data it was "
                        f"trained on")  # fmt: skip
    return SearchData(recal, images, labels.long())


def search_split(data: str, space: SearchSpace, config: SearchConfig, train_config: dict | None = None):
    """``(train dataset, recalibration indices, held-out indices)`` of a search, without decoding
    any image (see :func:`load_search_data`)."""
    from .data import dataset, holdout_split

    ds = dataset(data, "train", train=False, input_size=space.input_size)
    n = len(ds)
    trained = trained_holdout(train_config or {}, n)
    size, seed = (config.holdout, 0) if trained is None else trained
    if config.holdout_seed is not None:
        seed = config.holdout_seed
    if trained is not None and config.holdout > size:
        raise SposError(f"the supernet was trained with {size} held-out images; --holdout {config.holdout} "
                        f"would score on images it trained on; pass --holdout {size} or less")  # fmt: skip
    train_idx, holdout_idx = holdout_split(n, size, seed)
    holdout_idx = sorted(random.Random(seed).sample(list(holdout_idx), config.holdout))
    if config.recal_images > len(train_idx):
        raise SposError(f"--recal-images {config.recal_images} is more than the {len(train_idx)} training "
                        f"images outside the holdout; lower it")  # fmt: skip
    recal_idx = random.Random(config.seed).sample(list(train_idx), config.recal_images)
    return ds, recal_idx, holdout_idx


def run_search(
    supernet_path: str | os.PathLike,
    data: str = "builtin",
    config: SearchConfig = SearchConfig(),
    out_dir: str | os.PathLike = "runs/search",
    *,
    resume: bool = False,
    device: str = "auto",
    latency_table: str | os.PathLike | None = None,
    command: str = "",
    log: Callable[[str], None] | None = print,
) -> SearchResult:
    """Load a supernet file (``final.pt`` or a training ``checkpoint.pt``) and ``data``, search,
    and write the run folder (config.yaml, run.json, search_state.json, candidates.csv,
    best.json, pareto.json, fitness.png, pareto.png). Works under ``torchrun``."""
    from .runs import load_checkpoint, model_from_checkpoint

    dev = resolve_device(device)
    init_distributed(dev)
    ckpt = load_checkpoint(supernet_path, map_location="cpu")
    model, space, arch = model_from_checkpoint(ckpt, supernet_path)
    train_config = ckpt.get("config") or {}
    if arch is not None or not isinstance(model, SuperNet):
        raise SposError(f"{supernet_path} holds a subnet ({arch}); search needs a supernet file "
                        f"(final.pt of `spos train supernet`)")  # fmt: skip
    latency = None
    if latency_table is not None:
        try:
            from .deploy import LatencyTable
        except ImportError:
            raise SposError("latency tables are not available in this spos version; drop --latency-table") from None
        latency = LatencyTable.load(latency_table)
    elif config.max_latency_ms is not None:
        raise SposError("--max-latency-ms needs a latency table; pass --latency-table FILE")
    if _world()[0] == 0:
        write_run_info(out_dir, {"supernet": str(supernet_path), "data": data, "device": str(dev),
                                 "latency_table": latency_table, "resume": resume, **config.to_dict()},
                       command)  # fmt: skip
    search_data = load_search_data(data, space, config, train_config).to(dev)
    return search(model.to(dev), search_data, config, out_dir, resume=resume, latency=latency, log=log)
