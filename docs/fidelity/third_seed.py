"""Issue #12: the search window's ground truth with a third stand-alone seed (no supernet work).

The 16 random archs of the search window (docs/fidelity/search-window.sh) were trained with
seeds 0 and 1; a third seed comes from

    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 --standalone docs/fidelity/recipe_probe.py \\
        --epochs 5 --seeds 3 --truth docs/fidelity/seeds/search-window/warm0-e12-seed0.json --out runs/third-seed

(16 new runs into the store). This script reads every supernet's scores of those archs from its
fidelity.json (docs/fidelity/seeds/search-window/) and the three seeds from the store, and prints
what the ground truth can resolve (spos.fidelity.truth_signal), each variant's tau_b against
the 2-seed and the 3-seed means, and the tau of its seeds' consensus (mean rank) and of every
supernet's.

    python docs/fidelity/third_seed.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata
from window_table import random_rows, variants

from spos.configs import load_config
from spos.fidelity import standalone_keys, truth_signal
from spos.space import SearchSpace
from spos.store import Store

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    preset = load_config("fashion-mnist")
    space = SearchSpace.from_options(preset["space"])
    space_hash, recipe_hash = standalone_keys(space, dict(preset["subnet"]), "builtin")
    store = Store(ROOT / "docs/fidelity/spos-store.sqlite")
    table = variants()
    archs = sorted(r["arch"] for r in random_rows(next(iter(next(iter(table.values())).values()))))
    acc = np.array([[store.standalone(space_hash, a, recipe_hash, s, count=False)["accuracy"] for s in range(3)]
                    for a in archs])  # fmt: skip
    for r in (2, 3):
        t = truth_signal(acc[:, :r])
        pairs = [kendalltau(acc[:, i], acc[:, j])[0] for i in range(r) for j in range(i + 1, r)]
        print(f"{r} seeds: archs differ by sd {100 * t['true_spread']:.2f} points, seed sd {100 * t['seed_sd']:.2f} "
              f"(ANOVA F {t['anova_f']:.2f}, p {t['anova_p']:.3f}); signal share of the means {t['signal_share']:.2f}, "
              f"a perfect ranker's tau {t['perfect_tau']:+.2f}; seed-vs-seed tau {np.mean(pairs):+.2f}")  # fmt: skip
    macs = {r["arch"]: r["macs"] for r in random_rows(next(iter(next(iter(table.values())).values())))}
    m2, m3 = acc[:, :2].mean(1), acc.mean(1)
    x = [macs[a] for a in archs]
    print(f"tau(MACs): 2 seeds {kendalltau(x, m2)[0]:+.2f}, 3 seeds {kendalltau(x, m3)[0]:+.2f}")
    print("| supernet | tau vs 2-seed means, per seed | mean | tau vs 3-seed means, per seed | mean "
          "| consensus of the seeds vs 3-seed means |")
    print("|---|---|---|---|---|---|")
    every = []
    for name, seeds in table.items():
        t2, t3, ranks = [], [], []
        for _, d in sorted(seeds.items()):
            score = {r["arch"]: r["supernet_score"] for r in random_rows(d)}
            s = [score[a] for a in archs]
            t2.append(kendalltau(s, m2)[0]), t3.append(kendalltau(s, m3)[0]), ranks.append(rankdata(s))
        every += ranks
        print(f"| {name} | {' '.join(f'{t:+.2f}' for t in t2)} | {np.mean(t2):+.2f} "
              f"| {' '.join(f'{t:+.2f}' for t in t3)} | {np.mean(t3):+.2f} | {kendalltau(np.mean(ranks, 0), m3)[0]:+.2f} |")
    # The consensus (mean rank) of every supernet above: what is left once supernet-training noise
    # is averaged away is the supernets' shared bias.
    print(f"consensus of all {len(every)} supernets vs 3-seed means: tau {kendalltau(np.mean(every, 0), m3)[0]:+.2f}")


if __name__ == "__main__":
    main()
