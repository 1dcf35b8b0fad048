"""Train once, search many: what the candidate store, the warm start and the predictor save.

    python benchmarks/search_many.py --supernet runs/demo/supernet/final.pt --work runs/search_many/bench \
        [--steps fresh,again,moved,moved-fresh,tau,budgets,family,nsga2] [--pool 50x10]

Each step prints one row and keeps it in WORK/rows.json; a later call with the same --work skips
the steps already done (--redo STEP runs one again), so the benchmark can be split into calls of
a few minutes each. Steps, in this order (later ones add to the store the earlier ones read):

- fresh: a full evolutionary search under the loosest budget fills an empty store;
- again: the identical search: supernet evaluations (goal 0) and time;
- moved: the budget 10% lower, warm-started from the store: evaluations against the fresh
  search's (goal <= 1/2);
- moved-fresh: a full fresh search (no store) under the moved budget: its winner against the
  warm search's (goal: within the estimate's noise, about 0.2-0.3 points);
- tau: the predictor's held-out Kendall tau on the store;
- budgets: three new budgets answered by the predictor (goal <= 10 s each) next to a full
  evolutionary search per budget without the store;
- family: one call (an empty store) for 3 MACs budgets and 3 latency budgets on each of 2 latency
  tables, against the fresh single search's time and evaluations (goal < 2x);
- nsga2: NSGA-II (pymoo) over accuracy, MACs, params and latency on both tables into an empty
  store: its front, the same budgets read from its pool, and a rerun that hits the store.
Prints the ISA and thread count with every figure. The two latency tables of the last steps:

    spos latency-table --config fashion-mnist --threads 1 --batch-size 1 --out runs/search_many/latency-b1.json
    spos latency-table --config fashion-mnist --threads 1 --batch-size 32 --out runs/search_many/latency-b32.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

STEPS = ("fresh", "again", "moved", "moved-fresh", "tau", "budgets", "family", "nsga2")


def isa() -> str:
    cap = os.environ.get("ATEN_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()
    return f"ISA {cap}, {torch.get_num_threads()} threads"


def evaluations(res) -> int:
    """Supernet evaluations a search made (its candidates less those reused from the store)."""
    return len(res.candidates) - sum(h.get("reused", 0) for h in res.history)


class Bench:
    """The steps of the module docstring; each returns ``(row text, figures)``."""

    def __init__(self, args) -> None:
        from spos.runtime import parse_amount
        from spos.search.config import SearchConfig

        self.args, self.work = args, Path(args.work)
        self.store = self.work / "spos-store.sqlite"
        pop, gens = (int(x) for x in args.pool.split("x"))
        self.loosest = parse_amount(args.loosest)
        self.base = SearchConfig(population=pop, parents=max(2, pop // 5), generations=gens, recal_images=2000,
                                 holdout=3000, batch_size=500, max_macs=self.loosest)  # fmt: skip
        self.rows_file = self.work / "rows.json"
        self.rows = json.loads(self.rows_file.read_text()) if self.rows_file.is_file() else {}

    def search(self, name: str, cfg, store=None, **kw):
        from spos.search.run import run_search

        folder = self.work / name
        shutil.rmtree(folder, ignore_errors=True)  # a step runs whole or not at all
        t0 = time.perf_counter()
        res = run_search(self.args.supernet, self.args.data, cfg, folder, device="cpu", log=None,
                         store=self.store if store is None else store, **kw)  # fmt: skip
        return res, evaluations(res), time.perf_counter() - t0

    def fresh(self):
        res, n, t = self.search("fresh", self.base)
        best = res.best
        return (f"fresh search ({self.args.pool}, max {self.loosest / 1e6:g}M MACs): {n} evaluations, {t:.1f} s, best "
                f"{best['arch']} {100 * best['fitness']:.2f}%"), {"evaluations": n, "seconds": t, "best": best}  # fmt: skip

    def again(self):
        res, n, t = self.search("again", self.base)
        same = res.best["arch"] == self.rows["fresh"]["best"]["arch"]
        return f"identical search: {n} evaluations (goal 0), {t:.1f} s, same best: {same}", {"evaluations": n}

    def moved(self):
        res, n, t = self.search("moved", replace(self.base, max_macs=0.9 * self.loosest))
        fresh = self.rows["fresh"]
        screened = sum(h.get("screened", 0) for h in res.history)
        return (f"budget moved 10% (warm start): {n} evaluations vs {fresh['evaluations']} for the fresh search "
                f"({n / max(fresh['evaluations'], 1):.2f}x, goal <= 0.5), {screened} offspring screened out, "
                f"{t:.1f} s vs {fresh['seconds']:.1f} s; best {res.best['arch']} {100 * res.best['fitness']:.2f}%"),\
            {"evaluations": n, "seconds": t, "best": res.best}  # fmt: skip

    def moved_fresh(self):
        res, n, t = self.search("moved-fresh", replace(self.base, max_macs=0.9 * self.loosest), store=False)
        warm = self.rows["moved"]["best"]
        gap = 100 * (warm["fitness"] - res.best["fitness"])
        return (f"budget moved 10%, full fresh search (no store): {n} evaluations, {t:.1f} s, best {res.best['arch']} "
                f"{100 * res.best['fitness']:.2f}% | warm start's best {100 * warm['fitness']:.2f}%: gap {gap:+.2f} "
                f"points"), {"evaluations": n, "seconds": t, "best": res.best, "gap_points": gap}  # fmt: skip

    def tau(self):
        from spos.cost.model import arch_genes
        from spos.search.predictor import heldout_tau
        from spos.space import Arch
        from spos.store import Store, file_hash

        space = self.space()
        with Store(self.store) as db:
            settings = db.remember_config(self.base.scoring)
            rows = [r for r in db.candidates(file_hash(self.args.supernet)) if r["settings_hash"] == settings]
        genes = arch_genes([Arch.parse(r["arch"], space.stage_depths) for r in rows])
        tau = heldout_tau(space, genes, np.asarray([r["accuracy"] for r in rows]))
        return f"store: {len(rows)} evaluations; predictor held-out Kendall tau {tau:+.3f}", {"tau": tau}

    def budgets(self):
        from spos.cost.bounds import Bounds
        from spos.runtime import parse_amount
        from spos.search.family import run_family

        caps = [parse_amount(x) for x in self.args.budgets.split(",")]
        fam = run_family(self.args.supernet, [Bounds(max_macs=c) for c in caps], self.args.data, self.base,
                         self.work / "family-predictor", store=self.store, min_store=1, device="cpu",
                         log=lambda m: None)  # fmt: skip
        fpop, fgens = (int(x) for x in self.args.full.split("x"))
        lines = []
        for cap, row in zip(caps, fam["budgets"]):
            cfg = replace(self.base, max_macs=cap, population=fpop, parents=max(2, fpop // 4), generations=fgens)
            full, n_full, t_full = self.search(f"full-{cap:g}", cfg, store=False)
            lines.append(f"budget {cap / 1e6:g}M: predictor {row['seconds']:.1f} s, {row['evaluated']} evaluations, "
                         f"{row['arch']} {100 * row['score']:.2f}% | full search ({self.args.full}) {t_full:.1f} s, "
                         f"{n_full} evaluations, {full.best['arch']} {100 * full.best['fitness']:.2f}% | gap "
                         f"{100 * (row['score'] - full.best['fitness']):+.2f} points")  # fmt: skip
        return "\n".join(lines), {"family": fam["budgets"]}

    def family_budgets(self) -> list[str]:
        """3 MACs budgets and, on each latency table, 3 latency budgets: the latencies of the fresh
        search's winner scaled by 0.8, 0.9 and 1.0."""
        from spos.cost.latency import LatencyTable
        from spos.space import Arch

        best = Arch.parse(self.rows["fresh"]["best"]["arch"], self.space().stage_depths)
        specs = ["macs=" + self.args.budgets]
        for path in self.args.latency_table:
            ms = LatencyTable.load(path).predict(best)
            specs.append(f"latency@{Path(path).stem}=" + ",".join(f"{f * ms:.4f}" for f in (0.8, 0.9, 1.0)))
        return specs

    def family(self):
        from spos.search.family import parse_budgets, run_family

        specs = self.family_budgets()
        store = self.work / "family-store" / "spos-store.sqlite"
        shutil.rmtree(store.parent, ignore_errors=True)
        t0 = time.perf_counter()
        fam = run_family(self.args.supernet, parse_budgets(specs, self.args.latency_table), self.args.data,
                         self.base, store.parent / "family", latency_tables=self.args.latency_table, store=store,
                         min_store=200, device="cpu", log=lambda m: None)  # fmt: skip
        t = time.perf_counter() - t0
        n = fam["fill"]["evaluated"] + sum(r["evaluated"] for r in fam["budgets"])
        fresh = self.rows["fresh"]
        lines = [f"one call, {len(fam['budgets'])} budgets ({' '.join(specs)}) on {len(self.args.latency_table)} "
                 f"latency tables, empty store: {n} evaluations, {t:.1f} s = {n / fresh['evaluations']:.2f}x the "
                 f"evaluations and {t / fresh['seconds']:.2f}x the time of one fresh search (goal < 2x); front of "
                 f"{len(fam['pareto'])} over (score, MACs, params, latency x{len(self.args.latency_table)})"]  # fmt: skip
        lines += [f"  {r['budget']}: {r['arch']} {100 * r['score']:.2f}%, {r['macs'] / 1e6:.3f}M MACs, "
                  + ", ".join(f"{k} {v:.3f} ms" for k, v in r["latency_ms"].items()) for r in fam["budgets"]]
        return "\n".join(lines), {"evaluations": n, "seconds": t, "family": fam["budgets"]}

    def nsga2(self):
        store = self.work / "nsga2-store" / "spos-store.sqlite"
        shutil.rmtree(store.parent, ignore_errors=True)
        cfg = replace(self.base, method="nsga2")
        tables = list(self.args.latency_table)
        res, n, t = self.search("nsga2", cfg, store=store, latency_table=tables)
        again, n_again, t_again = self.search("nsga2-again", cfg, store=store, latency_table=tables)
        fresh = self.rows["fresh"]
        best = max(res.candidates, key=lambda c: c["fitness"])
        return (f"NSGA-II ({self.args.pool}, objectives accuracy, MACs, params, latency x{len(tables)}): {n} "
                f"evaluations, {t:.1f} s ({n / fresh['evaluations']:.2f}x the fresh evolution's evaluations); front "
                f"of {len(res.front)}; best {best['arch']} {100 * best['fitness']:.2f}% | rerun: {n_again} "
                f"evaluations, {t_again:.1f} s"), {"evaluations": n, "seconds": t, "front": len(res.front)}  # fmt: skip

    def space(self):
        from spos.runs import load_checkpoint
        from spos.space import SearchSpace

        return SearchSpace.from_dict(load_checkpoint(self.args.supernet)["space"])

    def run(self, steps: list[str], redo: set[str]) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        for step in steps:
            if step in self.rows and step not in redo:
                print(self.rows[step]["line"], "(kept from an earlier call)", flush=True)
                continue
            line, figures = getattr(self, step.replace("-", "_"))()
            self.rows[step] = {"line": f"{line} [{isa()}]", **figures}
            self.rows_file.write_text(json.dumps(self.rows, indent=1, default=str))
            print(self.rows[step]["line"], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--supernet", default="runs/demo/supernet/final.pt")
    ap.add_argument("--data", default="builtin")
    ap.add_argument("--work", default="runs/search_many/bench", help="folder of the runs, the store and rows.json")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma list from {', '.join(STEPS)}")
    ap.add_argument("--redo", default="", help="comma list of steps to run again")
    ap.add_argument("--pool", default="50x10", help="population x generations of the fresh search")
    ap.add_argument("--full", default="20x6", help="population x generations of the per-budget full searches")
    ap.add_argument("--budgets", default="1.0M,1.05M,1.15M", help="MACs caps answered by the predictor")
    ap.add_argument("--loosest", default="1.2M")
    ap.add_argument("--latency-table", action="append",
                    default=None, help="latency tables of the family and nsga2 steps (default: the two in runs/search_many)")
    args = ap.parse_args()
    args.latency_table = args.latency_table or ["runs/search_many/latency-b1.json", "runs/search_many/latency-b32.json"]
    steps = [s for s in STEPS if s in args.steps.split(",")]
    Bench(args).run(steps, set(filter(None, args.redo.split(","))))


if __name__ == "__main__":
    main()
