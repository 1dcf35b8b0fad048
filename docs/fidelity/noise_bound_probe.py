"""Noise-bound probe for issue #12: what Kendall τ_b could a *perfect* ranker reach against this
ground truth, and how often would it pass the τ ≥ 0.5 goal?

    python docs/fidelity/noise_bound_probe.py [--trials 20000]

The shipped check (``docs/fidelity/fidelity.json``: 16 random archs, 2 stand-alone seeds each,
5-epoch recipe) gives two variance components: the seed noise σ_w² (half the mean squared
difference of an arch's two seeds) and the spread of the archs' true accuracies σ_b² (the
variance of the two-seed means less σ_w²/2). A normal model with those components is then
sampled: K true accuracies, R noisy seeds each. Printed per (K, R): the seed-vs-seed τ (the
check's noise ceiling, to compare with the measured one), and τ_b of the true accuracies
against the R-seed mean, which is what a ranker that knew the true accuracies would score
(median, 5–95% range, and the share of draws at or above 0.5). A supernet cannot beat that
row; the gap between it and 0.5 is the part of the goal that no supernet lever can close.

Then, for K = 16 and R = 2, rankers of a given Pearson correlation ρ with the true accuracies
(score = ρ·z + √(1−ρ²)·noise, z the standardised truth): the median τ_b each scores against the
two-seed mean and its chance of reaching 0.5. Reading the measured supernet τ off that table
gives how well today's supernets know the truth, and how well one must know it to pass.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

FIDELITY = Path(__file__).with_name("fidelity.json")


def components(rows: list[dict]) -> tuple[float, float]:
    """(σ_b², σ_w²) from rows with two stand-alone seeds each (random archs only)."""
    seeds = np.array([r["standalone"] for r in rows if r["role"] == "random"], dtype=float)
    within = float(np.mean((seeds[:, 0] - seeds[:, 1]) ** 2) / 2)
    between = float(np.var(seeds.mean(1), ddof=1) - within / 2)
    return max(between, 0.0), within


def simulate(k: int, r: int, between: float, within: float, trials: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ceiling, perfect = np.empty(trials), np.empty(trials)
    for t in range(trials):
        true = rng.normal(0.0, np.sqrt(between), k)
        runs = true[:, None] + rng.normal(0.0, np.sqrt(within), (k, max(r, 2)))
        ceiling[t] = kendalltau(runs[:, 0], runs[:, 1]).statistic
        perfect[t] = kendalltau(true, runs[:, :r].mean(1)).statistic
    return {"ceiling": float(np.median(ceiling)), "perfect": float(np.median(perfect)),
            "perfect_5": float(np.quantile(perfect, 0.05)), "perfect_95": float(np.quantile(perfect, 0.95)),
            "pass": float(np.mean(perfect >= 0.5))}  # fmt: skip


def ranker(
    k: int, r: int, rho: float, between: float, within: float, trials: int, seed: int = 1
) -> tuple:
    """(median τ_b, share ≥ 0.5) of a ranker with correlation ``rho`` to the truth."""
    rng = np.random.default_rng(seed)
    taus = np.empty(trials)
    for t in range(trials):
        z = rng.normal(0.0, 1.0, k)
        runs = np.sqrt(between) * z[:, None] + rng.normal(0.0, np.sqrt(within), (k, r))
        score = rho * z + np.sqrt(1 - rho**2) * rng.normal(0.0, 1.0, k)
        taus[t] = kendalltau(score, runs.mean(1)).statistic
    return float(np.median(taus)), float(np.mean(taus >= 0.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20000)
    args = ap.parse_args()
    data = json.loads(FIDELITY.read_text())
    between, within = components(data["rows"])
    print(f"{FIDELITY.name}: {data['archs']} archs x {data['seeds']} seeds; seed noise sd {100 * np.sqrt(within):.3f} "
          f"points, true spread sd {100 * np.sqrt(between):.3f} points; measured ceiling "
          f"{data['ranking']['noise_ceiling']:+.3f}, supernet tau {data['ranking']['tau']:+.3f}")  # fmt: skip
    print(
        f"{'K':>3} {'R':>2}  {'ceiling':>7}  {'perfect ranker tau: median [5%, 95%]':>38}  {'P(tau>=0.5)':>11}"
    )
    for k, r in ((16, 1), (16, 2), (16, 3), (16, 4), (32, 2), (32, 3)):
        s = simulate(k, r, between, within, args.trials)
        print(f"{k:>3} {r:>2}  {s['ceiling']:+7.3f}  {s['perfect']:+20.3f} [{s['perfect_5']:+.3f}, {s['perfect_95']:+.3f}]"
              f"  {100 * s['pass']:10.1f}%")  # fmt: skip
    print(
        f"\nK 16, R 2: a ranker of correlation rho with the true accuracies\n{'rho':>5}  {'median tau':>10}  {'P(tau>=0.5)':>11}"
    )
    for rho in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        med, share = ranker(16, 2, rho, between, within, args.trials)
        print(f"{rho:5.1f}  {med:+10.3f}  {100 * share:10.1f}%")


if __name__ == "__main__":
    main()
