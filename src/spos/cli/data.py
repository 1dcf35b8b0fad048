"""``spos data fetch``: the built-in dataset into a per-user data folder (library: spos.data)."""

from __future__ import annotations

import argparse

from ..data import fetch_fashion_mnist, user_data_dir

EXAMPLES = """examples:
  spos data fetch                 # into $SPOS_DATA or ~/.local/share/spos/fashion-mnist
  spos data fetch --dir data      # into ./data/fashion-mnist (what `make data` does)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch the built-in dataset (Fashion-MNIST)",
        description="`--data builtin` reads Fashion-MNIST from $SPOS_DATA, ./data/fashion-mnist, the "
        "per-user data folder or /usr/share/datasets/fashion-mnist. `spos data fetch` puts it into "
        "DIR/fashion-mnist from Debian's dataset-fashion-mnist package (apt-get download + dpkg-deb "
        "-x, no root).",
        epilog=EXAMPLES,
    )
    s = p.add_subparsers(dest="data_command", metavar="{fetch}", required=True)
    f = s.add_parser("fetch", help="put Fashion-MNIST into DIR/fashion-mnist", epilog=EXAMPLES)
    f.add_argument("--dir", metavar="DIR", default=None,
                   help=f"data folder (default: $SPOS_DATA, else $XDG_DATA_HOME/spos; here {user_data_dir()})")  # fmt: skip
    f.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    fetch_fashion_mnist(args.dir)
    return 0
