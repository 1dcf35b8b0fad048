"""The search-window lever table of docs/fidelity.md from the fidelity.json files of
docs/fidelity/window-lever.sh and docs/fidelity/search-window.sh (no training, no scoring).

    python docs/fidelity/window_table.py [VARIANT ...]   # default: every variant found
    python docs/fidelity/window_table.py --folder docs/fidelity/seeds/maps   # the maps space's seeds
"""

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

FOLDER = Path(__file__).parent / "seeds" / "search-window"
#: The baseline's files (docs/fidelity/search-window.sh): the demo (seed 0) and seeds 1-3 of the
#: same 12-epoch uniform supernet, warm-up from epoch 3.
BASELINE = {"demo-e12.json": 0, "e12-seed1-raw.json": 1, "e12-seed2-raw.json": 2, "e12-seed3-raw.json": 3}


def variants(folder: Path = FOLDER) -> dict[str, dict[int, dict]]:
    found: dict[str, dict[int, dict]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        if path.name in BASELINE:
            found["baseline (warm-up from epoch 3)"][BASELINE[path.name]] = json.loads(path.read_text())
        elif m := re.fullmatch(r"(.+)-seed(\d+)\.json", path.name):
            found[m[1]][int(m[2])] = json.loads(path.read_text())
    return found


def random_rows(d: dict) -> list[dict]:
    """A fidelity.json's rows of the random archs (not the winner)."""
    return [r for r in d["rows"] if r["role"] == "random"]


def narrow_gene_gap(d: dict) -> float:
    """Mean supernet score of the random archs with a 0.6-scale block minus those without (points)."""
    rows = random_rows(d)
    narrow = np.array(["2" in r["arch"].split(":")[1] for r in rows])
    score = np.array([r["supernet_acc"] for r in rows]) * 100
    return float(score[narrow].mean() - score[~narrow].mean())


def main(names: list[str], folder: Path = FOLDER) -> None:
    table = variants(folder)
    agreement = {}
    print("| supernet | seed | tau_b, 16 random + winner [95%] | tau, 16 random | tau(MACs) | ceiling "
          "| score gap, 0.6-scale archs | winner | stand-alone | percentile [95%] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names or list(table):
        seeds = table[name]
        taus, taus16, pcts = [], [], []
        for seed, d in sorted(seeds.items()):
            r, w = d["ranking"], d["search_vs_random"]
            rows = random_rows(d)
            t16 = kendalltau([x["supernet_score"] for x in rows], [x["standalone_mean"] for x in rows])[0]
            taus.append(r["tau"]), taus16.append(t16), pcts.append(w["percentile"])
            lo, hi = r["tau_ci"]
            plo, phi = w["percentile_ci"]
            print(f"| {name} | {seed} | {r['tau']:+.2f} [{lo:+.2f}, {hi:+.2f}] | {t16:+.2f} | {r['tau_macs']:+.2f} "
                  f"| {r['noise_ceiling']:.2f} | {narrow_gene_gap(d):+.2f} | `{w['winner']}` | {100 * w['winner_mean']:.2f}% "
                  f"| {w['percentile']:.0f} [{plo:.0f}, {phi:.0f}] |")
        print(f"| **{name}, mean** | {len(seeds)} seeds | **{np.mean(taus):+.2f}** | {np.mean(taus16):+.2f} | | | | | "
              f"| {np.mean(pcts):.0f} |")
        agreement[name] = seed_agreement(list(seeds.values()))
    for name, (pairwise, consensus) in agreement.items():
        print(f"{name}: seeds' scores agree at tau {pairwise:+.2f} (mean over pairs); "
              f"their mean z-score ranks at tau {consensus:+.2f}")


def seed_agreement(runs: list[dict]) -> tuple[float, float]:
    """Mean Kendall tau between the seeds' supernet scores of the 16 random archs, and the tau of
    their z-scored mean (a consensus of the seeds) against the stand-alone means."""
    rows = [{r["arch"]: r for r in random_rows(d)} for d in runs]
    archs = sorted(rows[0])
    scores = np.array([[r[a]["supernet_score"] for a in archs] for r in rows])
    truth = [rows[0][a]["standalone_mean"] for a in archs]
    pairs = [kendalltau(scores[i], scores[j])[0] for i in range(len(rows)) for j in range(i + 1, len(rows))]
    z = (scores - scores.mean(1, keepdims=True)) / scores.std(1, keepdims=True)
    return float(np.mean(pairs)) if pairs else float("nan"), float(kendalltau(z.mean(0), truth)[0])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="variant names (default: every one found)")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="the fidelity.json files (default: %(default)s)")
    args = parser.parse_args()
    main(args.variants, args.folder)
