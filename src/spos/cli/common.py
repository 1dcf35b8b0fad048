"""Arguments shared by several commands."""

from __future__ import annotations

import argparse

from ..runtime import parse_amount
from ..space import LAYOUTS, SearchSpace


def add_space_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search space (ignored for zoo names, which carry their own)")
    g.add_argument("--layout", choices=list(LAYOUTS), default="oneshot", help="stage channel layout")
    g.add_argument("--width", type=float, default=1.0, help="multiplier on the layout's channels")
    g.add_argument("--use-se", action="store_true", help="hard-swish + SE in later stages (SPEC §1)")
    g.add_argument("--last-conv-after-pooling", action="store_true", help="MobileNetV3-style head")
    g.add_argument("--input-size", type=int, default=224, help="input resolution (multiple of 32)")
    g.add_argument("--input-channels", type=int, default=3)
    g.add_argument("--num-classes", type=int, default=1000)


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    """The space of :func:`add_space_args`' flags (every channel gene allowed, as an arch string
    may use any); a flag a command set to None keeps the SearchSpace default."""
    opts = {"layout": args.layout, "width": args.width, "use_se": args.use_se,
            "last_conv_after_pooling": args.last_conv_after_pooling, "input_size": args.input_size,
            "input_channels": args.input_channels, "num_classes": args.num_classes}  # fmt: skip
    return SearchSpace.from_options({k: v for k, v in opts.items() if v is not None},
                                    defaults={"channel_genes": tuple(range(10))})  # fmt: skip


def amount(text: str) -> float:
    """argparse type for counts: '190M', '2.8m', '5e6' or '5000000' (k, M, G suffixes)."""
    try:
        return parse_amount(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 330M, 2.8M or 3.4e6, got {text!r}") from None
