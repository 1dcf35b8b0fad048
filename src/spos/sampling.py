"""Path samplers for supernet training (SPEC §4).

One path is trained per step. A :class:`PathSampler` hands it out: ``sampler.sample(epoch)``.
Three kinds, all built by :func:`build_sampler`:

- ``uniform``: block genes uniform over the 4 choice blocks, channel genes uniform over the
  channel genes the warm-up allows at this epoch (:func:`allowed_channel_genes`).
- ``random``: rejection sampling from ``uniform`` until the path's costs fall inside a
  :class:`Window` of MACs and parameters.
- ``strolling``: strolling evolution. A population of 5 parents walks through the window: the MACs
  range is swept in bins (20M MACs by default), up and down, and the parameter target steps
  from the window's low edge to its high edge and back, one level per half-sweep. Each step makes
  10 children inside the current MACs bin by uniform crossover + per-gene mutation (p = 0.1),
  ranks them, trains the child at a set rank and keeps the best 5 as parents.

Costs are exact: MACs (multiply-accumulates, what SPEC tables call FLOPs) and parameters per
image from :func:`spos.costs.cost_table`, priced in batches with numpy.

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
from dataclasses import asdict, dataclass

import numpy as np

from .costs import Costs, cost_table
from .errors import SposError
from .space import BLOCK_NAMES, SCALES, Arch, SearchSpace

KINDS: tuple[str, ...] = ("uniform", "random", "strolling")

#: SPEC §4 channel-selection warm-up: (last epoch after the start, lowest allowed channel gene).
#: Gene 8 = scale 1.8, 7 = 1.6, ..., 2 = 0.6. From e = 13 on only the configured minimum applies
#: (as in the MXNet code, which allowed every scale after its last warm-up step).
WARMUP_FLOORS: tuple[tuple[int, int], ...] = ((0, 8), (1, 7), (2, 6), (3, 5), (5, 4), (8, 3), (12, 2))

#: Default MACs bin of strolling evolution (SPEC §4).
DEFAULT_BIN_MACS = 20e6


# ---- the warm-up schedule --------------------------------------------------------------------


def usable_channel_genes(space: SearchSpace, min_gene: int | None = None) -> tuple[int, ...]:
    """The space's allowed channel genes at or above ``min_gene`` (default: all of them)."""
    genes = space.channel_genes
    if min_gene is None:
        return genes
    usable = tuple(g for g in genes if g >= min_gene)
    if not 0 <= min_gene < len(SCALES) or not usable:
        allowed = ", ".join(f"{g} ({SCALES[g]})" for g in genes)
        raise SposError(
            f"minimum channel gene {min_gene} leaves no channel choice in the search space "
            f"(allowed genes: {allowed}); use one of those or leave it unset"
        )
    return usable


def allowed_channel_genes(
    space: SearchSpace,
    epoch: int,
    start_epoch: int | None,
    min_gene: int | None = None,
) -> tuple[int, ...]:
    """Channel genes a path may use at ``epoch`` under the SPEC §4 channel-selection warm-up.

    Before ``start_epoch`` only the widest allowed gene (scale 2.0 by default). With
    ``e = epoch - start_epoch``: e = 0 allows scales {1.8, 2.0}; 1 → ≥ 1.6; 2 → ≥ 1.4;
    3 → ≥ 1.2; 4–5 → ≥ 1.0; 6–8 → ≥ 0.8; 9–12 → ≥ 0.6; from 13 on every gene down to the
    minimum. Never below ``min_gene`` (default: the space's smallest allowed gene), and always
    a subset of the space's allowed genes (if the warm-up floor leaves none, the widest).
    ``start_epoch=None`` switches the warm-up off. Epochs count from 0.
    """
    usable = usable_channel_genes(space, min_gene)
    if start_epoch is None:
        return usable
    e = epoch - start_epoch
    if e < 0:
        return usable[-1:]
    for last, floor in WARMUP_FLOORS:
        if e <= last:
            chosen = tuple(g for g in usable if g >= floor)
            return chosen or usable[-1:]
    return usable


