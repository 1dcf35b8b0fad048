"""Issue #12: could any search pass the winner goal on the search window's ground truth?

standalone_predictor_probe.py shows that a ridge regression on MACs and block types, fitted on
the store's ~100 stand-alone archs, ranks the window's 48 archs at tau ~+0.5, beyond every
supernet. This takes that predictor as the search's fitness: it prices 200,000 uniform archs,
keeps those under the demo's budget (1.2M MACs), predicts each, and trains the best-predicted
arch from scratch with the demo's 5-epoch recipe for 3 seeds (into the store, resumable: the
same sub-runs as `spos fidelity`), then places it among the 48 random archs as the fidelity
check places a search's winner (the issue's winner goal, spos.fidelity.grade_goals).

    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 --standalone docs/fidelity/predictor_search_probe.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from k32_table import stored_means  # noqa: E402
from snapshot_probe import truth  # noqa: E402
from standalone_predictor_probe import features, ridge  # noqa: E402

from spos.configs import load_config  # noqa: E402
from spos.cost.bounds import Bounds  # noqa: E402
from spos.cost.table import BatchPricer  # noqa: E402
from spos.fidelity import grade_goals, train_standalone, winner_vs_random  # noqa: E402
from spos.genes import to_arch, uniform_genes  # noqa: E402
from spos.runtime import init_distributed, rank_world  # noqa: E402
from spos.space import SearchSpace  # noqa: E402
from spos.store import Store  # noqa: E402


def main() -> None:
    init_distributed(torch.device("cpu"))
    preset = load_config("fashion-mnist")
    space = SearchSpace.from_options(preset["space"])
    recipe = dict(preset["subnet"])
    store = Store(HERE / "spos-store.sqlite")
    _, pool, means = stored_means(store.path)
    predict = ridge(features(pool, space), means, 10.0)
    rng = np.random.default_rng(0)
    genes = np.unique(uniform_genes(rng, space.num_blocks, np.asarray(space.channel_genes), 200_000), axis=0)
    pricer = BatchPricer(space)
    inside = genes[pricer.inside(Bounds(max_macs=float(preset["budget_macs"])), genes)]
    candidates = [to_arch(g, space) for g in inside]
    pred = predict(features([str(a) for a in candidates], space))
    order = np.argsort(-pred)
    best = candidates[int(order[0])]
    rank, _ = rank_world()
    if rank == 0:
        print(f"{len(pool)} stored archs fit the predictor; {len(candidates)} candidates under the budget")
        for i in order[:5]:
            print(f"  predicted {100 * pred[i]:.2f}%  {candidates[int(i)]}")
    got = train_standalone([(best, s) for s in range(3)], space, "builtin", recipe, Path("runs/predictor-search"), store)
    if rank != 0:
        return
    win = [got[(str(best), s)]["accuracy"] for s in range(3)]
    _, acc, _ = truth()
    w = winner_vs_random(win, acc)
    g = grade_goals({"tau": 0.0, "tau_ci": [0.0, 0.0], "tau_macs": 0.0, "noise_ceiling": 0.0}, w, acc)["winner"]
    print(f"predictor's pick {best}: {' / '.join(f'{100 * x:.2f}' for x in win)}% (mean {100 * np.mean(win):.2f}%), "
          f"percentile {w['percentile']:.0f} of the 48 random archs, {100 * g['margin_over_p80']:+.2f} points over "
          f"their 80th percentile (bar: the seed spread {100 * g['bar']:.2f}): {'met' if g['met'] else 'not met'}")  # fmt: skip


if __name__ == "__main__":
    main()
