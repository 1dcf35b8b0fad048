"""``spos count``: MACs, parameters and scores of an architecture."""

from __future__ import annotations

import argparse
import json

from .common import add_space_args, space_from_args

EXAMPLES = """examples:
  spos count oneshot-s+
  spos count 0031-1100-20211020-2132:6535-2634-25754674-4543 --use-se --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "count",
        help="MACs / params / scores of an arch or zoo model",
        description="Count MACs (SPEC §3 convention), parameters, the Σ normalized score and the "
        "MicroNet score of an arch string (BLOCKS:CHANNELS) or zoo name (oneshot, oneshot+, oneshot-s+).",
        epilog=EXAMPLES,
    )
    p.add_argument("arch", metavar="ARCH_OR_ZOO_NAME")
    add_space_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..deploy.profile import count_arch

    result = count_arch(args.arch, space_from_args(args))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"arch            {result['arch']}")
    print(f"MACs            {result['macs']:,} ({result['macs'] / 1e6:.2f}M)")
    print(f"params          {result['params']:,} ({result['params'] / 1e6:.3f}M)")
    print(f"sigma score     {result['sigma_score']:.4f}  (MACs/328M + params/3.4M)")
    print(
        f"MicroNet        {result['micronet_params'] / 1e6:.3f}M params, "
        f"{result['micronet_mults'] / 1e6:.1f}M mults, {result['micronet_adds'] / 1e6:.1f}M adds, "
        f"score {result['micronet_score']:.4f}"
    )
    return 0
