"""``spos profile | export | quantize | latency-table``: the deployment commands (SPEC §6)."""

from __future__ import annotations

import argparse
import statistics
import sys

from ..errors import SposError
from ..space import SearchSpace
from .common import add_space_args, set_help, space_from_args

EXAMPLES = {
    "profile": """examples:
  spos profile oneshot-s+ --micronet
  spos profile 0031-1100-20211020-2132:6535-2634-25754674-4543 --csv profile.csv
""",
    "export": """examples:
  spos export runs/demo/subnet/final.pt --onnx subnet.onnx --graph int8
  spos export oneshot-s+ --onnx oneshot-s+.onnx
""",
    "quantize": """examples:
  spos quantize subnet.onnx --calib builtin --out subnet.int8.onnx
  spos quantize model.onnx --calib /data/imagenet --out model.int8.onnx --eval-images 0
""",
    "latency-table": """examples:
  spos latency-table --device cpu --threads 2 --out latency.json
  spos latency-table --config imagenet --device cuda --out latency-gpu.json
""",
}


def register(sub: argparse._SubParsersAction) -> None:
    _register_profile(sub)
    _register_export(sub)
    _register_quantize(sub)
    _register_latency_table(sub)


def _register_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="op-by-op MACs / params / MicroNet table of an arch or zoo model",
        description="One row per op (conv, dwconv, linear, pool, activation, SE scale): "
        "input size, kernel, Cin, Cout, params, multiplies, adds, MACs, quantizable; "
        "then totals. See docs/profiling.md.",
        epilog=EXAMPLES["profile"],
    )
    p.add_argument("arch", metavar="ARCH_OR_ZOO_NAME")
    p.add_argument(
        "--micronet", action="store_true", help="fold BN into the convs first (MicroNet counting)"
    )
    p.add_argument("--csv", metavar="FILE", help="also write the rows (and a totals row) as CSV (default: none)")
    add_space_args(p)
    p.set_defaults(func=run_profile)


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export an arch, zoo model or trained subnet to ONNX (BN folded)",
        description="ARCH_OR_CKPT: an arch string or zoo name (random weights) or a "
        "trained subnet file (final.pt). The batch dimension is dynamic. The file is "
        "checked against PyTorch in onnxruntime before the command succeeds.",
        epilog=EXAMPLES["export"],
    )
    p.add_argument("source", metavar="ARCH_OR_CKPT")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument(
        "--graph",
        choices=["plain", "int8", "conv"],
        default="plain",
        help="plain: fastest in fp32 (default); int8: for `spos quantize` (channel shuffle "
        "absorbed into the weights, hard-swish as Add + Mul; about 2x faster int8 in "
        "onnxruntime); conv: shuffle as a 1x1 permutation conv (backends that dislike "
        "strided slicing; costs C^2 MACs per stride-1 block)",
    )
    p.add_argument(
        "--dynamo", action="store_true", help="use the torch.export-based exporter (slower)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights of an arch or zoo name"
    )
    add_space_args(p)
    p.set_defaults(input_size=None, func=run_export)  # None: a checkpoint keeps its own size
    set_help(p, "input_size", "input resolution (default: a checkpoint's own, else 224)")


def _register_quantize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8 static quantisation of an ONNX model (onnxruntime)",
        description="Calibrate on N images of the training split, quantise weights "
        "(int8, per channel) and activations (uint8), then report top-1 of fp32 and "
        "int8 on the test split and their latency on this CPU.",
        epilog=EXAMPLES["quantize"],
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument(
        "--calib",
        required=True,
        metavar="builtin|PATH",
        help="calibration data: builtin (Fashion-MNIST) or an ImageFolder root",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="int8 .onnx file to write")
    p.add_argument(
        "--calib-images",
        type=int,
        default=256,
        metavar="N",
        help="calibration images (default 256)",
    )
    p.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor, not per channel"
    )
    p.add_argument(
        "--exclude", nargs="*", default=[], metavar="OP", help="ONNX op types to keep in fp32 (default: none)"
    )
    p.add_argument(
        "--eval-images",
        type=int,
        default=10000,
        metavar="N",
        help="test images for the accuracy report (0: skip it)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="onnxruntime threads for the latency report"
    )
    p.set_defaults(func=run_quantize)


def _register_latency_table(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "latency-table",
        help="measure a latency lookup table for latency-constrained search",
        description="Median latency (ms) of every (position, block, allowed channel "
        "gene) of the search space plus stem and head, measured once per distinct "
        "position and BN-folded; `spos search --latency-table FILE` sums its entries.",
        epilog=EXAMPLES["latency-table"],
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    p.add_argument("--out", required=True, metavar="FILE", help="output .json")
    p.add_argument(
        "--config", metavar="NAME|FILE",
        help="a preset or YAML config whose `space:` mapping gives the search space (default: the space flags)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved passes over all parts; each entry is their median")
    p.add_argument("--calibration-archs", type=int, default=5,
                   help="whole random subnets measured to fit the table's scale (0: none)")
    p.add_argument("--check-archs", type=int, default=5,
                   help="held-out whole random subnets timed in the same rounds to report the "
                   "table's prediction error (0: none)")
    add_space_args(p)
    p.set_defaults(func=run_latency_table)


# ---- profile ---------------------------------------------------------------------------------

_HEAD = ("op name", "op", "input", "k", "Cin", "Cout", "params", "mults", "adds", "MACs", "quant")
_WIDTHS = (34, 10, 12, 3, 5, 5, 9, 12, 12, 12, 6)


def run_profile(args: argparse.Namespace) -> int:
    from ..deploy.profile import COLUMNS, profile_arch

    prof = profile_arch(args.arch, space_from_args(args), args.micronet)
    print(" ".join(f"{h:<{w}}" if i < 3 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(_HEAD, _WIDTHS))))
    for r in prof.rows:
        d = r.as_dict()
        cells = [d[c] for c in COLUMNS]
        cells[-1] = "yes" if r.quantizable else "no"
        print(
            " ".join(
                f"{c!s:<{w}}" if i < 3 else f"{c:>{w}}" if isinstance(c, str) else f"{c:>{w},}"
                for i, (c, w) in enumerate(zip(cells, _WIDTHS))
            )
        )
    t, quant = prof.totals, prof.quantizable
    print(
        f"total: {len(prof.rows)} ops, params {t['params']:,}, mults {t['mults']:,}, "
        f"adds {t['adds']:,}, MACs {t['macs']:,}"
    )
    print(f"quantizable ops: mults {sum(r.mults for r in quant):,}, adds {sum(r.adds for r in quant):,}")
    if args.micronet:
        print(f"MicroNet score {prof.micronet_score:.4f} (params/6.9M + (mults+adds)/1170M)")
    if args.csv:
        print(f"wrote {prof.write_csv(args.csv)}")
    return 0


