"""Score-correction probe for issue #12: can a small model fitted on the store's stand-alone results
correct a supernet's bias (SXB-3 and wide blocks overrated, narrow first blocks underrated)?

    python docs/fidelity/score_correction_probe.py

For each supernet's scores of the 16 random archs (``docs/fidelity/seeds/*-raw.json``), a ridge
regression of the stand-alone mean (``docs/fidelity/fidelity.json``) on the supernet score and
three arch features (number of SXB-3 blocks, block 1's channel gene, mean channel gene), all
standardised, predicts each arch with that arch left out (leave-one-out: the honest estimate
when the correction is fitted on the archs it ranks). Prints Kendall τ_b of the raw score and of
the corrected score at three ridge strengths, and of the features alone.
"""

from __future__ import annotations

import glob
import json

import numpy as np
from scipy.stats import kendalltau


def features(arch: str) -> list[float]:
    blocks, channels = ([int(g) for g in half.replace("-", "")] for half in arch.split(":"))
    return [sum(g == 3 for g in blocks), channels[0], float(np.mean(channels))]


def leave_one_out(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    pred = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mu, sd = x[keep].mean(0), x[keep].std(0) + 1e-9
        z, y_mean = (x[keep] - mu) / sd, y[keep].mean()
        w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y[keep] - y_mean))
        pred[i] = ((x[i] - mu) / sd) @ w + y_mean
    return pred


def main() -> None:
    rows = json.load(open("docs/fidelity/fidelity.json"))["rows"]
    truth = {r["arch"]: r["standalone_mean"] for r in rows if r["role"] == "random"}
    archs = sorted(truth)
    y = np.array([truth[a] for a in archs])
    f = np.array([features(a) for a in archs])
    tau = lambda s: kendalltau(s, y)[0]  # noqa: E731
    print(f"features alone, leave-one-out: tau_b {tau(leave_one_out(f, y, 1.0)):+.2f}")
    print("supernet (16 random archs)          raw    corrected, ridge 1 / 4 / 16")
    for path in sorted(glob.glob("docs/fidelity/seeds/uniform-ema*-raw.json")):
        scores = {r["arch"]: r["supernet_score"] for r in json.load(open(path))["rows"]}
        if not all(a in scores for a in archs):
            continue
        s = np.array([scores[a] for a in archs])
        x = np.column_stack([s, f])
        fixed = "  ".join(f"{tau(leave_one_out(x, y, lam)):+.2f}" for lam in (1.0, 4.0, 16.0))
        print(f"{path.split('/')[-1]:<36} {tau(s):+.2f}    {fixed}")


if __name__ == "__main__":
    main()
