"""Does a short stand-alone recipe rank archs like a longer one? (the fidelity issue's check)

    python benchmarks/recipe_agreement.py runs/demo/fidelity/fidelity.json runs/demo/fidelity-e5/fidelity.json

Both files are ``spos fidelity`` outputs over the same archs (same window, K and seeds; the
stand-alone results come from the store, so the second call trains only its own recipe). Prints,
over the archs both hold: Kendall tau_b and Spearman rho between the short recipe's mean
accuracy and the long one's, with bootstrap 95% intervals (``spos.fidelity.ranking_stats``, the
same code as the supernet's tau), each recipe's noise ceiling and seed spread, the top-3
overlap, and the supernet's tau against each recipe.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spos.fidelity import ranking_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("short", help="fidelity.json of the short recipe")
    ap.add_argument("long", help="fidelity.json of the long recipe")
    args = ap.parse_args()
    short, long = (json.loads(Path(p).read_text()) for p in (args.short, args.long))
    rows_s = {r["arch"]: r for r in short["rows"]}
    rows_l = {r["arch"]: r for r in long["rows"]}
    archs = [a for a in rows_s if a in rows_l]
    s = np.array([rows_s[a]["standalone"] for a in archs], float)
    lg = np.array([rows_l[a]["standalone"] for a in archs], float)
    macs = [rows_l[a]["macs"] for a in archs]
    params = [rows_l[a]["params"] for a in archs]
    agree = ranking_stats(s.mean(axis=1), lg, macs, params)
    own_short = ranking_stats(s.mean(axis=1), s, macs, params)
    print(f"{len(archs)} archs in both; seeds {s.shape[1]} (short) and {lg.shape[1]} (long)")
    print(f"short vs long recipe   tau_b {agree['tau']:+.3f} [{agree['tau_ci'][0]:+.2f}, {agree['tau_ci'][1]:+.2f}]"
          f"   rho {agree['rho']:+.3f} [{agree['rho_ci'][0]:+.2f}, {agree['rho_ci'][1]:+.2f}]"
          f"   top-3 overlap {agree['top_k_overlap']:.2f}")  # fmt: skip
    for name, acc, st in (("short", s, own_short), ("long", lg, agree)):
        print(f"{name:<6} recipe  mean {100 * acc.mean():.2f}%  range {100 * acc.mean(1).min():.2f}-"
              f"{100 * acc.mean(1).max():.2f}%  seed spread {100 * st['seed_spread']:.2f}%  "
              f"noise ceiling {st['noise_ceiling']:.3f}  tau(MACs) {st['tau_macs']:+.3f}")  # fmt: skip
    for name, rows in (("short", rows_s), ("long", rows_l)):
        st = ranking_stats([rows[a]["supernet_score"] for a in archs], np.array([rows[a]["standalone"] for a in archs]),
                           macs, params)  # fmt: skip
        print(f"supernet vs {name:<6} tau_b {st['tau']:+.3f} [{st['tau_ci'][0]:+.2f}, {st['tau_ci'][1]:+.2f}]")


if __name__ == "__main__":
    main()
