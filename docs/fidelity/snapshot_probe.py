"""Issue #12: does an earlier snapshot of a supernet rank the search window's archs better?

The search window's stand-alone results follow one thing no finished supernet sees: an Xception
block as the first or second block trains slowly (about -0.35 points each after the 5-epoch
recipe, k32_table.py). A supernet part-way through its training might still show that slowness.
This scores the 43 random archs of k32_table.py (K = 32 and K = 16 draws, 3 seeds each, all in
the store) with each given checkpoint, the way the search scores (the demo's settings), and
prints tau against the 3-seed means with its interval, the tau of the early-Xception count with
the scores, and the mean score. Scores go into docs/fidelity/spos-store.sqlite keyed by the
file's hash, so a second call recomputes nothing.

    bash docs/fidelity/snapshot-epochs.sh warm0-e12-seed0     # runs/levers/V/snap-eN.pt
    python docs/fidelity/snapshot_probe.py runs/levers/warm0-e12-seed0/snap-e{2,4,6,8,10,12}.pt
    python docs/fidelity/snapshot_probe.py --mean A.pt B.pt   # also: tau of the files' mean rank
    python docs/fidelity/snapshot_probe.py --trend E2.pt E12.pt  # also: the score's trend extrapolated
    python docs/fidelity/snapshot_probe.py --route 0 OUT/b{0,1,2,3}/final.pt  # few_shot_probe.py's children
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from k32_table import SUPERNETS, early_xception, random_scores  # noqa: E402

from spos.configs import load_config  # noqa: E402
from spos.fidelity import ranking_stats, score_archs, standalone_keys  # noqa: E402
from spos.nn.io import model_from_checkpoint  # noqa: E402
from spos.runs import load_checkpoint  # noqa: E402
from spos.space import Arch, SearchSpace  # noqa: E402
from spos.store import Store, file_hash  # noqa: E402


def truth() -> tuple[list[str], np.ndarray, dict[str, dict]]:
    """The 43 archs, their stand-alone accuracies (archs x 3 seeds) and their cost rows."""
    preset = load_config("fashion-mnist")
    space = SearchSpace.from_options(preset["space"])
    space_hash, recipe_hash = standalone_keys(space, dict(preset["subnet"]), "builtin")
    store = Store(HERE / "spos-store.sqlite")
    k32, k16 = SUPERNETS["demo (2 threads)"]
    rows = {**random_scores(HERE / "seeds" / k32), **random_scores(HERE / "seeds" / k16)}
    acc = {a: [store.standalone(space_hash, a, recipe_hash, s, count=False) for s in range(3)] for a in rows}
    archs = sorted(a for a, r in acc.items() if all(r))
    return archs, np.array([[r["accuracy"] for r in acc[a]] for a in archs]), rows


def scores_of(path: Path, archs: list[str], scoring: dict) -> np.ndarray:
    ckpt = load_checkpoint(path)
    supernet, space, _ = model_from_checkpoint(ckpt, path)
    parsed = [Arch.parse(a, space.stage_depths) for a in archs]
    got = score_archs(supernet.eval(), file_hash(path), ckpt.get("config") or {}, parsed, "builtin", scoring, 0,
                      Store(HERE / "spos-store.sqlite"))  # fmt: skip
    return np.array([got[a][0][0] for a in archs])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="supernet checkpoints (final.pt, checkpoint.pt, snap-eN.pt)")
    p.add_argument("--mean", action="store_true", help="also rank by the files' mean rank (a snapshot ensemble)")
    p.add_argument("--route", type=int, metavar="BLOCK",
                   help="the files are few_shot_probe.py's children b0..b3: also score each arch by the child "
                        "of its own type at BLOCK")  # fmt: skip
    p.add_argument("--trend", action="store_true",
                   help="also rank by the last file's score extrapolated along the first-to-last change")  # fmt: skip
    args = p.parse_args()
    preset = load_config("fashion-mnist")
    search, depths = preset["search"], SearchSpace.from_options(preset["space"]).stage_depths
    scoring = {"recal_images": search["recal_images"], "holdout": search["holdout"],
               "batch_size": search["batch_size"], "seed": 0}  # fmt: skip
    archs, acc, rows = truth()
    mean = acc.mean(axis=1)
    feature = [-early_xception(a) for a in archs]
    macs, params = [rows[a]["macs"] for a in archs], [rows[a]["params"] for a in archs]
    print(f"{len(archs)} archs x 3 seeds; tau(-early Xception) {kendalltau(feature, mean)[0]:+.2f}, "
          f"tau(MACs) {kendalltau(macs, mean)[0]:+.2f}")
    print("| file | tau [95%] | tau(-early Xception) of its scores | mean score |")
    print("|---|---|---|---|")
    ranks, scores = [], []
    for path in args.files:
        score = scores_of(path, archs, scoring)
        scores.append(score)
        ranks.append(rankdata(score))
        s = ranking_stats(score, acc, macs, params)
        print(f"| {path} | {s['tau']:+.2f} [{s['tau_ci'][0]:+.2f}, {s['tau_ci'][1]:+.2f}] "
              f"| {kendalltau(feature, score)[0]:+.2f} | {100 * score.mean():.2f}% |")
    if args.mean and len(ranks) > 1:
        s = ranking_stats(np.mean(ranks, axis=0), acc, macs, params)
        print(f"| mean rank of the {len(ranks)} files | {s['tau']:+.2f} [{s['tau_ci'][0]:+.2f}, {s['tau_ci'][1]:+.2f}] | | |")

    if args.route is not None and len(scores) == 4:
        types = [Arch.parse(a, depths).blocks[args.route] for a in archs]
        s = ranking_stats(np.array([scores[t][i] for i, t in enumerate(types)]), acc, macs, params)
        print(f"| each arch by the child of its block-{args.route} type | {s['tau']:+.2f} "
              f"[{s['tau_ci'][0]:+.2f}, {s['tau_ci'][1]:+.2f}] | | |")
    if args.trend and len(scores) > 1:
        first, last = scores[0], scores[-1]
        for lam in (0.5, 1.0, 2.0, 4.0):
            tau = kendalltau(last + lam * (last - first), mean)[0]
            print(f"| last + {lam:g} x (last - first) | {tau:+.2f} | | |")
        print(f"| last - first alone | {kendalltau(last - first, mean)[0]:+.2f} | | |")


if __name__ == "__main__":
    main()
