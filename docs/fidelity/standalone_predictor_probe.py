"""Issue #12: how many stand-alone runs would a predictor need to rank the search window's archs
better than the supernet does?

The store holds every 5-epoch stand-alone result of the demo's space (seeds 0 and 1 of about a
hundred archs, from every window measured). This fits a ridge regression of an arch's mean
stand-alone accuracy on its MACs and one indicator per (block, block type), with no supernet at
all, on N archs drawn from the store, never the arch it predicts (each of the search window's
48 archs is predicted by a model that has not seen it), and prints Kendall tau_b of the
predictions against the 48 archs' 3-seed means, over 200 draws of the N training archs per N.

    python docs/fidelity/standalone_predictor_probe.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from k32_table import stored_means  # noqa: E402
from snapshot_probe import truth  # noqa: E402

from spos.cost.table import cost_table  # noqa: E402
from spos.space import Arch, SearchSpace  # noqa: E402


def features(archs: list[str], space: SearchSpace) -> np.ndarray:
    table = cost_table(space)
    rows = []
    for a in archs:
        arch = Arch.parse(a, space.stage_depths)
        rows.append([table(arch).macs / 1e6] + [float(b == c) for b in arch.blocks for c in (1, 2, 3)])
    return np.array(rows)


def ridge(x: np.ndarray, y: np.ndarray, lam: float):
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda q: ((q - mu) / sd) @ w + y.mean()


def main() -> None:
    space, pool, y_pool = stored_means()
    x_pool = features(pool, space)
    test, acc, _ = truth()
    x_test, mean = features(test, space), acc.mean(axis=1)
    print(f"{len(pool)} stored archs (2 seeds each); the 48 window archs predicted without themselves")
    rng = np.random.default_rng(0)
    for lam in (1.0, 10.0):
        cells = []
        for n in (16, 32, 48, 64, len(pool) - 1):
            taus = []
            for _ in range(200 if n < len(pool) - 1 else 1):
                pred = np.empty(len(test))
                for i, a in enumerate(test):
                    others = [j for j, p in enumerate(pool) if p != a]
                    pick = rng.choice(others, size=n, replace=False) if n < len(others) else others
                    pred[i] = ridge(x_pool[pick], y_pool[pick], lam)(x_test[i : i + 1])[0]
                taus.append(kendalltau(pred, mean)[0])
            cells.append(f"N={n}: {np.median(taus):+.2f} [{np.percentile(taus, 5):+.2f}, {np.percentile(taus, 95):+.2f}]")
        print(f"ridge {lam:g}: " + "   ".join(cells))


if __name__ == "__main__":
    main()
