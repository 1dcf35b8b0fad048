"""Arguments shared by several commands."""

from __future__ import annotations

import argparse

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
    return SearchSpace.preset(
        args.layout,
        width=args.width,
        use_se=args.use_se,
        last_conv_after_pooling=args.last_conv_after_pooling,
        input_size=args.input_size,
        input_channels=args.input_channels,
        num_classes=args.num_classes,
        channel_genes=tuple(range(10)),
    )
