"""Every figure spos writes (matplotlib, Agg backend, no display needed), each saved atomically.

The figures take plain results (a sampling comparison, a search result, metrics files); this
module imports no training or search code, so any layer may draw with it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .runs import atomic_write_bytes

if TYPE_CHECKING:
    from .sampling.coverage import SamplingComparison
    from .search.config import SearchConfig
    from .search.evolution import SearchResult


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
    save_png(fig, Path(path), dpi=110)
    plt.close(fig)


def plot_search(out: Path, result: SearchResult, config: SearchConfig) -> None:
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
    save_png(fig, out / "fitness.png")
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
    save_png(fig, out / "pareto.png")
    plt.close(fig)


def save_png(fig, path: Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG via a temp file and a rename (no half-written image)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def plot_training_curves(metrics: dict[str, Path], path: Path) -> None:
    """Training loss and validation accuracy per epoch of each run in ``metrics`` (name ->
    metrics.jsonl); supernet validation shows each recalibrated path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, file in metrics.items():
        if not file.is_file():
            continue
        records = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        epochs = [r["epoch"] + 1 for r in records]
        axes[0].plot(epochs, [r["train_loss"] for r in records], "o-", label=name)
        vals = [r.get("val") or {} for r in records]
        if vals and "acc" in vals[-1]:
            axes[1].plot(epochs, [100 * v.get("acc", float("nan")) for v in vals], "o-", label=name)
        else:
            for path_name in vals[-1] if vals else []:
                axes[1].plot(epochs, [100 * v.get(path_name, {}).get("acc", float("nan")) for v in vals],
                             "o--", label=f"{name}: {path_name} path")  # fmt: skip
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("test top-1 (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def plot_fidelity(summary: dict, path: Path) -> None:
    """Supernet score vs mean stand-alone accuracy per arch (seed range as error bars, the
    search's winner marked), with τ and the MACs-only baseline in the title."""
    fig = fidelity_figure(summary)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    save_png(fig, Path(path))
    plt.close(fig)


def fidelity_figure(summary: dict):
    """The figure of :func:`plot_fidelity`, open (TensorBoard logs it too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, r = summary["rows"], summary["ranking"]
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for role, colour, marker in (("random", "tab:blue", "o"), ("winner", "tab:red", "*")):
        pick = [x for x in rows if x["role"] == role]
        if not pick:
            continue
        xs = [100 * x["supernet_score"] for x in pick]
        ys = [100 * x["standalone_mean"] for x in pick]
        lo = [100 * (x["standalone_mean"] - min(x["standalone"])) for x in pick]
        hi = [100 * (max(x["standalone"]) - x["standalone_mean"]) for x in pick]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, color=colour, ms=12 if role == "winner" else 6,
                    capsize=3, label="search winner" if role == "winner" else "random archs in the window")  # fmt: skip
    ax.set_xlabel("supernet score: BN-recalibrated held-out top-1 (%)")
    ax.set_ylabel("stand-alone test top-1 (%), mean and range over seeds")
    ax.set_title(f"Kendall τ {r['tau']:+.2f} [{r['tau_ci'][0]:.2f}, {r['tau_ci'][1]:.2f}]; "
                 f"τ(MACs) {r['tau_macs']:+.2f}\nseed ceiling {_or_nan(r['noise_ceiling']):.2f}; "
                 f"perfect ranker {_or_nan((r.get('truth') or {}).get('perfect_tau')):+.2f}",
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_family(points: list[tuple[int, float]], summary: dict, path: Path) -> None:
    """Every candidate of the pool (MACs, supernet score), its MACs-score front and each
    budget's winner, labelled with its budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    if points:
        macs, score = zip(*points)
        ax.scatter([m / 1e6 for m in macs], [100 * s for s in score], s=8, c="0.7", label="pool")
    front = sorted(summary.get("pareto") or [], key=lambda r: r["macs"])
    best, line = -float("inf"), []
    for r in front:  # the MACs-only projection of the multi-cost front
        if r["score"] > best:
            best = r["score"]
            line.append((r["macs"] / 1e6, 100 * r["score"]))
    if line:
        ax.plot(*zip(*line), "-", c="tab:blue", lw=1, label="front (MACs)")
    labels: dict[tuple, list[str]] = {}  # budgets that share a winner share one star
    for r in summary["budgets"]:
        labels.setdefault((r["macs"], r["score"]), []).append(r.get("label", r["budget"]))
    for (macs, score), names in labels.items():
        ax.scatter([macs / 1e6], [100 * score], marker="*", s=160, c="tab:red", zorder=3)
        ax.annotate("; ".join(names), (macs / 1e6, 100 * score), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)  # fmt: skip
    ax.set_xlabel("MACs (M) per image")
    ax.set_ylabel("supernet score (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _or_nan(x: float | None) -> float:
    """``x``, or NaN where it is not known (0.0 stays 0.0)."""
    return float("nan") if x is None else x
