"""How much of a supernet's ranking is its own training noise? Scores of the same archs from
several supernets (e.g. the same config with another seed), compared and averaged.

    python benchmarks/score_ensemble.py runs/demo/fidelity/fidelity.json \
        runs/demo/fidelity-uniform-seed1-acc/fidelity.json [--truth runs/demo/fidelity-e5/fidelity.json]

Each file is a ``spos fidelity`` output over the same random archs (the winners differ and are
left out). Prints Kendall tau_b between every pair of supernets' scores (how reproducible a
supernet's ranking is), each supernet's tau against the stand-alone mean, and the tau of the
mean score over all of them (an ensemble of supernets) with its bootstrap 95% interval. The
stand-alone accuracies are the first file's, or ``--truth``'s.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from spos.fidelity import ranking_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="fidelity.json of each supernet")
    ap.add_argument("--truth", help="fidelity.json whose stand-alone accuracies are the ground truth")
    args = ap.parse_args()
    runs = [{r["arch"]: r for r in json.loads(Path(p).read_text())["rows"] if r["role"] == "random"} for p in args.files]
    truth = {r["arch"]: r for r in json.loads(Path(args.truth or args.files[0]).read_text())["rows"]}
    archs = [a for a in runs[0] if all(a in r for r in runs) and a in truth]
    acc = np.array([truth[a]["standalone"] for a in archs], float)
    macs, params = [truth[a]["macs"] for a in archs], [truth[a]["params"] for a in archs]
    scores = np.array([[r[a]["supernet_score"] for a in archs] for r in runs], float)
    print(f"{len(archs)} random archs in all {len(runs)} files; ground truth {args.truth or args.files[0]}")
    for (i, a), (j, b) in itertools.combinations(enumerate(scores), 2):
        st = ranking_stats(a, b[:, None], macs, params)
        print(f"supernets {i} vs {j}: tau_b of their scores {st['tau']:+.3f} [{st['tau_ci'][0]:+.2f}, {st['tau_ci'][1]:+.2f}]")
    for i, s in enumerate(scores):
        st = ranking_stats(s, acc, macs, params)
        print(f"supernet {i} ({args.files[i]}): tau_b {st['tau']:+.3f} [{st['tau_ci'][0]:+.2f}, {st['tau_ci'][1]:+.2f}]")
    st = ranking_stats(scores.mean(axis=0), acc, macs, params)
    print(f"mean score of all {len(runs)}: tau_b {st['tau']:+.3f} [{st['tau_ci'][0]:+.2f}, {st['tau_ci'][1]:+.2f}]"
          f"  rho {st['rho']:+.3f}  top-3 overlap {st['top_k_overlap']:.2f}  regret {100 * st['regret']:.2f} points"
          f"  (noise ceiling {st['noise_ceiling']:.3f}, tau(MACs) {st['tau_macs']:+.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
