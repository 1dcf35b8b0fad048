"""The ``spos`` command line: a thin layer over the library (one module per command group)."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import EXIT_PREEMPTED, Preempted, SposError
from ..runtime import end_distributed
from .common import SposParser

#: Command modules under spos.cli; each has ``register(subparsers)`` setting ``func`` per command.
COMMAND_MODULES = ("count", "train", "sampling", "search", "deploy", "pipeline", "fidelity", "configs", "data", "store")


def build_parser() -> argparse.ArgumentParser:
    parser = SposParser(
        prog="spos",
        description="Single Path One-Shot NAS: train a supernet, search it, train and ship the winner.",
        epilog="examples:\n  spos pipeline --out runs/demo --resume     # the demo, on the built-in data\n"
        "  spos count oneshot-s+ --json\n",
    )
    parser.add_argument("--version", action="version", version=f"spos {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        end_distributed()  # under torchrun: every rank finished; leave the group together
        return code
    except Preempted as e:
        print(f"spos: stopped: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except SposError as e:
        print(f"spos: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spos: interrupted", file=sys.stderr)
        return 130
