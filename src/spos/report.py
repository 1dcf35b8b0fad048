"""The pipeline's ``report.md``: one page per run with the figures and tables of every stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SposError
from .plots import plot_training_curves
from .runs import (
    atomic_write_json,
    atomic_write_text,
)

if TYPE_CHECKING:
    from .pipeline import PipelineConfig


def _sampling_figure(config: PipelineConfig, space, window_dict: dict | None, out: Path,
                     latency_table: str | None = None) -> dict | None:
    """``sampling.png`` and ``sampling.json`` (drawn once); returns each sampler's coverage."""
    from .plots import plot_sampling
    from .sampling.coverage import compare_samplers

    sampling_png = out / "sampling.png"
    coverage = None
    if not sampling_png.is_file():
        from .cost.bounds import Bounds
        from .sampling.coverage import default_window
        window = Bounds(**window_dict) if window_dict else default_window(space)
        n = config.sampling_plot_samples
        latency = None
        if latency_table is not None:
            from .cost.latency import LatencyTable

            latency = LatencyTable.load(latency_table)
        try:
            comparison = compare_samplers(space, window, n=n, seed=config.seed, latency=latency)
        except SposError:
            # Rejection sampling refuses windows it rarely hits; show what training could use.
            comparison = compare_samplers(space, window, n=n, seed=config.seed, kinds=("uniform", "strolling"),
                                          latency=latency)
        plot_sampling(comparison, str(sampling_png))
        coverage = comparison.coverage
        atomic_write_json(out / "sampling.json", {"window": str(window), "coverage": coverage,
                                                  "in_window": comparison.in_window})  # fmt: skip
    elif (out / "sampling.json").is_file():
        coverage = json.loads((out / "sampling.json").read_text())["coverage"]
    return coverage


def write_report(config: PipelineConfig, summary: dict) -> None:
    """``report.md`` with the figures it links to (all paths relative to the run folder); a
    multi-budget run (``summary["family"]``) gets the family table instead of one chosen arch."""
    from .train.config import build_space
    out = Path(config.out)
    family = summary.get("family")
    subnets = {r["folder"]: r["folder"] for r in family} if family else {"subnet": "subnet"}
    plot_training_curves({"supernet": out / "supernet" / "metrics.jsonl",
                          **{name: out / folder / "metrics.jsonl" for name, folder in subnets.items()}},
                         out / "training.png")  # fmt: skip
    sup_cfg = config.supernet_config()
    space, _ = build_space(sup_cfg)
    coverage = _sampling_figure(config, space, sup_cfg.window, out, sup_cfg.latency_table)
    cov = ", ".join(f"{k} {v:.0%}" for k, v in (coverage or {}).items())
    body, figures = (_family_section(summary), _FAMILY_FIGURES) if family else (_chosen_section(summary), _SEARCH_FIGURES)
    text = f"""# spos pipeline report

Data: `{config.data}`. Run folder: `{out}`. Reproduce with `config.yaml` and `run.json`
(spos version, git revision) in this folder and in each stage folder.

{body}
## Figures

- Sampling distribution of the supernet samplers (coverage of the window: {cov or "n/a"}):
  ![sampling](sampling.png)
{figures}- Training curves (supernet paths and {"every subnet" if family else "the subnet"}): ![training](training.png)

## Time per stage (seconds)

{", ".join(f"{k}: {v:.0f}" for k, v in summary['seconds'].items())}
"""
    atomic_write_text(out / "report.md", text)


_SEARCH_FIGURES = """- Search progress: ![fitness](search/fitness.png)
- Pareto front, accuracy vs MACs and params: ![pareto](search/pareto.png)
"""
_FAMILY_FIGURES = """- The pool of supernet scores, its front and every budget's winner (stars):
  ![family](search/family.png)
"""


def _chosen_section(s: dict) -> str:
    """One budget: the chosen arch and the search's top candidates."""
    rows = "\n".join(
        f"| {i + 1} | `{c['arch']}` | {100 * c['accuracy']:.2f} | {c['macs'] / 1e6:.2f} | "
        f"{c['params'] / 1e6:.3f} | {c['score']:.4f} |"
        for i, c in enumerate(s["search_top"])
    )
    return f"""## Chosen architecture

`{s['arch']}`

| | |
|---|---|
| MACs | {s['macs']:,} ({s['macs'] / 1e6:.2f}M){f" — budget {s['budget_macs'] / 1e6:.2f}M" if s.get('budget_macs') else ""} |
| parameters | {s['params']:,} ({s['params'] / 1e6:.3f}M) |
| Σ normalized score | {s['sigma_score']:.4f} |
| MicroNet score | {s['micronet_score']:.4f} |
| supernet estimate, held-out split (search fitness) | {100 * s['supernet_holdout_acc']:.2f}% |
| supernet path on the test split (BN recalibrated) | {100 * s['supernet_test_acc']:.2f}% |
| **stand-alone, trained from scratch, test split** | **{100 * s['standalone_test_acc']:.2f}%** ({s['test_images']} images) |

## Search: top {len(s['search_top'])} of {s['evaluated_candidates']} evaluated candidates

| rank | arch | held-out top-1 (%) | MACs (M) | params (M) | Σ score |
|---|---|---|---|---|---|
{rows}
"""


def _family_section(s: dict) -> str:
    """Several budgets: budget -> winner, its costs, supernet score and stand-alone accuracy."""
    devices = sorted({d for r in s["family"] for d in (r.get("latency_ms") or {})})
    head = "| budget (M MACs) | arch | MACs (M) | params (M) | " + "".join(f"{Path(d).stem} (ms) | " for d in devices)
    head += "supernet score, held-out top-1 (%) | stand-alone test top-1 (%) |"
    rows = [head, "|" + "---|" * (6 + len(devices))]
    for r in s["family"]:
        lat = "".join(f"{r['latency_ms'][d]:.3f} | " for d in devices)
        alone = "not trained yet" if r["standalone_test_acc"] is None else f"**{100 * r['standalone_test_acc']:.2f}**"
        rows.append(f"| {r['budget_macs'] / 1e6:g} | `{r['arch']}` | {r['macs'] / 1e6:.3f} | {r['params'] / 1e6:.3f} | "
                    f"{lat}{100 * (r['accuracy'] if r.get('accuracy') is not None else r['score']):.2f} | {alone} |")  # fmt: skip
    fill = s.get("fill") or {}
    pool = f"{s['pool']} supernet scores in the store" + (f", {fill['evaluated']} of them by this run's pool search"
                                                           if fill else "")  # fmt: skip
    return f"""## The family: one winner per budget, each trained from scratch

From one pool of {pool}; each winner trained in its own folder (`subnet-<budget>/`).

{chr(10).join(rows)}
"""
