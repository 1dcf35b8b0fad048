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
    """``report.md`` with the figures it links to (all paths relative to the run folder)."""
    from .train.config import build_space
    out = Path(config.out)
    plot_training_curves({"supernet": out / "supernet" / "metrics.jsonl",
                          "subnet": out / "subnet" / "metrics.jsonl"}, out / "training.png")  # fmt: skip
    sup_cfg = config.supernet_config()
    space, _ = build_space(sup_cfg)
    coverage = _sampling_figure(config, space, sup_cfg.window, out, sup_cfg.latency_table)
    s = summary
    rows = "\n".join(
        f"| {i + 1} | `{c['arch']}` | {100 * c['accuracy']:.2f} | {c['macs'] / 1e6:.2f} | "
        f"{c['params'] / 1e6:.3f} | {c['score']:.4f} |"
        for i, c in enumerate(s["search_top"])
    )
    cov = ", ".join(f"{k} {v:.0%}" for k, v in (coverage or {}).items())
    text = f"""# spos pipeline report

Data: `{config.data}`. Run folder: `{out}`. Reproduce with `config.yaml` and `run.json`
(spos version, git revision) in this folder and in each stage folder.

## Chosen architecture

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

## Figures

- Sampling distribution of the supernet samplers (coverage of the window: {cov or "n/a"}):
  ![sampling](sampling.png)
- Search progress: ![fitness](search/fitness.png)
- Pareto front, accuracy vs MACs and params: ![pareto](search/pareto.png)
- Training curves (supernet paths and the subnet): ![training](training.png)

## Time per stage (seconds)

{", ".join(f"{k}: {v:.0f}" for k, v in s['seconds'].items())}
"""
    atomic_write_text(out / "report.md", text)
