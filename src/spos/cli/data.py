"""``spos data fetch``: the built-in dataset into a per-user data folder; ``spos data pack``: an
ImageFolder tree into tar shards of pre-resized JPEGs (library: spos.data)."""

from __future__ import annotations

import argparse

from ..data import fetch_fashion_mnist, pack, user_data_dir

FETCH_EXAMPLES = """examples:
  spos data fetch                 # into $SPOS_DATA or ~/.local/share/spos/fashion-mnist
  spos data fetch --dir data      # into ./data/fashion-mnist (what `make data` does)
"""
EXAMPLES = FETCH_EXAMPLES + """  spos data pack /data/imagenet /data/imagenet-256 --workers 8   # then --data /data/imagenet-256
"""
PACK_EXAMPLES = """examples:
  spos data pack /data/imagenet /data/imagenet-256 --workers 8   # then --data /data/imagenet-256
  spos data pack /data/imagenet /data/imagenet-full --short-side 0   # keep every image's size
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch the built-in dataset (Fashion-MNIST), or pack an ImageFolder tree into shards",
        description="`--data builtin` reads Fashion-MNIST from $SPOS_DATA, ./data/fashion-mnist, the "
        "per-user data folder or /usr/share/datasets/fashion-mnist. `spos data fetch` puts it into "
        "DIR/fashion-mnist from Debian's dataset-fashion-mnist package (apt-get download + dpkg-deb "
        "-x, no root). `spos data pack` turns an ImageFolder tree into tar shards that `--data` "
        "reads faster.",
        epilog=EXAMPLES,
    )
    s = p.add_subparsers(dest="data_command", metavar="{fetch,pack}", required=True)
    f = s.add_parser("fetch", help="put Fashion-MNIST into DIR/fashion-mnist", epilog=FETCH_EXAMPLES)
    f.add_argument("--dir", metavar="DIR", default=None,
                   help=f"data folder (default: $SPOS_DATA, else $XDG_DATA_HOME/spos; here {user_data_dir()})")  # fmt: skip
    f.set_defaults(func=run_fetch)
    k = s.add_parser(
        "pack",
        help="write an ImageFolder tree as tar shards of pre-resized JPEGs",
        description="Packs SRC/{train,val}/CLASS/IMAGE into DEST/{train,val}-NNNNNN.tar (WebDataset "
        "naming: KEY.jpg + KEY.cls, samples shuffled once) and DEST/index.json (classes, counts, "
        "offsets). `--data DEST` then trains from the shards: JPEG decoding costs about its pixel "
        "count, so smaller images train faster. Each shard is written to a temporary file and "
        "renamed when complete: run the same command again to resume.",
        epilog=PACK_EXAMPLES,
    )
    k.add_argument("src", metavar="SRC", help="ImageFolder root holding train/ and/or val/")
    k.add_argument("dest", metavar="DEST", help="folder for the shards and index.json")
    k.add_argument("--shard-size", type=int, default=1000, metavar="N", help="images per shard")
    k.add_argument("--short-side", type=int, default=256, metavar="S",
                   help="resize images to S pixels on their short side, never enlarging; 0 keeps every "
                        "size (256 keeps the eval transform's resize 256 + crop 224 exact)")  # fmt: skip
    k.add_argument("--quality", type=int, default=90, metavar="Q", help="JPEG quality of resized images")
    k.add_argument("--workers", type=int, default=1, metavar="N", help="processes writing shards")
    k.set_defaults(func=run_pack)


def run_fetch(args: argparse.Namespace) -> int:
    fetch_fashion_mnist(args.dir)
    return 0


def run_pack(args: argparse.Namespace) -> int:
    pack(args.src, args.dest, args.shard_size, args.short_side, args.quality, args.workers)
    return 0
