"""How evenly samplers cover a MACs/params window (what ``spos plot-sampling`` shows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..cost.bounds import Bounds
from ..cost.model import arch_genes
from ..cost.table import BatchPricer, reachable_costs
from ..errors import SposError
from ..space import SearchSpace
from .samplers import KINDS, PathSampler, build_sampler
from .schedule import usable_channel_genes

#: SPEC §4's example target window, for the oneshot layout at 224x224.
SPEC_WINDOW = Bounds(190e6, 330e6, 2.8e6, 5.0e6)


def default_window(space: SearchSpace, min_channel_gene: int | None = None) -> Bounds:
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
    return Bounds(*bounds)


def draw_genes(sampler: PathSampler, n: int, epoch: int = 0) -> np.ndarray:
    """The sampler's next ``n`` paths at ``epoch`` as an int gene array of shape (n, 2N)."""
    return arch_genes([sampler.sample(epoch) for _ in range(n)])


def _grid_cells(window: Bounds, macs: np.ndarray, params: np.ndarray, grid: int,
                extent: tuple[float, float, float, float]) -> set[tuple[int, int]]:  # fmt: skip
    inside = window.mask(macs, params)
    m0, m1, p0, p1 = extent
    i = np.clip(((macs[inside] - m0) / max(m1 - m0, 1e-9) * grid).astype(int), 0, grid - 1)
    j = np.clip(((params[inside] - p0) / max(p1 - p0, 1e-9) * grid).astype(int), 0, grid - 1)
    return set(zip(i.tolist(), j.tolist()))


def sampling_coverage(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    window: Bounds,
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
    window: Bounds
    costs: dict[str, tuple[np.ndarray, np.ndarray]]  # sampler -> (MACs, params)
    coverage: dict[str, float]
    in_window: dict[str, float]  # share of each sampler's samples inside the window
    grid: int


def compare_samplers(
    space: SearchSpace,
    window: Bounds,
    n: int = 5000,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    grid: int = 20,
    min_channel_gene: int | None = None,
    latency=None,
    **strolling_options,
) -> SamplingComparison:
    """Draw ``n`` paths from each sampler kind under ``window`` (no warm-up: all channel genes
    from ``min_channel_gene`` up) and measure how evenly each covers the window's MACs and
    params. ``latency`` (a cost model with ``predict_batch``) serves a ``max_latency_ms`` bound."""
    if n < 1:
        raise SposError(f"the number of samples must be at least 1, got {n}")
    pricer = BatchPricer(space, latency)
    costs, inside = {}, {}
    for kind in kinds:
        options = strolling_options if kind == "strolling" else {}
        sampler = build_sampler(space, kind, seed, window, None, min_channel_gene, latency=latency, **options)
        genes = draw_genes(sampler, n)
        costs[kind], inside[kind] = pricer(genes), pricer.inside(window, genes)
    # The grid spans MACs x params; a latency bound has already picked the points inside.
    grid_window = replace(window, max_latency_ms=None)
    coverage = sampling_coverage({k: (m[inside[k]], p[inside[k]]) for k, (m, p) in costs.items()}, grid_window, grid)
    in_window = {k: float(ok.mean()) for k, ok in inside.items()}
    return SamplingComparison(space, window, costs, coverage, in_window, grid)
