"""``spos fidelity``: how well the supernet ranks archs against training them from scratch."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from ..errors import SposError
from .common import amount

EXAMPLES = """examples:
  spos fidelity --pipeline runs/demo                      # the demo run: K=16 archs, 2 seeds
  spos fidelity --pipeline runs/demo --epochs 2 --out runs/demo/fidelity-e2   # a shorter recipe
  spos fidelity --pipeline runs/demo --min-macs 0.75M --max-macs 1.5M --out runs/demo/fidelity-wide
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fidelity", help="measure how well the supernet ranks archs (Kendall tau vs stand-alone)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--pipeline", required=True, help="a `spos pipeline` folder (supernet, search, recipe)")
    p.add_argument("--out", help="output folder (default: PIPELINE/fidelity)")
    p.add_argument("--store", help="SQLite store (default: OUT/../spos-store.sqlite)")
    p.add_argument("--supernet", help="score with this supernet file (default: the pipeline's)")
    p.add_argument("--search", help="check this search folder's winner (default: the pipeline's)")
    p.add_argument("--archs", type=int, default=16, help="K random archs in the window (default: 16)")
    p.add_argument("--seeds", type=int, default=2, help="R stand-alone seeds per arch (default: 2)")
    w = p.add_argument_group("window (any bound given replaces the default: the search's bounds, else the supernet's window)")
    for key in ("min-macs", "max-macs", "min-params", "max-params"):
        w.add_argument(f"--{key}", type=amount, help="e.g. 0.9M (default: the search's bounds)")
    p.add_argument("--epochs", type=int, help="stand-alone epochs (default: the pipeline's subnet section)")
    p.add_argument("--rescore", type=int, default=2, help="extra recalibration subsets per arch (default: 2)")
    p.add_argument("--recal-images", type=int, help="BN recalibration images (default: the search's)")
    p.add_argument("--holdout", type=int, help="held-out images scored (default: the search's)")
    p.add_argument("--fitness", choices=("acc", "loss"),
                   help="supernet score ranked: held-out top-1 or minus its loss (default: the search's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arch draw (default: 0)")
    p.add_argument("--device", default="cpu", help="device for scoring (default: cpu)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log the scatter figure to OUT/tensorboard (pip install spos[tensorboard])")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fidelity import from_pipeline, run_fidelity

    overrides: dict = {"archs": args.archs, "seeds": args.seeds, "rescore": args.rescore, "seed": args.seed}
    if args.epochs is not None:
        if args.epochs < 1:
            raise SposError(f"--epochs must be at least 1, got {args.epochs}")
        overrides["recipe"] = {"epochs": args.epochs}
    if args.fitness is not None:
        overrides["fitness"] = args.fitness
    window = {k: getattr(args, k) for k in ("min_macs", "max_macs", "min_params", "max_params")}
    if any(v is not None for v in window.values()):
        overrides["window"] = {k: v for k, v in window.items() if v is not None}
    inputs, config = from_pipeline(args.pipeline, overrides, supernet=args.supernet, search=args.search)
    scoring = dict(config.scoring)
    for key in ("recal_images", "holdout"):
        if getattr(args, key) is not None:
            scoring[key] = getattr(args, key)
    config = dataclasses.replace(config, scoring=scoring)
    out = Path(args.out) if args.out else Path(args.pipeline) / "fidelity"
    run_fidelity(inputs, config, out, args.store, device=args.device, command=shlex.join(sys.argv),
                 tensorboard=args.tensorboard)
    return 0
