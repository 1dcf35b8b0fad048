"""Train once, search many: what the candidate store and the predictor save, measured side by side.

    python benchmarks/search_many.py [--supernet runs/demo/supernet/final.pt] [--pool 50x10]

On one supernet file and a fresh store (a temporary folder):
1. a full evolutionary search under the loosest budget fills the store (population x generations);
2. the identical search again: supernet evaluations (goal 0) and time;
3. an overlapping search (budget 10% lower): evaluations against the fresh search's (goal <= 1/2);
4. three new budgets answered by the predictor: seconds per budget (goal <= 10 s) and the
   winner's supernet score, next to a full evolutionary search per budget without the store
   (goal: within the estimate's noise, about 0.2 points on the demo preset);
5. the predictor's held-out Kendall tau on the store.
Prints the ISA and thread count with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def isa() -> str:
    cap = os.environ.get("ATEN_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()
    return f"ISA {cap}, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--supernet", default="runs/demo/supernet/final.pt")
    ap.add_argument("--data", default="builtin")
    ap.add_argument("--pool", default="50x10", help="population x generations of the filling search")
    ap.add_argument("--full", default="20x6", help="population x generations of the per-budget full searches")
    ap.add_argument("--budgets", default="1.0M,1.05M,1.15M", help="MACs caps answered by the predictor")
    ap.add_argument("--loosest", default="1.2M")
    args = ap.parse_args()

    from spos.cost.bounds import Bounds
    from spos.cost.model import arch_genes
    from spos.runtime import parse_amount
    from spos.search.config import SearchConfig
    from spos.search.family import run_family
    from spos.search.predictor import heldout_tau
    from spos.search.run import run_search
    from spos.space import Arch
    from spos.store import Store, file_hash

    pop, gens = (int(x) for x in args.pool.split("x"))
    loosest = parse_amount(args.loosest)
    base = SearchConfig(population=pop, parents=max(2, pop // 5), generations=gens, recal_images=2000,
                        holdout=3000, batch_size=500, max_macs=loosest)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="search-many-"))
    store = work / "spos-store.sqlite"
    say = lambda *a: print(*a, f"[{isa()}]", flush=True)

    def timed_search(name: str, cfg: SearchConfig, use_store=True):
        t0 = time.perf_counter()
        res = run_search(args.supernet, args.data, cfg, work / name, device="cpu", log=None,
                         store=store if use_store else False)  # fmt: skip
        reused = sum(h.get("reused", 0) for h in res.history)
        return res, len(res.candidates) - reused, time.perf_counter() - t0

    fresh, n_fresh, t_fresh = timed_search("fill", base)
    say(f"fresh search ({pop}x{gens}, max {loosest / 1e6:g}M MACs): {n_fresh} evaluations, {t_fresh:.1f} s, "
        f"best {fresh.best['arch']} {100 * fresh.best['fitness']:.2f}%")
    again, n_again, t_again = timed_search("again", base)
    say(f"identical search: {n_again} evaluations (goal 0), {t_again:.1f} s, same best: "
        f"{again.best['arch'] == fresh.best['arch']}")
    moved = replace(base, max_macs=0.9 * loosest)
    _, n_moved, t_moved = timed_search("moved", moved)
    say(f"budget moved 10%: {n_moved} evaluations with the store vs {n_fresh} for the fresh search "
        f"({n_moved / max(n_fresh, 1):.2f}x, goal <= 0.5), {t_moved:.1f} s vs {t_fresh:.1f} s")

    with Store(store) as db:
        settings = db.remember_config(base.scoring)
        rows = [r for r in db.candidates(file_hash(args.supernet)) if r["settings_hash"] == settings]
    from spos.runs import load_checkpoint
    from spos.space import SearchSpace

    space = SearchSpace.from_dict(load_checkpoint(args.supernet)["space"])
    genes = arch_genes([Arch.parse(r["arch"], space.stage_depths) for r in rows])
    say(f"store: {len(rows)} evaluations; predictor held-out Kendall tau "
        f"{heldout_tau(space, genes, np.asarray([r['accuracy'] for r in rows])):+.3f}")

    caps = [parse_amount(x) for x in args.budgets.split(",")]
    fam = run_family(args.supernet, [Bounds(max_macs=c) for c in caps], args.data, base, work / "family",
                     store=store, min_store=1, device="cpu", log=lambda m: None)  # fmt: skip
    fpop, fgens = (int(x) for x in args.full.split("x"))
    for cap, row in zip(caps, fam["budgets"]):
        full_cfg = replace(base, max_macs=cap, population=fpop, parents=max(2, fpop // 4), generations=fgens)
        full, n_full, t_full = timed_search(f"full-{cap:g}", full_cfg, use_store=False)
        say(f"budget {cap / 1e6:g}M: predictor {row['seconds']:.1f} s, {row['evaluated']} evaluations, "
            f"{row['arch']} {100 * row['score']:.2f}% | full search {t_full:.1f} s, {n_full} evaluations, "
            f"{full.best['arch']} {100 * full.best['fitness']:.2f}% | gap {100 * (row['score'] - full.best['fitness']):+.2f} points")
    (work / "summary.json").write_text(json.dumps(fam, indent=1))
    print(f"files in {work}")


if __name__ == "__main__":
    main()