# ---- export ----------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    from ..deploy.export import export_source

    # An explicit --input-size overrides a checkpoint's resolution; an arch string defaults to 224.
    result = export_source(args.source, args.onnx, graph=args.graph, dynamo=args.dynamo,
                           space=space_from_args(args), input_size=args.input_size, seed=args.seed)  # fmt: skip
    print(
        f"wrote {result.path} (input 1x{'x'.join(map(str, result.input_shape))}, dynamic batch; "
        f"onnxruntime vs PyTorch max abs diff {result.max_abs_diff:.1e})"
    )
    return 0


# ---- quantize --------------------------------------------------------------------------------


def run_quantize(args: argparse.Namespace) -> int:
    from ..deploy.quantize import quantize_and_measure

    if args.calib_images < 1:
        raise SposError("--calib-images must be at least 1")
    r = quantize_and_measure(args.model, args.out, args.calib, calib_images=args.calib_images,
                             eval_images=args.eval_images, threads=args.threads, fmt=args.format,
                             per_channel=not args.per_tensor, method=args.method,
                             exclude_op_types=args.exclude)  # fmt: skip
    if r.strided_slices:
        print(
            f"note: {args.model} splits channels with strided slices, which onnxruntime's int8 "
            f"kernels run slowly; `spos export ... --graph int8` writes the same model without them"
        )
    print(
        f"wrote {args.out} ({args.format}, int8 weights per {'tensor' if args.per_tensor else 'channel'}, "
        f"calibrated on {r.calib_images} images of {args.calib})"
    )
    if r.top1_fp32 is not None and r.top1_int8 is not None:
        print(
            f"top-1 on {r.eval_images} test images: fp32 {100 * r.top1_fp32:.2f}%  "
            f"int8 {100 * r.top1_int8:.2f}%  (change {100 * (r.top1_int8 - r.top1_fp32):+.2f} points)"
        )
    t32, t8 = r.latency_fp32_ms, r.latency_int8_ms
    print(
        f"latency, batch 1, {args.threads} threads: fp32 {t32:.3f} ms  int8 {t8:.3f} ms  ({t8 / t32:.2f}x)"
    )
    return 0


# ---- latency-table ---------------------------------------------------------------------------


def _latency_space(args: argparse.Namespace) -> SearchSpace:
    """The --config file's `space:` (resolved as training does: layout/width keys, the dataset's
    defaults), else the space flags with the searchable channel genes 0.6..2.0."""
    from ..configs import load_config
    from ..data import data_info

    if not args.config:
        return space_from_args(args).replace(channel_genes=tuple(range(2, 10)))
    cfg = load_config(args.config)
    if not isinstance(cfg.get("space"), dict):
        raise SposError(f"config {args.config} has no `space:` mapping to build the table for")
    return SearchSpace.from_options(cfg["space"], defaults=data_info(cfg.get("data", "builtin")))


def run_latency_table(args: argparse.Namespace) -> int:
    from ..cost.latency import LatencyTable

    space = _latency_space(args)
    if min(args.repeats, args.threads, args.batch_size, args.rounds) < 1 or args.warmup < 0:
        raise SposError("--repeats, --rounds, --threads and --batch-size must be >= 1 and --warmup >= 0")
    if min(args.calibration_archs, args.check_archs) < 0:
        raise SposError("--calibration-archs and --check-archs must be >= 0")
    table = LatencyTable.build(
        space,
        args.device,
        args.backend,
        args.threads,
        args.warmup,
        args.repeats,
        args.batch_size,
        progress=lambda msg: print(msg, file=sys.stderr),
        calibration_archs=args.calibration_archs,
        rounds=args.rounds,
        check_archs=args.check_archs,
    )
    table.save(args.out)
    print(
        f"wrote {args.out}: {args.backend} on {args.device}, {args.threads} threads, batch {args.batch_size}; "
        f"stem {table.stem_ms:.3f} ms, head {table.head_ms:.3f} ms, per-call overhead {table.overhead_ms:.3f} ms"
    )
    if table.checks:
        errors = sorted(abs(e) for e in table.check_errors())
        print(
            f"prediction error on {len(errors)} held-out subnets timed in the same rounds: "
            f"median {100 * statistics.median(errors):.1f}%, max {100 * errors[-1]:.1f}%"
        )
    return 0