# ---- the constraint window -------------------------------------------------------------------


def _fmt(x: float | None, unit: float) -> str:
    return "any" if x is None else f"{x / unit:g}M"


@dataclass(frozen=True)
class Window:
    """Target window of per-image MACs and parameters; a ``None`` bound is open. Bounds inclusive."""

    min_macs: float | None = None
    max_macs: float | None = None
    min_params: float | None = None
    max_params: float | None = None

    def __post_init__(self) -> None:
        for lo, hi, what in ((self.min_macs, self.max_macs, "MACs"),
                             (self.min_params, self.max_params, "params")):  # fmt: skip
            if (lo is not None and lo < 0) or (hi is not None and hi < 0):
                raise SposError(f"the {what} window {_fmt(lo, 1e6)}..{_fmt(hi, 1e6)} has a negative bound")
            if lo is not None and hi is not None and lo > hi:
                raise SposError(
                    f"the {what} window is empty: minimum {lo / 1e6:g}M > maximum {hi / 1e6:g}M; "
                    f"swap the bounds"
                )

    def contains(self, costs: Costs) -> bool:
        """Whether ``costs`` (anything with ``.macs`` and ``.params``) lies inside the window."""
        return bool(self.mask(np.asarray([costs.macs]), np.asarray([costs.params]))[0])

    def mask(self, macs: np.ndarray, params: np.ndarray) -> np.ndarray:
        """Element-wise :meth:`contains` over arrays of MACs and parameters."""
        ok = np.ones(np.shape(macs), dtype=bool)
        if self.min_macs is not None:
            ok &= macs >= self.min_macs
        if self.max_macs is not None:
            ok &= macs <= self.max_macs
        if self.min_params is not None:
            ok &= params >= self.min_params
        if self.max_params is not None:
            ok &= params <= self.max_params
        return ok

    @property
    def is_open(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def __str__(self) -> str:
        return (f"MACs {_fmt(self.min_macs, 1e6)}..{_fmt(self.max_macs, 1e6)}, "
                f"params {_fmt(self.min_params, 1e6)}..{_fmt(self.max_params, 1e6)}")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


# ---- batched pricing -------------------------------------------------------------------------


class _Pricer:
    """Exact MACs / params of many candidates at once from the lookup table's numpy arrays.

    Candidates are int arrays of shape (B, 2N): N block genes then N channel genes.
    """

    def __init__(self, space: SearchSpace) -> None:
        table = cost_table(space)
        self.n = space.num_blocks
        self.block_macs = table.block_macs
        self.block_params = table.block_params
        self.base_macs = table.stem.macs + table.head.macs
        self.base_params = table.stem.params + table.head.params
        self._pos = np.arange(self.n)

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, c = genes[:, : self.n], genes[:, self.n :]
        macs = self.base_macs + self.block_macs[self._pos, b, c].sum(axis=1)
        params = self.base_params + self.block_params[self._pos, b, c].sum(axis=1)
        return macs, params

    def reachable(self, genes: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """Exact (min, max) MACs and (min, max) params over paths using channel ``genes``."""
        g = list(genes)
        m = self.block_macs[:, :, g].reshape(self.n, -1)
        p = self.block_params[:, :, g].reshape(self.n, -1)
        return ((int(self.base_macs + m.min(1).sum()), int(self.base_macs + m.max(1).sum())),
                (int(self.base_params + p.min(1).sum()), int(self.base_params + p.max(1).sum())))  # fmt: skip


def reachable_costs(
    space: SearchSpace, channel_genes: Sequence[int] | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Exact ((min, max) MACs, (min, max) params) of paths using ``channel_genes`` (default: all
    the space allows). Each bound is reached by some path; not every pair of values is."""
    return _Pricer(space).reachable(channel_genes if channel_genes is not None else space.channel_genes)


def _uniform_genes(rng: np.random.Generator, n: int, allowed: np.ndarray, size: int) -> np.ndarray:
    blocks = rng.integers(0, len(BLOCK_NAMES), (size, n))
    channels = allowed[rng.integers(0, len(allowed), (size, n))]
    return np.concatenate((blocks, channels), axis=1)


def _mutate(rng: np.random.Generator, genes: np.ndarray, n: int, allowed: np.ndarray, prob: float) -> np.ndarray:
    fresh = _uniform_genes(rng, n, allowed, len(genes))
    return np.where(rng.random(genes.shape) < prob, fresh, genes)


def _to_arch(genes: np.ndarray, space: SearchSpace) -> Arch:
    n = space.num_blocks
    return Arch(tuple(int(g) for g in genes[:n]), tuple(int(g) for g in genes[n:]), space.stage_depths)


def _violation(window: Window, macs: np.ndarray, params: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """How far outside the window, in units of the window's size on each axis (0 inside)."""
    v = np.zeros(np.shape(macs), dtype=float)
    for x, lo, hi, s in ((macs, window.min_macs, window.max_macs, scale[0]),
                         (params, window.min_params, window.max_params, scale[1])):  # fmt: skip
        if lo is not None:
            v += np.maximum(lo - x, 0) / s
        if hi is not None:
            v += np.maximum(x - hi, 0) / s
    return v


def _climb_into_window(
    pricer: _Pricer,
    window: Window,
    allowed: np.ndarray,
    rng: np.random.Generator,
    need: int,
    iterations: int = 200,
    batch: int = 256,
) -> np.ndarray:
    """Up to ``need`` in-window candidates found by evolving uniform ones toward the window.

    Rejection sampling rarely reaches a window's corners; minimising the distance to the window
    by mutation does, because costs are sums over positions. Returns shape (k, 2N), k <= need.
    """
    n = pricer.n
    reach = pricer.reachable(allowed)
    scale = tuple(max(float(hi - lo), 1.0) for lo, hi in reach)
    pop = _uniform_genes(rng, n, allowed, batch)
    found: list[np.ndarray] = []
    for _ in range(iterations):
        v = _violation(window, *pricer(pop), scale)
        found.extend(pop[v == 0])
        if len(found) >= need:
            break
        elite = pop[np.argsort(v, kind="stable")[:16]]
        pop = np.concatenate((elite, _mutate(rng, elite[rng.integers(0, len(elite), batch)], n, allowed, 0.1)))
    return np.asarray(found[:need], dtype=np.int64).reshape(-1, 2 * n)


# ---- RNG state as checkpoint-safe values ----------------------------------------------------


def _rng_state(rng: np.random.Generator) -> dict:
    s = rng.bit_generator.state
    # PCG64's 128-bit integers go in as decimal strings: plain, exact, weights_only-safe.
    return {"bit_generator": s["bit_generator"], "state": str(s["state"]["state"]),
            "inc": str(s["state"]["inc"]), "has_uint32": int(s["has_uint32"]),
            "uinteger": int(s["uinteger"])}  # fmt: skip


def _set_rng_state(rng: np.random.Generator, d: Mapping) -> None:
    rng.bit_generator.state = {
        "bit_generator": str(d["bit_generator"]),
        "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]),
        "uinteger": int(d["uinteger"]),
    }


# ---- samplers --------------------------------------------------------------------------------


class PathSampler:
    """Uniform path sampler with the channel-selection warm-up; base of the constrained ones.

    ``sample(epoch)`` returns the path for one training step. Build it with :func:`build_sampler`.
    """

    kind = "uniform"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        window: Window | None = None,
        warmup_start_epoch: int | None = None,
        min_channel_gene: int | None = None,
    ) -> None:
        self.space = space
        self.seed = int(seed)
        self.window = window
        self.warmup_start_epoch = warmup_start_epoch
        self.min_channel_gene = min_channel_gene
        self.full_genes = usable_channel_genes(space, min_channel_gene)  # validates min_channel_gene
        self._pricer = _Pricer(space)
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
        return _to_arch(genes, self.space)

    def _sample(self, allowed: np.ndarray) -> np.ndarray:
        return _uniform_genes(self._rng, self.space.num_blocks, allowed, 1)[0]

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue the sequence exactly: ints, strings and lists only."""
        return {"kind": self.kind, "seed": self.seed, "count": self.count,
                "warmup_fallbacks": self.warmup_fallbacks, "rng": _rng_state(self._rng),
                **self._extra_state()}  # fmt: skip

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("kind") != self.kind:
            raise SposError(
                f"sampler state is for a {state.get('kind')!r} sampler, this one is {self.kind!r}; "
                f"resume with the same sampler kind"
            )
        try:
            _set_rng_state(self._rng, state["rng"])
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

    def __init__(self, space: SearchSpace, seed: int = 0, window: Window | None = None,
                 warmup_start_epoch: int | None = None, min_channel_gene: int | None = None) -> None:  # fmt: skip
        if window is None or window.is_open:
            raise SposError(
                f"the {self.kind} sampler needs a window: set at least one of min/max MACs and "
                f"min/max params (or use the uniform sampler)"
            )
        super().__init__(space, seed, window, warmup_start_epoch, min_channel_gene)
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
        cand = _uniform_genes(rng, self.space.num_blocks, allowed, self.PROBE_DRAWS)
        hits = int(self.window.mask(*self._pricer(cand)).sum())
        self._rate[tuple(int(g) for g in allowed)] = hits / self.PROBE_DRAWS
        return hits >= self.PROBE_HITS

    def _constrained(self, allowed: np.ndarray) -> np.ndarray:
        # Draw in batches sized to the acceptance rate; the first hit of a sequence of i.i.d.
        # uniform draws is exactly a rejection sample.
        rate = self._rate[tuple(int(g) for g in allowed)]
        batch = int(min(8192, max(16, 4 / rate)))
        tries = 0
        while tries < self.MAX_TRIES:
            cand = _uniform_genes(self._rng, self.space.num_blocks, allowed, batch)
            hit = np.flatnonzero(self.window.mask(*self._pricer(cand)))
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
        window: Window | None = None,
        warmup_start_epoch: int | None = None,
        min_channel_gene: int | None = None,
        bin_macs: float | None = None,
        params_levels: int = 5,
        train_rank: int = 0,
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
        super().__init__(space, seed, window, warmup_start_epoch, min_channel_gene)

    def _probe(self, allowed: np.ndarray, rng: np.random.Generator) -> bool:
        return len(_climb_into_window(self._pricer, self.window, allowed, rng, need=1)) > 0

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
        cand = _uniform_genes(self._rng, n, allowed, 4096)
        found = cand[self.window.mask(*self._pricer(cand))][: self.PARENTS]
        if len(found) < self.PARENTS:
            more = _climb_into_window(self._pricer, self.window, allowed, self._rng, self.PARENTS - len(found))
            found = np.concatenate((found, more))
        # The probe found the window reachable, so at least one path exists; repeat to fill.
        return found[np.arange(self.PARENTS) % len(found)]

    def _constrained(self, allowed: np.ndarray) -> np.ndarray:
        n, rng, w = self.space.num_blocks, self._rng, self.window
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

        pool, children = [self.parents], 0
        for _ in range(self.MAX_BATCHES):
            i = rng.integers(0, self.PARENTS, self.BATCH)
            j = (i + rng.integers(1, self.PARENTS, self.BATCH)) % self.PARENTS  # a different parent
            mix = rng.random((self.BATCH, 2 * n)) < 0.5
            kids = _mutate(rng, np.where(mix, self.parents[j], self.parents[i]), n, allowed, self.MUTATION)
            macs, params = self._pricer(kids)
            ok = w.mask(macs, params)
            in_bin = ok & (macs >= b_lo) & (macs <= b_hi)
            # Keep the first CHILDREN in-bin kids in draw order, plus every in-window kid as a
            # fallback should the bin stay out of reach.
            pool.append(kids[ok])
            children += int(in_bin.sum())
            if children >= self.CHILDREN:
                break
        pool_genes = np.concatenate(pool)
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
    window: Window | None = None,
    warmup_start_epoch: int | None = None,
    min_channel_gene: int | None = None,
    **options,
) -> PathSampler:
    """A path sampler of ``kind`` (uniform, random or strolling); see the module docstring.

    ``window`` bounds MACs / params for random and strolling (uniform ignores it: it is the
    unconstrained baseline). ``warmup_start_epoch`` is the epoch channel selection starts
    (None: no warm-up); ``min_channel_gene`` the lowest channel gene ever allowed (2 = scale 0.6).
    ``options`` go to the strolling sampler (``bin_macs``, ``params_levels``, ``train_rank``).
    Raises :class:`SposError` for an unknown kind or an unreachable window.
    """
    classes = {"uniform": PathSampler, "random": RandomSampler, "strolling": StrollingSampler}
    if kind not in classes:
        raise SposError(f"unknown sampler {kind!r}; choose one of {', '.join(KINDS)}")
    if options and kind != "strolling":
        raise SposError(f"options {sorted(options)} apply to the strolling sampler only")
    return classes[kind](space, seed, window, warmup_start_epoch, min_channel_gene, **options)


# ---- comparing samplers: coverage of the window -------------------------------------------

#: SPEC §4's example target window, for the oneshot layout at 224x224.
SPEC_WINDOW = Window(190e6, 330e6, 2.8e6, 5.0e6)


def default_window(space: SearchSpace, min_channel_gene: int | None = None) -> Window:
    """SPEC §4's 190–330M MACs / 2.8–5.0M params for the oneshot space at 224×224 (1000 classes);
    for any other space the window at the same relative position inside what it reaches."""
    if space == SearchSpace():
        return SPEC_WINDOW
    ref = reachable_costs(SearchSpace(), usable_channel_genes(SearchSpace(), min_channel_gene))
    own = reachable_costs(space, usable_channel_genes(space, min_channel_gene))
    spec = ((SPEC_WINDOW.min_macs, SPEC_WINDOW.max_macs), (SPEC_WINDOW.min_params, SPEC_WINDOW.max_params))
    bounds = []
    for (r0, r1), (o0, o1), (s0, s1) in zip(ref, own, spec):
        for s in (s0, s1):
            bounds.append(round(o0 + (s - r0) / (r1 - r0) * (o1 - o0)))
    return Window(*bounds)


def draw_costs(sampler: PathSampler, n: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MACs and parameters (int64 arrays) of the sampler's next ``n`` paths at ``epoch``."""
    table = cost_table(sampler.space)
    costs = [table(sampler.sample(epoch)) for _ in range(n)]
    return (np.fromiter((c.macs for c in costs), np.int64, n),
            np.fromiter((c.params for c in costs), np.int64, n))  # fmt: skip


def _grid_cells(window: Window, macs: np.ndarray, params: np.ndarray, grid: int,
                extent: tuple[float, float, float, float]) -> set[tuple[int, int]]:  # fmt: skip
    inside = window.mask(macs, params)
    m0, m1, p0, p1 = extent
    i = np.clip(((macs[inside] - m0) / max(m1 - m0, 1e-9) * grid).astype(int), 0, grid - 1)
    j = np.clip(((params[inside] - p0) / max(p1 - p0, 1e-9) * grid).astype(int), 0, grid - 1)
    return set(zip(i.tolist(), j.tolist()))


def sampling_coverage(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    window: Window,
    grid: int = 20,
) -> dict[str, float]:
    """Coverage of the window per sampler: the share of grid cells it occupied among the cells
    any sampler occupied.

    ``points`` maps a sampler name to its (MACs, params) arrays. The window is cut into
    ``grid`` × ``grid`` cells; open bounds take the extreme value any sampler reached. Points
    outside the window occupy no cell.
    """
    if grid < 1:
        raise SposError(f"the coverage grid needs at least 1 cell per side, got {grid}")
    allm = np.concatenate([np.asarray(m) for m, _ in points.values()])
    allp = np.concatenate([np.asarray(p) for _, p in points.values()])
    inside = window.mask(allm, allp)
    if not inside.any():
        return {name: 0.0 for name in points}

    def bound(v: float | None, data: np.ndarray, f) -> float:
        return float(v) if v is not None else float(f(data[inside]))

    extent = (bound(window.min_macs, allm, np.min), bound(window.max_macs, allm, np.max),
              bound(window.min_params, allp, np.min), bound(window.max_params, allp, np.max))  # fmt: skip
    cells = {name: _grid_cells(window, np.asarray(m), np.asarray(p), grid, extent)
             for name, (m, p) in points.items()}  # fmt: skip
    union = set().union(*cells.values())
    return {name: len(c) / len(union) for name, c in cells.items()}


@dataclass
class SamplingComparison:
    """Samples of several samplers under one window (what ``spos plot-sampling`` shows)."""

    space: SearchSpace
    window: Window
    costs: dict[str, tuple[np.ndarray, np.ndarray]]  # sampler -> (MACs, params)
    coverage: dict[str, float]
    in_window: dict[str, float]  # share of each sampler's samples inside the window
    grid: int


def compare_samplers(
    space: SearchSpace,
    window: Window,
    n: int = 5000,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    grid: int = 20,
    min_channel_gene: int | None = None,
    **strolling_options,
) -> SamplingComparison:
    """Draw ``n`` paths from each sampler kind under ``window`` (no warm-up: all channel genes
    from ``min_channel_gene`` up) and measure how evenly each covers the window."""
    if n < 1:
        raise SposError(f"the number of samples must be at least 1, got {n}")
    costs = {}
    for kind in kinds:
        options = strolling_options if kind == "strolling" else {}
        sampler = build_sampler(space, kind, seed, window, None, min_channel_gene, **options)
        costs[kind] = draw_costs(sampler, n)
    in_window = {k: float(window.mask(m, p).mean()) for k, (m, p) in costs.items()}
    return SamplingComparison(space, window, costs, sampling_coverage(costs, window, grid), in_window, grid)


def plot_sampling(result: SamplingComparison, path: str) -> None:
    """Save a MACs-vs-params scatter of ``result`` (one panel per sampler) with the window drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    kinds = list(result.costs)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.5), sharex=True, sharey=True,
                             squeeze=False)  # fmt: skip
    w = result.window
    allm = np.concatenate([m for m, _ in result.costs.values()]) / 1e6
    allp = np.concatenate([p for _, p in result.costs.values()]) / 1e6
    m0 = w.min_macs / 1e6 if w.min_macs is not None else allm.min()
    m1 = w.max_macs / 1e6 if w.max_macs is not None else allm.max()
    p0 = w.min_params / 1e6 if w.min_params is not None else allp.min()
    p1 = w.max_params / 1e6 if w.max_params is not None else allp.max()
    for ax, kind in zip(axes[0], kinds):
        m, p = result.costs[kind]
        ax.scatter(m / 1e6, p / 1e6, s=2, alpha=0.3, color="tab:blue", rasterized=True)
        ax.add_patch(Rectangle((m0, p0), m1 - m0, p1 - p0, fill=False, color="tab:red", lw=1.5))
        ax.set_title(f"{kind}: coverage {result.coverage[kind]:.0%}, in window {result.in_window[kind]:.0%}")
        ax.set_xlabel("MACs (M)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("parameters (M)")
    fig.suptitle(f"{len(next(iter(result.costs.values()))[0])} paths per sampler; window {w}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
