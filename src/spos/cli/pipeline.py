"""``spos pipeline``: supernet -> search -> subnet -> test -> report, resumable."""

from __future__ import annotations

import argparse
import sys

from ..configs import DEFAULT_PIPELINE, load_config
from ..errors import SposError
from ..runtime import parse_amount

EXAMPLES = """examples:
  spos pipeline --out runs/demo --resume          # the fashion-mnist preset on the built-in data
  spos pipeline --out runs/demo --resume --budget macs=0.9M,1.2M   # a winner per budget, each trained
  torchrun --nproc_per_node=8 -m spos pipeline --config imagenet --data /data/imagenet --resume
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="the whole lifecycle: supernet, search, subnet, test, report",
        description="Train the supernet, search it under the budget, train the best subnet from "
        "scratch, test it and write report.md. Stages whose results exist are skipped; with "
        "--resume a stopped run continues where it stopped. Without --config the preset "
        f"{DEFAULT_PIPELINE['builtin']} (built-in data) or {DEFAULT_PIPELINE['folder']} (--data FOLDER) is used.",
        epilog=EXAMPLES,
    )
    p.add_argument("--config", metavar="NAME|FILE.yaml",
                   help="a preset (`spos configs`) or a pipeline YAML (sections: space, supernet, search, "
                   f"subnet) (default: {DEFAULT_PIPELINE['builtin']}, or {DEFAULT_PIPELINE['folder']} with "
                   "--data FOLDER)")  # fmt: skip
    p.add_argument("--data", help="'builtin' (Fashion-MNIST) or an ImageFolder root with train/ and val/ "
                   "(default: the config's)")  # fmt: skip
    p.add_argument("--budget-macs", metavar="MACS[,MACS...]",
                   help="MACs per image the searched arch may use, e.g. 3e6 or 1.2M; several (0.9M,1.2M) search them "
                   "as one family and train every winner (default: the config's)")  # fmt: skip
    p.add_argument("--budget", metavar="macs=V1,V2,...",
                   help="the same budgets in the grammar of `spos search --budget` (MACs only here; default: --max-macs)")
    p.add_argument("--out", help="run folder (default: the config's, runs/pipeline)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (default: the config's, else auto)")
    p.add_argument("--seed", type=int, help="seed of every stage (default: the config's, else 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log training and search to each stage's tensorboard/ folder (pip install spos[tensorboard])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set supernet.epochs=2 (VALUE is YAML); repeatable "
                   "(default: none)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import PipelineConfig, run_pipeline

    data = args.data
    values = load_config(args.config or DEFAULT_PIPELINE["builtin" if data in (None, "builtin") else "folder"])
    overrides = {"data": data, "budget_macs": budget_macs(args.budget_macs, args.budget), "out": args.out,
                 "device": args.device, "seed": args.seed}  # fmt: skip
    values.update({k: v for k, v in overrides.items() if v is not None})
    for item in args.set:
        apply_override(values, item)
    if args.no_progress:
        values["progress"] = False
    if args.tensorboard:
        values["tensorboard"] = True
    config = PipelineConfig.from_dict(values)
    run_pipeline(config, resume=args.resume, command=" ".join(["spos", *sys.argv[1:]]))
    return 0


def budget_macs(text: str | None, spec: str | None) -> float | list[float] | None:
    """``--budget-macs 0.9M,1.2M`` or ``--budget macs=0.9M,1.2M`` as budget_macs (None: neither)."""
    if text is not None and spec is not None:
        raise SposError("pass --budget-macs or --budget, not both")
    if spec is not None:
        key, sep, text = spec.partition("=")
        if key != "macs" or not sep:
            raise SposError(f"--budget {spec!r}: the pipeline takes MACs budgets, e.g. --budget macs=0.9M,1.2M")
    if text is None:
        return None
    try:
        values = [parse_amount(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SposError(f"budget {text!r}: expected numbers such as 0.9M,1.2M or 3e6") from None
    if not values:
        raise SposError("--budget-macs needs a number, e.g. 1.2M or 0.9M,1.2M")
    return values[0] if len(values) == 1 else values


def apply_override(values: dict, item: str) -> None:
    """Set ``values[a][b] = yaml(v)`` for ``item`` = ``a.b=v`` (safe_load: no code runs)."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SposError(f"--set {item!r} needs KEY=VALUE, e.g. --set supernet.epochs=2")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SposError(f"--set {item!r}: the value is not valid YAML") from None
    *path, last = key.strip().split(".")
    node = values
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SposError(f"--set {item!r}: {part!r} is not a section")
    node[last] = value
