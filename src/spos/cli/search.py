"""``spos search``: random or evolutionary search of a trained supernet (library: spos.search)."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..configs import load_config
from ..errors import SposError
from ..search.config import FITNESS, METHODS, SearchConfig
from ..search.run import run_search
from .common import amount

# Options that are not SearchConfig fields, with their defaults.
_RUN_DEFAULTS = {"supernet": None, "data": "builtin", "out": "runs/search", "device": "auto",
                 "latency_table": None, "resume": False, "tensorboard": False, "store": None,
                 "no_store": False, "budget": None, "predictor": True, "min_store": 200,
                 "screen_top_k": 10}  # fmt: skip
EXAMPLES = """examples:
  spos search --supernet runs/supernet/final.pt --max-macs 330M --out runs/search
  spos search --supernet runs/demo/supernet/final.pt --budget macs=0.9M,1.0M,1.2M --out runs/family
  spos search --supernet runs/demo/supernet/final.pt --method nsga2 --latency-table phone.json --out runs/front
"""


def register(sub: argparse._SubParsersAction) -> None:
    """The ``spos search`` parser: one ``add_argument`` per option, longer than a screen only
    because the command has many options (no logic here)."""
    d = SearchConfig()
    p = sub.add_parser(
        "search",
        help="search a trained supernet for the best subnet under constraints",
        description="Score candidate archs of a trained supernet (exact BN recalibration, top-1 on a "
        "held-out split of the training set) by random or evolutionary search (SPEC §5). Writes "
        "candidates.csv, best.json, pareto.json, fitness.png and pareto.png to --out; --resume "
        "continues a killed search. Runs under torchrun (ranks share each generation). Every "
        "option can also come from --config FILE.yaml (keys as option names); flags win.",
        epilog=EXAMPLES,
    )
    # Defaults are None so that a --config file can supply values that explicit flags override.
    p.add_argument("--supernet", metavar="CKPT", help="supernet file: final.pt (or checkpoint.pt) of spos train (no default: required)")
    p.add_argument("--data", help="builtin (Fashion-MNIST) or an ImageFolder root with train/ (default builtin)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of options (keys as below, - or _; default: none)")
    p.add_argument("--out", metavar="DIR", help=f"run folder (default {_RUN_DEFAULTS['out']})")
    p.add_argument("--resume", action="store_true", default=None, help="continue the search saved in --out")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, help=f"search RNG seed (default {d.seed})")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log each generation's best and mean fitness to OUT/tensorboard (pip install spos[tensorboard])")

    g = p.add_argument_group("strategy")
    g.add_argument("--method", choices=METHODS, help=f"evolution (SPEC §5), random, or nsga2: the Pareto front over "
                   f"accuracy, MACs, params and latency per --latency-table (pymoo) (default {d.method})")
    g.add_argument("--genes", choices=("block", "channel", "joint"), help=f"genes to search (default {d.genes})")
    g.add_argument("--fix-blocks", metavar="ARCH", help="hold these block genes fixed, search channels (default: none)")
    g.add_argument("--fix-channels", metavar="ARCH", help="hold these channel genes fixed, search blocks (default: none)")
    g.add_argument("--population", type=int, help=f"per generation / random batch (default {d.population})")
    g.add_argument("--parents", type=int, help=f"top candidates kept as parents (default {d.parents})")
    g.add_argument("--p-select", type=float, help=f"chance another member survives (default {d.p_select})")
    g.add_argument("--mutation-prob", type=float, help=f"per-gene mutation chance (default {d.mutation_prob})")
    g.add_argument("--generations", type=int, help=f"evolution (default {d.generations})")
    g.add_argument("--candidates", type=int, help=f"random search budget (default {d.candidates})")
    g.add_argument("--top-k", type=int, help=f"candidates listed in best.json (default {d.top_k})")

    c = p.add_argument_group("constraints and fitness (MACs per image; numbers take K/M/G)")
    c.add_argument("--max-macs", type=amount, help="default: no limit")
    c.add_argument("--min-macs", type=amount, help="default: no limit")
    c.add_argument("--max-params", type=amount, help="default: no limit")
    c.add_argument("--max-score", type=float, help="ceiling on MACs/328M + params/3.4M (default: no limit)")
    c.add_argument("--max-latency-ms", type=float, help="needs --latency-table (default: no limit)")
    c.add_argument("--latency-table", metavar="FILE", action="append",
                   help="latency table from `spos latency-table`; repeat it with --budget to report latency on "
                        "several devices (default: none)")
    c.add_argument("--fitness", choices=FITNESS,
                   help="acc (default), acc - ratio * score, or loss (minus held-out cross-entropy)")
    c.add_argument("--score-ratio", type=float, help=f"ratio for acc-score (default {d.score_ratio})")

    e = p.add_argument_group("evaluation")
    e.add_argument("--recal-images", type=int, help=f"BN recalibration images (default {d.recal_images})")
    e.add_argument("--holdout", type=int, help=f"held-out training images for top-1 (default {d.holdout})")
    e.add_argument("--holdout-seed", type=int, help="seed of the holdout split; must match supernet training's (default: read from the supernet file)")
    e.add_argument("--batch-size", type=int, help=f"images per forward (default {d.batch_size})")

    f = p.add_argument_group("train once, search many (the candidate store)")
    f.add_argument("--store", metavar="FILE", help="candidate store whose scores of this supernet are reused "
                   "(default: spos-store.sqlite beside --out)")
    f.add_argument("--no-store", action="store_true", default=None, help="neither read nor write a store")
    f.add_argument("--no-warm-start", dest="warm_start", action="store_false", default=None,
                   help="evolution from random archs even when the store knows this supernet (default: warm start "
                        "from the store's best in-bounds archs with predictor pre-screening once it holds "
                        "--warm-min scores)")
    f.add_argument("--warm-min", type=int, help=f"stored scores of this supernet that turn the warm start on "
                   f"(default {d.warm_min})")
    f.add_argument("--screen-keep", type=float, help="warm start: share of each generation's free slots evaluated on "
                   f"the supernet, the predictor's best (default {d.screen_keep})")
    f.add_argument("--screen-draws", type=int, help=f"warm start: offspring drawn per free slot for the predictor to "
                   f"rank (default {d.screen_draws})")
    f.add_argument("--budget", action="append", metavar="KEY=V1,V2,...",
                   help="one winner per budget from one pool: macs=..., params=..., latency=... (ms, on every "
                        "--latency-table) or latency@NAME=... (on the table file NAME.json); with --method nsga2 the "
                        "pool is NSGA-II's; writes family.json/.csv/.png (default: one search)")
    f.add_argument("--no-predictor", dest="predictor", action="store_false", default=None,
                   help="with --budget: a full evolutionary search per budget (with --method nsga2: the pool's "
                        "best in each budget) and no warm start, instead of the store's "
                        "accuracy predictor (default: predictor)")
    f.add_argument("--min-store", type=int, help="with --budget: candidates the store needs before the predictor "
                   "answers; fewer start with one search under the loosest budget (default 200)")
    f.add_argument("--screen-top-k", type=int, help="with --budget: predicted-best candidates evaluated per budget "
                   "(default 10)")
    p.set_defaults(func=run)


def resolve_options(args: argparse.Namespace) -> tuple[dict, SearchConfig]:
    """Defaults, then the --config file, then explicit flags: (run options, SearchConfig)."""
    config_keys = set(SearchConfig.__dataclass_fields__)
    merged: dict = {}
    if args.config:
        for key, value in load_config(args.config).items():
            key = str(key).replace("-", "_")
            if key not in config_keys and key not in _RUN_DEFAULTS:
                allowed = ", ".join(sorted(config_keys | set(_RUN_DEFAULTS)))
                raise SposError(f"{args.config}: unknown option {key!r}; allowed: {allowed}")
            merged[key] = value
    for key in config_keys | set(_RUN_DEFAULTS):
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    run_opts = {k: merged.pop(k, v) for k, v in _RUN_DEFAULTS.items()}
    try:
        config = SearchConfig.from_dict(merged)
    except TypeError as e:  # e.g. a YAML list where a number belongs
        raise SposError(f"bad search option: {e}") from None
    if not run_opts["supernet"]:
        raise SposError("no supernet given; pass --supernet runs/supernet/final.pt (or supernet: in --config)")
    return run_opts, config


def run(args: argparse.Namespace) -> int:
    opts, config = resolve_options(args)
    tables = opts["latency_table"] or []
    if isinstance(tables, str):
        tables = [tables]
    store = False if opts["no_store"] else (opts["store"] or True)
    if opts["budget"]:
        return _run_family(opts, config, tables, store)
    if len(tables) > 1 and config.method != "nsga2":
        raise SposError("several --latency-table files need --budget or --method nsga2 (one search prices one device)")
    result = run_search(
        opts["supernet"],
        opts["data"],
        config,
        opts["out"],
        resume=bool(opts["resume"]),
        device=opts["device"],
        latency_table=tables,
        command=shlex.join(["spos", *sys.argv[1:]]),
        tensorboard=bool(opts["tensorboard"]),
        store=store,
    )
    reused = sum(h.get("reused", 0) for h in result.history)
    screened = sum(h.get("screened", 0) for h in result.history)
    if reused or screened:
        print(f"reused {reused} of {len(result.candidates)} candidate scores from the store; the predictor "
              f"screened out {screened} offspring; {len(result.candidates) - reused} supernet evaluations")
    best = result.best
    print(f"best {best['arch']}  top-1 {100 * best['accuracy']:.2f}%  {best['macs'] / 1e6:.2f}M MACs  "
          f"{best['params'] / 1e6:.3f}M params  ({len(result.candidates)} candidates; results in {opts['out']})")  # fmt: skip
    return 0


def _run_family(opts: dict, config: SearchConfig, tables: list[str], store) -> int:
    from ..search.family import parse_budgets, run_family

    budgets = parse_budgets(opts["budget"] if isinstance(opts["budget"], list) else [opts["budget"]], tables)
    if store is False:
        raise SposError("--budget answers every budget from the candidate store; drop --no-store")
    summary = run_family(opts["supernet"], budgets, opts["data"], config, opts["out"], latency_tables=tables,
                         store=None if store is True else store, predictor=opts["predictor"] is not False,
                         min_store=int(opts["min_store"]), top_k=int(opts["screen_top_k"]), device=opts["device"],
                         command=shlex.join(["spos", *sys.argv[1:]]))  # fmt: skip
    print(f"{len(summary['budgets'])} budgets from a pool of {summary['pool']} candidates in {summary['seconds']:.1f} s; "
          f"results in {opts['out']}/family.json")  # fmt: skip
    return 0
