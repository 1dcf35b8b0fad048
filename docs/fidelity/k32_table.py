"""Issue #12: the search window's ground truth with 48 archs x 3 seeds (no training, no scoring).

The K = 32 check of the demo's supernet,

    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 --standalone -m spos fidelity --pipeline runs/demo \\
        --archs 32 --seeds 3 --store docs/fidelity/spos-store.sqlite --out runs/demo/fidelity-k32

(its fidelity.json copied to docs/fidelity/seeds/k32/demo.json), the same 32 archs scored by the
shipped preset's four lever seeds (`ARCHS=32 SEEDS=3 SEARCH=pipeline OUT=docs/fidelity/seeds/k32
bash docs/fidelity/window-lever.sh warm0-e12 0 1 2 3`), and the 16 archs of the K = 16 check
(docs/fidelity/seeds/search-window/, a third seed from third_seed.py) are 48 random archs drawn
the same way from the same window. This script reads each supernet's scores from those files and
the three stand-alone seeds of each arch from the store, and prints what the ground truth
resolves, each supernet's tau with its interval, the cost baselines, one arch feature that the
stand-alone results follow, and the issue's goals graded on the 48 archs.

    python docs/fidelity/k32_table.py
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata

from spos.configs import load_config
from spos.fidelity import (
    blind_spots,
    grade_goals,
    ranking_stats,
    standalone_keys,
    truth_signal,
    winner_vs_random,
)
from spos.space import Arch, SearchSpace
from spos.store import Store

HERE = Path(__file__).resolve().parent
#: supernet -> (its K = 32 file, its K = 16 file)
SUPERNETS = {"demo (2 threads)": ("k32/demo.json", "search-window/demo-warm0.json"),
             "demo, 2026-12-07 (2 threads)": ("k32/demo-amd-1207.json", "search-window/demo-amd-1207.json"),
             **{f"warm0-e12 seed {s} (1 thread)": (f"k32/warm0-e12-seed{s}.json", f"search-window/warm0-e12-seed{s}.json")
                for s in range(4)}}  # fmt: skip


def early_xception(arch: str) -> int:
    """How many of the first two blocks are Xception blocks (block choice 3)."""
    return sum(b == "3" for b in arch.split(":")[0].replace("-", "")[:2])


def random_scores(path: Path) -> dict[str, dict]:
    return {r["arch"]: r for r in json.loads(path.read_text())["rows"] if r["role"] == "random"}


def main() -> None:
    preset = load_config("fashion-mnist")
    space = SearchSpace.from_options(preset["space"])
    space_hash, recipe_hash = standalone_keys(space, dict(preset["subnet"]), "builtin")
    store = Store(HERE / "spos-store.sqlite")

    def seeds(arch: str) -> list[float]:
        """The arch's stand-alone accuracies for seeds 0, 1, 2 as far as they are stored."""
        runs = (store.standalone(space_hash, arch, recipe_hash, s, count=False) for s in range(3))
        return [r["accuracy"] for r in runs if r is not None]

    found = {name: (random_scores(HERE / "seeds" / a), random_scores(HERE / "seeds" / b))
             for name, (a, b) in SUPERNETS.items() if (HERE / "seeds" / a).is_file()}  # fmt: skip
    # While the K = 32 runs are under way, the archs whose three seeds are all stored.
    k32, k16 = ([x for x in sorted(d) if len(seeds(x)) == 3] for d in next(iter(found.values())))
    sets = {f"K=32 ({len(k32)} done)": k32, "K=16": k16, f"all ({len(k32) + len(k16)})": k32 + k16}
    demo = json.loads((HERE / "seeds" / SUPERNETS["demo (2 threads)"][0]).read_text())
    winner = next(r for r in demo["rows"] if r["role"] == "winner")["arch"]
    win = seeds(winner)
    print(f"winner {winner}: {' / '.join(f'{100 * x:.2f}' for x in win)} (seeds 0-{len(win) - 1})")
    rows = next(iter(found.values()))
    costs = {**rows[0], **rows[1]}
    print("| archs | archs' sd / a run's sd | ANOVA p | perfect ranker | noise ceiling | tau(MACs) [95%] "
          "| tau(params) | tau(-early Xception) | winner percentile, margin over p80 | share of the window that passes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    acc, last = {}, list(sets)[-1]
    for name, archs in sets.items():
        acc[name] = a = np.array([seeds(x) for x in archs])
        stats = ranking_stats([costs[x]["macs"] for x in archs], a, [costs[x]["macs"] for x in archs],
                              [costs[x]["params"] for x in archs])  # fmt: skip
        t = stats["truth"] = truth_signal(a)
        w = grade_goals(stats, winner_vs_random(win, a), a)["winner"]
        feature = kendalltau([-early_xception(x) for x in archs], a.mean(axis=1))[0]
        print(f"| {name} | {100 * t['true_spread']:.2f} / {100 * t['seed_sd']:.2f} | {t['anova_p']:.3f} "
              f"| {t['perfect_tau']:+.2f} | {stats['noise_ceiling']:+.2f} "
              f"| {stats['tau_macs']:+.2f} [{stats['tau_macs_ci'][0]:+.2f}, {stats['tau_macs_ci'][1]:+.2f}] "
              f"| {stats['tau_params']:+.2f} | {feature:+.2f} | {w['percentile']:.0f}, {100 * w['margin_over_p80']:+.2f} "
              f"points (bar {100 * w['bar']:.2f}) | {100 * w['reach']['share']:.2g}% |")  # fmt: skip
    print()
    print("| supernet | tau, K=32 [95%] | tau, K=16 | tau, all [95%] | goal tau on all (bar) "
          "| tau(-early Xception) of its scores |")
    print("|---|---|---|---|---|---|")
    ranks = []
    for name, (s32, s16) in found.items():
        scores = {**s32, **s16}
        cells = []
        for key in sets:
            archs = sets[key]
            score = [scores[x]["supernet_score"] for x in archs]
            stats = ranking_stats(score, acc[key], [costs[x]["macs"] for x in archs], [costs[x]["params"] for x in archs])
            cells.append(stats)
        ranks.append(rankdata([scores[x]["supernet_score"] for x in sets[last]]))
        g = grade_goals(cells[2], None, acc[last])["tau"]
        bias = kendalltau([-early_xception(x) for x in sets[last]], ranks[-1])[0]
        print(f"| {name} | {cells[0]['tau']:+.2f} [{cells[0]['tau_ci'][0]:+.2f}, {cells[0]['tau_ci'][1]:+.2f}] "
              f"| {cells[1]['tau']:+.2f} | {cells[2]['tau']:+.2f} [{cells[2]['tau_ci'][0]:+.2f}, "
              f"{cells[2]['tau_ci'][1]:+.2f}] | {'met' if g['met'] else 'not met'} ({g['bar']:.2f}) | {bias:+.2f} |")  # fmt: skip
    print("\nwhat each supernet sees of the block choices that move stand-alone accuracy (all the archs, "
          "MACs held fixed; spos fidelity's `choice effects`):")
    parsed = [Arch.parse(x, space.stage_depths) for x in sets[last]]
    for name, (s32, s16) in found.items():
        scores = {**s32, **s16}
        spots = blind_spots(parsed, acc[last].mean(axis=1), [scores[x]["supernet_score"] for x in sets[last]],
                            [costs[x]["macs"] for x in sets[last]])  # fmt: skip
        print(f"  {name}: " + "; ".join(f"block {e['block']} {e['name']} {100 * e['standalone']:+.2f} stand-alone, "
                                        f"{100 * e['supernet']:+.2f} (p {e['supernet_p']:.2g}) supernet" for e in spots))
    mean48 = acc[last].mean(axis=1)
    print(f"consensus (mean rank) of the {len(ranks)} supernets on all the archs: tau "
          f"{kendalltau(np.mean(ranks, axis=0), mean48)[0]:+.2f}")
    block_effects(store, space)


def block_effects(store: Store, space: SearchSpace) -> None:
    """Least squares of every stored arch's stand-alone mean (seeds 0 and 1, this recipe) on its
    MACs and one indicator per (block, choice), choice 0 (ShuffleNet 3x3) the reference."""
    from spos.cost.table import cost_table

    _, archs, means = stored_means(store.path)
    y = 100 * means
    table = cost_table(space)
    blocks = [a.split(":")[0].replace("-", "") for a in archs]
    names = ["intercept", "MACs (per million)"] + [f"block {i} choice {c}" for i in range(len(blocks[0])) for c in "123"]
    x = np.array([[1.0, table(Arch.parse(a, space.stage_depths)).macs / 1e6] + [float(b[i] == c) for i in range(len(b))
                  for c in "123"] for a, b in zip(archs, blocks)])  # fmt: skip
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    se = np.sqrt(np.diag(resid @ resid / (len(y) - x.shape[1]) * np.linalg.inv(x.T @ x)))
    print(f"\nstand-alone mean (points) on MACs and block choices, {len(archs)} stored archs x 2 seeds:")
    for n, c, e in zip(names[1:], coef[1:], se[1:]):
        print(f"  {n:20s} {c:+.2f} +- {e:.2f}{'  *' if abs(c) > 2 * e else ''}")


def stored_means(store: Path = HERE / "spos-store.sqlite") -> tuple[SearchSpace, list[str], np.ndarray]:
    """The demo's space, and every arch the store holds seeds 0 and 1 of under the demo's 5-epoch
    recipe with their mean accuracy."""
    preset = load_config("fashion-mnist")
    space = SearchSpace.from_options(preset["space"])
    space_hash, recipe_hash = standalone_keys(space, dict(preset["subnet"]), "builtin")
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        got = db.execute("SELECT arch, seed, accuracy FROM standalone WHERE space_hash = ? AND recipe_hash = ? "
                         "AND seed < 2", (space_hash, recipe_hash)).fetchall()  # fmt: skip
    runs: dict[str, dict[int, float]] = {}
    for arch, seed, acc in got:
        runs.setdefault(arch, {})[seed] = acc
    archs = sorted(a for a, r in runs.items() if len(r) == 2)
    return space, archs, np.array([np.mean(list(runs[a].values())) for a in archs])


if __name__ == "__main__":
    main()
