"""``spos search``: random or evolutionary search of a trained supernet (library: spos.search)."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import SposError
from ..runs import load_yaml_config
from ..search.config import SearchConfig
from ..search.run import run_search
from .common import amount

# Options that are not SearchConfig fields, with their defaults.
_RUN_DEFAULTS = {"supernet": None, "data": "builtin", "out": "runs/search", "device": "auto",
                 "latency_table": None, "resume": False}  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    d = SearchConfig()
    p = sub.add_parser(
        "search",
        help="search a trained supernet for the best subnet under constraints",
        description="Score candidate archs of a trained supernet (exact BN recalibration, top-1 on a "
        "held-out split of the training set) by random or evolutionary search (SPEC §5). Writes "
        "candidates.csv, best.json, pareto.json, fitness.png and pareto.png to --out; --resume "
        "continues a killed search. Runs under torchrun (ranks share each generation). Every "
        "option can also come from --config FILE.yaml (keys as option names); flags win.",
    )
    # Defaults are None so that a --config file can supply values that explicit flags override.
    p.add_argument("--supernet", metavar="CKPT", help="supernet file: final.pt (or checkpoint.pt) of spos train")
    p.add_argument("--data", help="builtin (Fashion-MNIST) or an ImageFolder root with train/ (default builtin)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of options (keys as below, - or _)")
    p.add_argument("--out", metavar="DIR", help=f"run folder (default {_RUN_DEFAULTS['out']})")
    p.add_argument("--resume", action="store_true", default=None, help="continue the search saved in --out")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, help=f"search RNG seed (default {d.seed})")

    g = p.add_argument_group("strategy")
    g.add_argument("--method", choices=("evolution", "random"), help=f"default {d.method}")
    g.add_argument("--genes", choices=("block", "channel", "joint"), help=f"genes to search (default {d.genes})")
    g.add_argument("--fix-blocks", metavar="ARCH", help="hold these block genes fixed, search channels")
    g.add_argument("--fix-channels", metavar="ARCH", help="hold these channel genes fixed, search blocks")
    g.add_argument("--population", type=int, help=f"per generation / random batch (default {d.population})")
    g.add_argument("--parents", type=int, help=f"top candidates kept as parents (default {d.parents})")
    g.add_argument("--p-select", type=float, help=f"chance another member survives (default {d.p_select})")
    g.add_argument("--mutation-prob", type=float, help=f"per-gene mutation chance (default {d.mutation_prob})")
    g.add_argument("--generations", type=int, help=f"evolution (default {d.generations})")
    g.add_argument("--candidates", type=int, help=f"random search budget (default {d.candidates})")
    g.add_argument("--top-k", type=int, help=f"candidates listed in best.json (default {d.top_k})")

    c = p.add_argument_group("constraints and fitness (MACs per image; numbers take K/M/G)")
    c.add_argument("--max-macs", type=amount)
    c.add_argument("--min-macs", type=amount)
    c.add_argument("--max-params", type=amount)
    c.add_argument("--max-score", type=float, help="ceiling on MACs/328M + params/3.4M")
    c.add_argument("--max-latency-ms", type=float, help="needs --latency-table")
    c.add_argument("--latency-table", metavar="FILE", help="latency table from `spos latency-table`")
    c.add_argument("--fitness", choices=("acc", "acc-score"), help="acc (default) or acc - ratio * score")
    c.add_argument("--score-ratio", type=float, help=f"ratio for acc-score (default {d.score_ratio})")

    e = p.add_argument_group("evaluation")
    e.add_argument("--recal-images", type=int, help=f"BN recalibration images (default {d.recal_images})")
    e.add_argument("--holdout", type=int, help=f"held-out training images for top-1 (default {d.holdout})")
    e.add_argument("--holdout-seed", type=int, help="seed of the holdout split; must match supernet training's")
    e.add_argument("--batch-size", type=int, help=f"images per forward (default {d.batch_size})")
    p.set_defaults(func=run)


def resolve_options(args: argparse.Namespace) -> tuple[dict, SearchConfig]:
    """Defaults, then the --config file, then explicit flags: (run options, SearchConfig)."""
    config_keys = set(SearchConfig.__dataclass_fields__)
    merged: dict = {}
    if args.config:
        for key, value in load_yaml_config(args.config).items():
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
    result = run_search(
        opts["supernet"],
        opts["data"],
        config,
        opts["out"],
        resume=bool(opts["resume"]),
        device=opts["device"],
        latency_table=opts["latency_table"],
        command=shlex.join(["spos", *sys.argv[1:]]),
    )
    best = result.best
    print(f"best {best['arch']}  top-1 {100 * best['accuracy']:.2f}%  {best['macs'] / 1e6:.2f}M MACs  "
          f"{best['params'] / 1e6:.3f}M params  ({len(result.candidates)} candidates; results in {opts['out']})")  # fmt: skip
    return 0
