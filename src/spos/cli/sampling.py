"""``spos plot-sampling``: how evenly each path sampler covers a MACs / params window."""

from __future__ import annotations

import argparse
import json

from ..configs import load_config
from ..cost.bounds import Bounds
from ..errors import SposError
from ..plots import plot_sampling
from ..sampling.coverage import SPEC_WINDOW, compare_samplers, default_window
from ..sampling.samplers import KINDS
from ..space import SCALES, SearchSpace
from .common import add_space_args, amount

EXAMPLES = """examples:
  spos plot-sampling --min-macs 190M --max-macs 330M --min-params 2.8M --max-params 5M
  spos plot-sampling --config fashion-mnist-supernet --samples 2000 --out sampling.png
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot-sampling",
        help="scatter MACs vs params of the uniform, random and strolling samplers",
        description="Draw N paths from each path sampler (uniform, random, strolling) under a "
        "target window, save a MACs-vs-params scatter PNG with the window drawn, and print each "
        "sampler's coverage: the share of occupied cells of a grid over the window among the "
        "cells any sampler reached. Default window: SPEC §4's 190-330M MACs and 2.8-5.0M params "
        "on the oneshot space; other spaces get the window at the same relative position.",
        epilog=EXAMPLES,
    )
    p.add_argument("--config", metavar="NAME|FILE.yaml",
                   help="training config (a preset or a file): take its space, window, min_channel_gene and "
                   "seed (space flags are then ignored; window flags still override; default: none)")  # fmt: skip
    add_space_args(p)
    g = p.add_argument_group("more search-space options")
    g.add_argument("--stage-depths", type=int, nargs="+", default=None, metavar="N",
                   help="blocks per stage (default 4 4 8 4; small preset: 1 1 2 1)")  # fmt: skip
    g.add_argument("--stem-stride", type=int, default=2, choices=(1, 2))
    g.add_argument("--min-scale", type=float, default=0.6,
                   help="smallest channel scale sampled (default 0.6: genes 0.6..2.0)")  # fmt: skip
    w = p.add_argument_group("target window (counts accept k/M/G suffixes, e.g. 190M)")
    for flag in ("--min-macs", "--max-macs", "--min-params", "--max-params"):
        w.add_argument(flag, type=amount, default=None, help="default: the config's or SPEC §4's window")
    w.add_argument("--max-latency-ms", type=float, default=None, help="needs --latency-table (default: no limit)")
    w.add_argument("--latency-table", metavar="FILE",
                   help="latency table from `spos latency-table` (default: the config's latency_table)")  # fmt: skip
    p.add_argument("--samples", type=int, default=5000, help="paths per sampler")
    p.add_argument("--grid", type=int, default=20, help="coverage grid cells per side")
    p.add_argument("--bin-macs", type=amount, default=None,
                   help="strolling MACs bin (default 20M; windows under 100M MACs get 10 bins)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="sampler seed (default: the config's, else 0)")
    p.add_argument("--out", default="sampling.png", help="PNG file to write")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _min_gene(scale: float) -> int:
    if scale not in SCALES:
        raise SposError(f"--min-scale {scale} is not a channel scale; choose one of {list(SCALES)}")
    return SCALES.index(scale)


def _setup(args: argparse.Namespace) -> tuple[SearchSpace, Bounds, int | None, int, str, str | None]:
    """Space, window, minimum channel gene, seed, where the window came from, latency table."""
    window_dict, seed, source, latency_table = None, 0, "default", args.latency_table
    if args.config:
        from ..train.config import TrainConfig, build_space

        cfg = TrainConfig.from_dict(load_config(args.config), where=f"config ({args.config})")
        space, _ = build_space(cfg)
        min_gene, seed, window_dict = cfg.min_channel_gene, cfg.seed, cfg.window
        latency_table = latency_table or cfg.latency_table
    else:
        min_gene = _min_gene(args.min_scale)
        opts = {"width": args.width, "use_se": args.use_se, "stem_stride": args.stem_stride,
                "last_conv_after_pooling": args.last_conv_after_pooling, "input_size": args.input_size,
                "input_channels": args.input_channels, "num_classes": args.num_classes}  # fmt: skip
        if args.stage_depths:
            opts["stage_depths"] = tuple(args.stage_depths)
        space = SearchSpace.preset(args.layout, **opts)
    if window_dict:
        window, source = Bounds(**window_dict), f"config {args.config}"
    else:
        window = default_window(space, min_gene)
        source = "SPEC §4" if window == SPEC_WINDOW else "default: SPEC §4's, relative to this space"
    flags = {k: getattr(args, k) for k in ("min_macs", "max_macs", "min_params", "max_params", "max_latency_ms")}
    if any(v is not None for v in flags.values()):
        window = Bounds(**{**window.to_dict(), **{k: v for k, v in flags.items() if v is not None}})
        source = "flags"
    if args.seed is not None:
        seed = args.seed
    return space, window, min_gene, seed, source, latency_table


def run(args: argparse.Namespace) -> int:
    space, window, min_gene, seed, source, latency_table = _setup(args)
    options = {"bin_macs": args.bin_macs} if args.bin_macs else {}
    latency = None
    if latency_table is not None:
        from ..cost.latency import LatencyTable

        latency = LatencyTable.load(latency_table)
    result = compare_samplers(space, window, args.samples, seed, KINDS, args.grid, min_gene, latency=latency,
                              **options)  # fmt: skip
    plot_sampling(result, args.out)
    if args.json:
        print(json.dumps({"window": window.to_dict(), "samples": args.samples, "grid": args.grid,
                          "coverage": result.coverage, "in_window": result.in_window,
                          "png": args.out}))  # fmt: skip
        return 0
    print(f"window      {window} ({source})")
    print(f"{'sampler':<12}{'in window':>10}{f'coverage ({args.grid}x{args.grid} grid)':>28}")
    for kind in KINDS:
        print(f"{kind:<12}{result.in_window[kind]:>10.1%}{result.coverage[kind]:>28.1%}")
    print(f"saved {args.out} ({args.samples} paths per sampler)")
    return 0
