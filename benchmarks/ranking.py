"""Ranking fidelity: does the supernet rank architectures like stand-alone training does?

Picks K archs spread over the MACs range of a trained supernet's space, scores each as the search
does (BN-recalibrated supernet path, top-1 on the held-out training split) and trains each from
scratch briefly on the built-in data (top-1 on the test split); prints both and Kendall's tau.

    python benchmarks/ranking.py --supernet runs/demo/supernet/final.pt [--k 10 --steps 600]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spos.cost.table import cost_table
from spos.genes import sample
from spos.nn.io import load_model
from spos.runs import load_checkpoint
from spos.search.config import SearchConfig
from spos.search.evaluator import Evaluator
from spos.search.run import load_search_data
from spos.train.config import TrainConfig
from spos.train.trainer import train


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties in either list handled), in [-1, 1]."""
    n, concordant, discordant, ties_a, ties_b = len(a), 0, 0, 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denom = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denom) if denom else 0.0


def spread_archs(space, k: int, seed: int) -> list:
    """K archs at evenly spaced MACs quantiles of 2,000 uniform samples."""
    rng = random.Random(seed)
    table = cost_table(space)
    pool = sorted((table.macs(a), str(a), a) for a in (sample(space, rng) for _ in range(2000)))
    picks = np.linspace(0, len(pool) - 1, k).round().astype(int)
    return [pool[i][2] for i in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--supernet", default="runs/demo/supernet/final.pt")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--steps", type=int, default=600, help="stand-alone training steps per arch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)

    supernet, space, _ = load_model(args.supernet)
    train_cfg = load_checkpoint(args.supernet).get("config") or {}
    search_cfg = SearchConfig(recal_images=2000, holdout=3000, batch_size=500)
    evaluator = Evaluator(supernet.eval(), load_search_data("builtin", space, search_cfg, train_cfg), 500)
    archs = spread_archs(space, args.k, args.seed)
    rows = []
    print(f"{'arch':<40}{'MACs':>10}{'supernet %':>12}{'stand-alone %':>15}{'train s':>9}")
    for arch in archs:
        est = evaluator.accuracy(arch)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            epochs = -(-args.steps * args.batch_size // 60000)  # enough epochs to hold the steps
            cfg = TrainConfig(data="builtin", space=space.to_dict(), arch=str(arch), epochs=epochs,
                              max_steps=args.steps, batch_size=args.batch_size, lr=0.1, warmup_steps=100,
                              schedule="constant", weight_decay=4e-5, label_smoothing=0.1,
                              eval_batch_size=1000, progress=False, seed=args.seed, out=tmp)  # fmt: skip
            record = train(cfg)
        secs = time.perf_counter() - t0
        alone = record["val"]["acc"]
        rows.append({"arch": str(arch), "macs": cost_table(space).macs(arch), "supernet_acc": est,
                     "standalone_acc": alone})  # fmt: skip
        print(f"{str(arch):<40}{rows[-1]['macs'] / 1e6:>9.3f}M{100 * est:>12.2f}{100 * alone:>15.2f}{secs:>9.0f}",
              flush=True)  # fmt: skip
    tau = kendall_tau([r["supernet_acc"] for r in rows], [r["standalone_acc"] for r in rows])
    tau_macs = kendall_tau([r["macs"] for r in rows], [r["standalone_acc"] for r in rows])
    print(f"Kendall tau (supernet vs stand-alone accuracy), K={len(rows)}: {tau:+.3f}")
    print(f"Kendall tau (MACs vs stand-alone accuracy, a cost-only baseline): {tau_macs:+.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "kendall_tau": tau, "kendall_tau_macs": tau_macs}, indent=2))


if __name__ == "__main__":
    main()
