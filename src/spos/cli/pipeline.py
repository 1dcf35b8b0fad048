"""``spos pipeline``: supernet -> search -> subnet -> test -> report, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SposError
from ..runs import load_yaml_config

_SOURCE_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="the whole lifecycle: supernet, search, subnet, test, report",
        description="Train the supernet, search it under the budget, train the best subnet from "
        "scratch, test it and write report.md. Stages whose results exist are skipped; with "
        "--resume a stopped run continues where it stopped. Without --config the preset "
        "configs/pipeline.yaml (built-in data) or configs/imagenet/pipeline.yaml (a folder) is used.",
    )
    p.add_argument("--config", help="pipeline YAML (sections: space, supernet, search, subnet)")
    p.add_argument("--data", help="'builtin' (Fashion-MNIST) or an ImageFolder root with train/ and val/")
    p.add_argument("--budget-macs", type=float, help="MACs per image the searched arch may use, e.g. 3e6")
    p.add_argument("--out", help="run folder (default: the config's, runs/pipeline)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set supernet.epochs=2 (VALUE is YAML); repeatable")
    p.set_defaults(func=run)


def default_config_path(data: str) -> Path:
    name = "pipeline.yaml" if data == "builtin" else "imagenet/pipeline.yaml"
    for root in (Path("configs"), _SOURCE_CONFIGS):
        if (root / name).is_file():
            return root / name
    raise SposError(f"no default config configs/{name} here; pass --config FILE.yaml")


def run(args: argparse.Namespace) -> int:
    from ..pipeline import PipelineConfig, run_pipeline

    data = args.data
    path = Path(args.config) if args.config else None
    if path is None:
        path = default_config_path(data or "builtin")
    values = load_yaml_config(path)
    overrides = {"data": data, "budget_macs": args.budget_macs, "out": args.out, "device": args.device,
                 "seed": args.seed}  # fmt: skip
    values.update({k: v for k, v in overrides.items() if v is not None})
    for item in args.set:
        apply_override(values, item)
    if args.no_progress:
        values["progress"] = False
    config = PipelineConfig.from_dict(values)
    run_pipeline(config, resume=args.resume, command=" ".join(["spos", *sys.argv[1:]]))
    return 0


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
