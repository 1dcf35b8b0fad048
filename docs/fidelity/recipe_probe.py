"""Stand-alone recipe probe for issue #12: does the fidelity check's ground truth (the demo's
5-epoch subnet recipe) rank archs like a longer recipe, and how do the stored supernets rank
against the longer one?

    torchrun --nproc_per_node 2 docs/fidelity/recipe_probe.py --epochs 10   # 2 ranks, 1 thread each
    python docs/fidelity/recipe_probe.py --epochs 10 --report-only          # the table, no training

Trains every random arch of ``--truth`` (a ``fidelity.json``) for ``--seeds`` seeds with the
``fashion-mnist`` preset's ``subnet`` section at ``--epochs`` epochs, through
:func:`spos.fidelity.train_standalone`: each (arch, seed) is a resumable sub-run under ``--out``,
its result goes into ``--store`` (the committed store by default, so nothing is trained twice),
and under torchrun the ranks take disjoint shares. Then it prints, for every recipe length in the
store: the noise ceiling (tau_b between the seeds), tau_b between its seed mean and this recipe's,
tau(MACs), and tau_b of every supernet score file (``docs/fidelity/seeds/*.json``) against it, and
writes all of it to ``docs/fidelity/recipe-eN.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from spos.configs import load_config
from spos.fidelity import ranking_stats, standalone_keys, train_standalone
from spos.runtime import end_distributed, init_distributed
from spos.space import Arch, SearchSpace
from spos.store import Store

ROOT = Path(__file__).resolve().parents[2]


def truth_of(store: Store, space: SearchSpace, archs: list[str], recipe: dict, seeds: int) -> np.ndarray | None:
    """archs x seeds stand-alone accuracies of ``recipe`` from the store (None if any is missing)."""
    space_hash, recipe_hash = standalone_keys(space, recipe, "builtin")
    rows = [[store.standalone(space_hash, a, recipe_hash, s, count=False) for s in range(seeds)] for a in archs]
    if any(r is None for row in rows for r in row):
        return None
    return np.array([[r["accuracy"] for r in row] for row in rows])


def tau(x, y) -> float:
    return float(kendalltau(x, y).statistic)


def report(store: Store, space: SearchSpace, truth: dict, recipe: dict, epochs: int, seeds: int) -> dict:
    archs = [r["arch"] for r in truth["rows"] if r["role"] == "random"]
    macs = [r["macs"] for r in truth["rows"] if r["role"] == "random"]
    accs = {e: truth_of(store, space, archs, {**recipe, "epochs": e}, seeds) for e in (2, 5, 10, 15, 20)}
    accs = {e: a for e, a in accs.items() if a is not None}
    mine = accs[epochs].mean(axis=1)
    out: dict = {"archs": archs, "epochs": epochs, "seeds": seeds, "recipes": {}}
    for e, a in accs.items():
        stats = ranking_stats(a.mean(axis=1), a, macs, macs, resamples=2000)
        out["recipes"][e] = {"mean_acc": float(a.mean()), "spread_points": float(100 * np.ptp(a.mean(axis=1))),
                             "seed_sd_points": float(100 * np.std(a[:, 0] - a[:, 1]) / np.sqrt(2)),
                             "noise_ceiling": stats["noise_ceiling"], "tau_macs": stats["tau_macs"],
                             "tau_vs_this": tau(a.mean(axis=1), mine), "acc": a.tolist()}  # fmt: skip
        print(f"recipe {e:2d} epochs: mean {100 * a.mean():.2f}%, archs span {100 * np.ptp(a.mean(axis=1)):.2f} "
              f"points, ceiling {stats['noise_ceiling']:+.2f}, tau(MACs) {stats['tau_macs']:+.2f}, "
              f"tau vs the {epochs}-epoch mean {out['recipes'][e]['tau_vs_this']:+.2f}")  # fmt: skip
    scores = {}
    for path in sorted(glob.glob(str(ROOT / "docs/fidelity/seeds/*.json"))):
        rows = {r["arch"]: r for r in json.loads(Path(path).read_text()).get("rows", [])}
        if not all(a in rows for a in archs):
            continue
        name = Path(path).stem
        acc = [rows[a]["supernet_acc"] for a in archs]
        loss = [-rows[a]["supernet_loss"] for a in archs]
        scores[name] = {f"e{e}": {"acc": tau(acc, a.mean(axis=1)), "loss": tau(loss, a.mean(axis=1))}
                        for e, a in accs.items()}  # fmt: skip
        print(f"{name:34s} " + "  ".join(f"e{e}: {v['acc']:+.2f} / {v['loss']:+.2f}"
                                          for e, v in ((e, scores[name][f'e{e}']) for e in accs)))  # fmt: skip
    out["supernets"] = scores
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--truth", default=str(ROOT / "docs/fidelity/fidelity.json"))
    p.add_argument("--store", default=str(ROOT / "docs/fidelity/spos-store.sqlite"))
    p.add_argument("--out", help="sub-run folder (default: runs/recipe-eN)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    preset = load_config("fashion-mnist")
    space = SearchSpace.from_options(preset["space"])
    recipe = dict(preset["subnet"])
    truth = json.loads(Path(args.truth).read_text())
    store = Store(args.store)
    if not args.report_only:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        init_distributed(torch.device("cpu"))
        jobs = [(Arch.parse(r["arch"], space.stage_depths), s) for r in truth["rows"] if r["role"] == "random"
                for s in range(args.seeds)]  # fmt: skip
        out = Path(args.out or ROOT / f"runs/recipe-e{args.epochs}")
        train_standalone(jobs, space, "builtin", {**recipe, "epochs": args.epochs}, out, store)
        end_distributed()
    if int(os.environ.get("RANK", "0")) == 0:  # the process group is gone: torchrun's rank
        result = report(store, space, truth, recipe, args.epochs, args.seeds)
        path = ROOT / f"docs/fidelity/recipe-e{args.epochs}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(path)


if __name__ == "__main__":
    main()
