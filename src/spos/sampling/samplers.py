"""Path samplers for supernet training (SPEC §4).

One path is trained per step. A :class:`PathSampler` hands it out: ``sampler.sample(epoch)``.
Four kinds, all built by :func:`build_sampler` (``fair``, FairNAS strict fairness with 4 paths
per step, lives in :mod:`.fair`):

- ``uniform``: block genes uniform over the 4 choice blocks, channel genes uniform over the
  channel genes the warm-up allows at this epoch (:func:`allowed_channel_genes`).
- ``random``: rejection sampling from ``uniform`` until the path's costs fall inside a window,
  a :class:`~spos.cost.bounds.Bounds` on MACs, parameters, Σ score and (given a latency model)
  latency.
- ``strolling``: strolling evolution. A population of 5 parents walks through the window: the MACs
  range is swept in bins (20M MACs by default), up and down, and the parameter target steps
  from the window's low edge to its high edge and back, one level per half-sweep. Each step makes
  10 children inside the current MACs bin by uniform crossover + per-gene mutation (p = 0.1),
  ranks them, trains the child at a set rank and keeps the best 5 as parents.

Costs are exact: MACs (multiply-accumulates, what SPEC tables call FLOPs) and parameters per
image from :func:`spos.cost.table.cost_table`, priced in batches with numpy; latency (ms) from
an optional cost model with ``predict_batch`` (:class:`~spos.cost.latency.LatencyTable`). One
:class:`~spos.cost.table.BatchPricer` checks all of them against the window, as in the search.
The MACs bins and the params target steer the strolling walk; latency and Σ score bounds filter
its children (latency also steers the climb into a window rejection sampling rarely hits).

Determinism: every sampler draws from its own ``numpy`` PCG64 generator seeded by ``seed``, so
all data-parallel ranks that build the same sampler get the same path at every step.
``state_dict()`` holds only ints, strings and lists (safe for ``torch.load(weights_only=True)``);
after ``load_state_dict`` the sequence continues exactly as if it had never stopped.

Window and warm-up: the window constrains paths whenever the channel genes the warm-up allows
can reach it. While they cannot (e.g. before channel selection starts only scale 2.0 is allowed,
and every such path may exceed the MACs ceiling), a constrained sampler returns the uniform
path instead: the warm-up wins, blocks keep training uniformly, and ``warmup_fallbacks`` counts
those steps. A window that the fully warmed-up genes cannot reach is an error when the sampler is
built, not a hang at epoch 60.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..cost.bounds import Bounds
from ..cost.table import BatchPricer
from ..errors import SposError
from ..genes import mutate_genes, to_arch, uniform_genes
from ..runtime import generator_state, set_generator_state
from ..space import SCALES, Arch, SearchSpace
from .schedule import allowed_channel_genes, usable_channel_genes

KINDS: tuple[str, ...] = ("uniform", "random", "strolling", "fair")


#: Default MACs bin of strolling evolution (SPEC §4).
DEFAULT_BIN_MACS = 20e6


def climb_into_window(
    pricer: BatchPricer,
    window: Bounds,
    allowed: np.ndarray,
    rng: np.random.Generator,
    need: int,
    iterations: int = 200,
    batch: int = 256,
) -> np.ndarray:
    """Up to ``need`` in-window candidates found by evolving uniform ones toward the window.

    Rejection sampling rarely reaches a window's corners; minimising the distance to the window
    (:meth:`Bounds.excess` over MACs, params and, when bounded, latency) by mutation does,
    because costs are sums over positions. Returns shape (k, 2N), k <= need.
    """
    n = pricer.n
    scales = {q: max(float(hi - lo), 1.0) for q, (lo, hi) in zip(("macs", "params"), pricer.reachable(allowed))}
    pop = uniform_genes(rng, n, allowed, batch)
    if window.needs_latency:  # the latency model's range is unknown: the first population's spread
        scales["latency_ms"] = max(float(np.ptp(pricer.costs(window, pop)["latency_ms"])), 1e-9)
    found: list[np.ndarray] = []
    for _ in range(iterations):
        costs = pricer.costs(window, pop)
        v = window.excess(costs, scales)
        found.extend(pop[(v == 0) & window.mask(**costs)])  # Σ score too, when bounded
        if len(found) >= need:
            break
        elite = pop[np.argsort(v, kind="stable")[:16]]
        pop = np.concatenate((elite, mutate_genes(rng, elite[rng.integers(0, len(elite), batch)], n, allowed, 0.1)))
    return np.asarray(found[:need], dtype=np.int64).reshape(-1, 2 * n)


class PathSampler:
    """Uniform path sampler with the channel-selection warm-up; base of the constrained ones.

    ``sample(epoch)`` returns the path for one training step. Build it with :func:`build_sampler`.
    """

    kind = "uniform"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        window: Bounds | None = None,
        warmup_start_epoch: int | None = None,
        min_channel_gene: int | None = None,
        latency=None,
    ) -> None:
        self.space = space
        self.seed = int(seed)
        self.window = window
        self.warmup_start_epoch = warmup_start_epoch
        self.min_channel_gene = min_channel_gene
        self.full_genes = usable_channel_genes(space, min_channel_gene)  # validates min_channel_gene
        self.latency = latency  # a cost model with predict_batch, for max_latency_ms windows
        self._pricer = BatchPricer(space, latency)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.count = 0  # paths handed out so far
        self.warmup_fallbacks = 0  # of which uniform because the warm-up could not reach the window

    def allowed(self, epoch: int) -> tuple[int, ...]:
        """Channel genes allowed at ``epoch`` (:func:`allowed_channel_genes`)."""
        return allowed_channel_genes(self.space, epoch, self.warmup_start_epoch, self.min_channel_gene)

    def sample(self, epoch: int = 0) -> Arch:
        """The path to train at one step of ``epoch``; advances the sampler's state."""
        genes = self._sample(np.asarray(self.allowed(epoch), dtype=np.int64))
        self.count += 1
        return to_arch(genes, self.space)

    def _sample(self, allowed: np.ndarray) -> np.ndarray:
        return uniform_genes(self._rng, self.space.num_blocks, allowed, 1)[0]

    #: Paths one training step trains (the FairNAS sampler trains several).
    paths_per_step = 1

    def sample_step(self, epoch: int = 0) -> list[Arch]:
        """Every path one training step of ``epoch`` trains (one here; see :mod:`.fair`)."""
        return [self.sample(epoch)]

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue the sequence exactly: ints, strings and lists only."""
        return {"kind": self.kind, "seed": self.seed, "count": self.count,
                "warmup_fallbacks": self.warmup_fallbacks, "rng": generator_state(self._rng),
                **self._extra_state()}  # fmt: skip

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("kind") != self.kind:
            raise SposError(
                f"sampler state is for a {state.get('kind')!r} sampler, this one is {self.kind!r}; "
                f"resume with the same sampler kind"
            )
        try:
            set_generator_state(self._rng, state["rng"])
            self.seed = int(state["seed"])
            self.count = int(state["count"])
            self.warmup_fallbacks = int(state.get("warmup_fallbacks", 0))
            self._load_extra_state(state)
        except (KeyError, TypeError, ValueError) as e:
            raise SposError(f"sampler state is incomplete or corrupt ({e!r}); resume from another checkpoint") from None

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: Mapping) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, window={self.window}, count={self.count})"


class _ConstrainedSampler(PathSampler):
    """Shared window checks: reachability per set of allowed genes, cached (a pure function)."""

    def __init__(self, space: SearchSpace, seed: int = 0, window: Bounds | None = None,
                 warmup_start_epoch: int | None = None, min_channel_gene: int | None = None,
                 latency=None) -> None:  # fmt: skip
        if window is None or window.is_open:
            raise SposError(
                f"the {self.kind} sampler needs a window: set at least one of min/max MACs, "
                f"min/max params, max_score or max_latency_ms (or use the uniform sampler)"
            )
        if window.needs_latency and latency is None:
            raise SposError("a max_latency_ms window needs a latency table; set latency_table")
        super().__init__(space, seed, window, warmup_start_epoch, min_channel_gene, latency)
        self._reach_cache: dict[tuple[int, ...], bool] = {}
        reach = self._pricer.reachable(self.full_genes)
        lo_m, hi_m = window.min_macs, window.max_macs
        lo_p, hi_p = window.min_params, window.max_params
        disjoint = ((lo_m is not None and lo_m > reach[0][1]) or (hi_m is not None and hi_m < reach[0][0])
                    or (lo_p is not None and lo_p > reach[1][1]) or (hi_p is not None and hi_p < reach[1][0]))  # fmt: skip
        if disjoint or not self._reachable(self.full_genes):
            raise SposError(self._unreachable_message(reach, disjoint))

    def _unreachable_message(self, reach, disjoint: bool) -> str:
        why = "lies outside" if disjoint else "is not reached by any path found in"
        return (
            f"the target window ({self.window}) {why} what this search space can reach with channel "
            f"scales {SCALES[self.full_genes[0]]}..{SCALES[self.full_genes[-1]]}: MACs "
            f"{reach[0][0] / 1e6:.3f}M..{reach[0][1] / 1e6:.3f}M, params {reach[1][0] / 1e6:.4f}M.."
            f"{reach[1][1] / 1e6:.4f}M (not every combination is reachable); move the window inside "
            f"that range{self._hint}"
        )

    _hint = ""

    def _reachable(self, genes: Sequence[int]) -> bool:
        key = tuple(genes)
        if key not in self._reach_cache:
            # A fixed-seed probe, not self._rng: the answer is a pure function of (space, window,
            # genes), so a resumed sampler recomputes it without disturbing its own sequence.
            self._reach_cache[key] = self._probe(np.asarray(key, dtype=np.int64), np.random.default_rng(0))
        return self._reach_cache[key]

    def _probe(self, allowed: np.ndarray, rng: np.random.Generator) -> bool:
        raise NotImplementedError

    def _sample(self, allowed: np.ndarray) -> np.ndarray:
        if not self._reachable(allowed):
            self.warmup_fallbacks += 1
            return super()._sample(allowed)
        return self._constrained(allowed)

    def _constrained(self, allowed: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomSampler(_ConstrainedSampler):
    """Rejection sampling: uniform paths until one lies inside the window (bounded tries)."""

    kind = "random"
    #: Uniform draws the reachability probe makes, and the hits it needs to call a window reachable
    #: (an acceptance rate of at least 1/2048, so a step needs ~2k draws at worst).
    PROBE_DRAWS, PROBE_HITS = 1 << 15, 16
    #: Draws one step may make before giving up.
    MAX_TRIES = 1 << 17
    _hint = ", widen it, or use the strolling sampler, which reaches narrow windows and corners"

    def __init__(self, *args, **kwargs) -> None:
        self._rate: dict[tuple[int, ...], float] = {}
        super().__init__(*args, **kwargs)

    def _probe(self, allowed: np.ndarray, rng: np.random.Generator) -> bool:
        cand = uniform_genes(rng, self.space.num_blocks, allowed, self.PROBE_DRAWS)
        hits = int(self._pricer.inside(self.window, cand).sum())
        self._rate[tuple(int(g) for g in allowed)] = hits / self.PROBE_DRAWS
        return hits >= self.PROBE_HITS

    def _constrained(self, allowed: np.ndarray) -> np.ndarray:
        # Draw in batches sized to the acceptance rate; the first hit of a sequence of i.i.d.
        # uniform draws is exactly a rejection sample.
        rate = self._rate[tuple(int(g) for g in allowed)]
        batch = int(min(8192, max(16, 4 / rate)))
        tries = 0
        while tries < self.MAX_TRIES:
            cand = uniform_genes(self._rng, self.space.num_blocks, allowed, batch)
            hit = np.flatnonzero(self._pricer.inside(self.window, cand))
            if len(hit):
                return cand[hit[0]]
            tries += batch
        reach = self._pricer.reachable(allowed)
        raise SposError(f"no path inside the window after {tries} uniform draws; "
                        + self._unreachable_message(reach, False))  # fmt: skip


class StrollingSampler(_ConstrainedSampler):
    """Strolling evolution (SPEC §4): a population that sweeps the window bin by bin.

    The MACs range of the window (clipped to what the allowed genes reach) is cut into bins of
    ``bin_macs`` (default 20M; windows narrower than 100M MACs get 10 bins instead, so the small
    preset's few-M windows are swept too). The walk visits bins 0, 1, ..., K-1, K-2, ..., 0, ...
    and at every turn moves the parameter target one level (of ``params_levels``) from the
    window's low params edge toward its high edge and back: a raster over the window.

    Each step: 10 children, each the uniform crossover of two distinct parents followed by
    per-gene mutation (p = 0.1), are drawn until 10 lie inside the window *and* the current MACs
    bin (bounded tries; if the bin is not reached, the in-window candidates nearest to it fill
    up, so the walk heads there). **Best** = nearest to the step's target: first the distance to
    the bin, then the distance of the params to the params target, then the distance of the MACs
    to the bin centre. The child at rank ``train_rank`` (0 = best) is returned for training; the
    best 5 become the parents. Every returned path lies inside the window.
    """

    kind = "strolling"
    PARENTS, CHILDREN, MUTATION = 5, 10, 0.1
    BATCH, MAX_BATCHES = 64, 32  # children drawn per step: at most 2,048

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        window: Bounds | None = None,
        warmup_start_epoch: int | None = None,
        min_channel_gene: int | None = None,
        bin_macs: float | None = None,
        params_levels: int = 5,
        train_rank: int = 0,
        latency=None,
    ) -> None:
        if bin_macs is not None and bin_macs <= 0:
            raise SposError(f"bin_macs must be positive, got {bin_macs}")
        if params_levels < 1:
            raise SposError(f"params_levels must be at least 1, got {params_levels}")
        if not 0 <= train_rank < self.CHILDREN:
            raise SposError(f"train_rank must be in 0..{self.CHILDREN - 1}, got {train_rank}")
        self.bin_macs, self.params_levels, self.train_rank = bin_macs, params_levels, train_rank
        self.parents: np.ndarray | None = None
        self._range_cache: dict[tuple[int, ...], tuple] = {}
        self.bin, self.bin_dir, self.level, self.level_dir = 0, 1, 0, 1
        super().__init__(space, seed, window, warmup_start_epoch, min_channel_gene, latency)

    def _probe(self, allowed: np.ndarray, rng: np.random.Generator) -> bool:
        return len(climb_into_window(self._pricer, self.window, allowed, rng, need=1)) > 0

    def _ranges(self, allowed: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
        """The window clipped to what ``allowed`` genes reach: (MACs lo, hi), (params lo, hi)."""
        key = tuple(int(g) for g in allowed)
        if key not in self._range_cache:
            self._range_cache[key] = self._clip(self._pricer.reachable(key))
        return self._range_cache[key]

    def _clip(self, reach):
        (m0, m1), (p0, p1) = reach
        w = self.window
        macs = (max(m0, w.min_macs or m0), min(m1, w.max_macs if w.max_macs is not None else m1))
        params = (max(p0, w.min_params or p0), min(p1, w.max_params if w.max_params is not None else p1))
        return macs, params

    def bins(self, allowed: Sequence[int]) -> list[tuple[float, float]]:
        """The MACs bins swept with ``allowed`` channel genes: (low, high) per bin."""
        (lo, hi), _ = self._ranges(np.asarray(allowed, dtype=np.int64))
        width = hi - lo
        size = self.bin_macs or (DEFAULT_BIN_MACS if width >= 5 * DEFAULT_BIN_MACS else width / 10)
        k = max(1, math.ceil(width / size - 1e-9)) if size > 0 else 1
        return [(lo + i * size, min(hi, lo + (i + 1) * size)) for i in range(k)]

    def _init_parents(self, allowed: np.ndarray) -> np.ndarray:
        n = self.space.num_blocks
        cand = uniform_genes(self._rng, n, allowed, 4096)
        found = cand[self._pricer.inside(self.window, cand)][: self.PARENTS]
        if len(found) < self.PARENTS:
            more = climb_into_window(self._pricer, self.window, allowed, self._rng, self.PARENTS - len(found))
            found = np.concatenate((found, more))
        # The probe found the window reachable, so at least one path exists; repeat to fill.
        return found[np.arange(self.PARENTS) % len(found)]

    def _constrained(self, allowed: np.ndarray) -> np.ndarray:
        n = self.space.num_blocks
        bins = self.bins(allowed)
        if self.parents is None or not np.isin(self.parents[:, n:], allowed).all():
            self.parents = self._init_parents(allowed)
            # Start the sweep where the population is, heading for the far end of the window.
            start = float(np.median(self._pricer(self.parents)[0]))
            self.bin = int(np.clip(np.searchsorted([hi for _, hi in bins], start), 0, len(bins) - 1))
            self.bin_dir = -1 if self.bin >= len(bins) / 2 else 1
        self.bin = min(self.bin, len(bins) - 1)
        b_lo, b_hi = bins[self.bin]
        (m_lo, m_hi), (p_lo, p_hi) = self._ranges(allowed)
        target = p_lo + (p_hi - p_lo) * (self.level / max(1, self.params_levels - 1))

        pool_genes = self._draw_children(allowed, b_lo, b_hi)
        macs, params = self._pricer(pool_genes)
        to_bin = np.maximum(b_lo - macs, 0) + np.maximum(macs - b_hi, 0)
        is_parent = np.arange(len(pool_genes)) < self.PARENTS
        # Parents only make up numbers when neither the bin nor the window was hit by children.
        in_bin_kids = np.flatnonzero((to_bin == 0) & ~is_parent)[: self.CHILDREN]
        if len(in_bin_kids) < self.CHILDREN:
            rest = np.setdiff1d(np.arange(len(pool_genes)), in_bin_kids)
            rest = rest[np.lexsort((is_parent[rest], to_bin[rest]))][: self.CHILDREN - len(in_bin_kids)]
            in_bin_kids = np.concatenate((in_bin_kids, rest))
        kids = pool_genes[in_bin_kids]
        scale_p = max(p_hi - p_lo, 1.0)
        scale_m = max(m_hi - m_lo, 1.0)
        order = np.lexsort((np.abs(macs[in_bin_kids] - (b_lo + b_hi) / 2) / scale_m,
                            np.abs(params[in_bin_kids] - target) / scale_p,
                            to_bin[in_bin_kids]))  # fmt: skip
        kids = kids[order]
        self.parents = kids[np.arange(self.PARENTS) % len(kids)]
        chosen = kids[min(self.train_rank, len(kids) - 1)]
        self._advance(len(bins))
        return chosen

    def _draw_children(self, allowed: np.ndarray, b_lo: float, b_hi: float) -> np.ndarray:
        """The parents, then every in-window child drawn until CHILDREN of them lie in the MACs
        bin [b_lo, b_hi] (or MAX_BATCHES batches were drawn), in draw order."""
        n, rng = self.space.num_blocks, self._rng
        pool, children = [self.parents], 0
        for _ in range(self.MAX_BATCHES):
            i = rng.integers(0, self.PARENTS, self.BATCH)
            j = (i + rng.integers(1, self.PARENTS, self.BATCH)) % self.PARENTS  # a different parent
            mix = rng.random((self.BATCH, 2 * n)) < 0.5
            kids = mutate_genes(rng, np.where(mix, self.parents[j], self.parents[i]), n, allowed, self.MUTATION)
            costs = self._pricer.costs(self.window, kids)
            ok = self.window.mask(**costs)
            in_bin = ok & (costs["macs"] >= b_lo) & (costs["macs"] <= b_hi)
            # The in-window kids that miss the bin are kept too: the fallback should the bin
            # stay out of reach.
            pool.append(kids[ok])
            children += int(in_bin.sum())
            if children >= self.CHILDREN:
                break
        return np.concatenate(pool)

    def _advance(self, k: int) -> None:
        """Ping-pong over the K bins; each turn moves the params target one level."""
        if k == 1:
            self.bin = 0
            self._next_level()
            return
        nxt = self.bin + self.bin_dir
        if not 0 <= nxt < k:  # the bin count shrank (allowed genes changed)
            self.bin_dir = -self.bin_dir
            nxt = max(0, min(k - 1, self.bin + self.bin_dir))
        self.bin = nxt
        if nxt in (0, k - 1):
            self.bin_dir = 1 if nxt == 0 else -1
            self._next_level()

    def _next_level(self) -> None:
        if self.params_levels > 1:
            if not 0 <= self.level + self.level_dir < self.params_levels:
                self.level_dir = -self.level_dir
            self.level += self.level_dir

    def _extra_state(self) -> dict:
        return {
            "parents": None if self.parents is None else self.parents.tolist(),
            "bin": self.bin, "bin_dir": self.bin_dir, "level": self.level, "level_dir": self.level_dir,
            "bin_macs": self.bin_macs, "params_levels": self.params_levels, "train_rank": self.train_rank,
        }  # fmt: skip

    def _load_extra_state(self, state: Mapping) -> None:
        parents = state["parents"]
        if parents is not None:
            parents = np.asarray(parents, dtype=np.int64)
            if parents.shape != (self.PARENTS, 2 * self.space.num_blocks):
                raise SposError(
                    f"strolling state has parents of shape {list(parents.shape)}, this search space needs "
                    f"{[self.PARENTS, 2 * self.space.num_blocks]}; resume with the same search space"
                )
        self.parents = parents
        self.bin, self.bin_dir = int(state["bin"]), int(state["bin_dir"])
        self.level, self.level_dir = int(state["level"]), int(state["level_dir"])


def build_sampler(
    space: SearchSpace,
    kind: str = "uniform",
    seed: int = 0,
    window: Bounds | None = None,
    warmup_start_epoch: int | None = None,
    min_channel_gene: int | None = None,
    latency=None,
    **options,
) -> PathSampler:
    """A path sampler of ``kind`` (uniform, random, strolling or fair); see the module
    docstring and :mod:`spos.sampling.fair`.

    ``window`` bounds MACs / params for random and strolling (uniform ignores it: it is the
    unconstrained baseline). ``warmup_start_epoch`` is the epoch channel selection starts
    (None: no warm-up); ``min_channel_gene`` the lowest channel gene ever allowed (2 = scale 0.6).
    ``latency`` is a cost model with ``predict_batch`` (a :class:`~spos.cost.latency.LatencyTable`)
    for a window with ``max_latency_ms``: the same Bounds as the search's limit the paths.
    ``options`` go to the strolling sampler (``bin_macs``, ``params_levels``, ``train_rank``).
    Raises :class:`SposError` for an unknown kind or an unreachable window.
    """
    from .fair import FairSampler

    classes = {"uniform": PathSampler, "random": RandomSampler, "strolling": StrollingSampler, "fair": FairSampler}
    if kind not in classes:
        raise SposError(f"unknown sampler {kind!r}; choose one of {', '.join(KINDS)}")
    if options and kind != "strolling":
        raise SposError(f"options {sorted(options)} apply to the strolling sampler only")
    return classes[kind](space, seed, window, warmup_start_epoch, min_channel_gene, latency=latency, **options)
