"""``spos store``: look inside the SQLite store of supernet scores and stand-alone results."""

from __future__ import annotations

import argparse
import csv
import sys

from ..errors import SposError

EXAMPLES = """examples:
  spos store ls runs/demo/spos-store.sqlite
  spos store show runs/demo/spos-store.sqlite --supernet 3f2a91c0 --top 10
  spos store export runs/demo/spos-store.sqlite --csv scores.csv
"""

FIELDS = ("supernet_hash", "settings_hash", "arch", "accuracy", "loss", "macs", "params", "latency", "images")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="list, show or export the candidate store (spos-store.sqlite)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    raw = argparse.RawDescriptionHelpFormatter
    ls = verbs.add_parser("ls", help="one line per supernet file and scoring settings", formatter_class=raw,
                          epilog="examples:\n  spos store ls runs/demo/spos-store.sqlite\n")
    ls.add_argument("store", help="the store file (default place: beside the run folders)")
    ls.set_defaults(func=run_ls)
    show = verbs.add_parser("show", help="the best candidates of one supernet file", formatter_class=raw,
                            epilog="examples:\n  spos store show runs/demo/spos-store.sqlite --supernet 3f2a --top 5\n")
    show.add_argument("store")
    show.add_argument("--supernet", help="supernet hash or its prefix (default: the only one)")
    show.add_argument("--top", type=int, default=10, help="rows to print (default: 10)")
    show.set_defaults(func=run_show)
    export = verbs.add_parser("export", help="every supernet score as CSV", formatter_class=raw,
                              epilog="examples:\n  spos store export runs/demo/spos-store.sqlite --csv scores.csv\n")
    export.add_argument("store")
    export.add_argument("--csv", required=True, metavar="FILE", help="output CSV file (- for stdout)")
    export.set_defaults(func=run_export)


def _open(path: str):
    from pathlib import Path

    from ..store import Store

    if not Path(path).is_file():
        raise SposError(f"no store at {path}; a search or fidelity run writes one (default: beside its --out)")
    return Store(path)


def run_ls(args: argparse.Namespace) -> int:
    with _open(args.store) as store:
        rows = store.supernets()
        counts = store.counts()
    print(f"{args.store}: {counts['supernet_score']} supernet scores, {counts['standalone']} stand-alone results")
    for r in rows:
        print(f"  supernet {r['supernet_hash']}  settings {r['settings_hash']}  {r['candidates']:5d} candidates  "
              f"best {100 * r['best_accuracy']:.2f}%  {r['path'] or ''}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _open(args.store) as store:
        hashes = sorted({r["supernet_hash"] for r in store.supernets()})
        pick = [h for h in hashes if args.supernet is None or h.startswith(args.supernet)]
        if len(pick) != 1:
            raise SposError(f"{len(pick)} supernet files match {args.supernet or '(any)'} among {hashes}; "
                            f"pass --supernet with a prefix of one")  # fmt: skip
        rows = sorted(store.candidates(pick[0]), key=lambda r: (-r["accuracy"], r["arch"]))
    for r in rows[: args.top]:
        macs = "" if r["macs"] is None else f"  {r['macs'] / 1e6:.3f}M MACs"
        loss = "" if r["loss"] is None else f"  loss {r['loss']:.4f}"
        print(f"{r['arch']}  {100 * r['accuracy']:.2f}%{loss}{macs}  settings {r['settings_hash']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with _open(args.store) as store:
        rows = store.candidates()
    out = sys.stdout if args.csv == "-" else None
    if out is None:
        import io

        from ..runs import atomic_write_text

        buf = io.StringIO()
        _write(buf, rows)
        atomic_write_text(args.csv, buf.getvalue())
        print(f"{len(rows)} rows written to {args.csv}")
    else:
        _write(out, rows)
    return 0


def _write(f, rows: list[dict]) -> None:
    writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "latency": "" if not r["latency"] else ";".join(f"{k}={v:.4f}" for k, v in r["latency"].items())})
