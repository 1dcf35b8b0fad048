"""Deployment figures (issue 6): fp32 vs BN-folded vs int8 latency of OneShot-S+ in onnxruntime
(224x224, batch 1, 2 threads), int8 accuracy on a trained model, and the latency table's
prediction error on random archs.

    python benchmarks/deploy.py [--model runs/subnet/final.pt] [--archs 20] [--table lat.json]

Goals: int8 <= 0.7x fp32 latency; median |latency-table error| <= 15%. Variants are measured
interleaved, round after round, and each figure is the median of the rounds' medians, so a
neighbour's load spike hits all variants alike.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from spos import zoo
from spos.cost.latency import LatencyTable, measure_models_ms
from spos.cost.timing import onnx_latency
from spos.deploy.export import export_onnx, onnx_accuracy
from spos.deploy.quantize import quantize_onnx
from spos.genes import sample
from spos.nn.supernet import SubNet

THREADS = 2


def latency_variants(tmp: Path, rounds: int, repeats: int) -> None:
    e = zoo.get("oneshot-s+")
    torch.manual_seed(0)
    model = SubNet(e.space(), e.arch)
    shape = (3, 224, 224)
    files = {
        "fp32 (BN unfolded)": tmp / "unfolded.onnx",
        "fp32 BN-folded": tmp / "folded.onnx",
        "fp32 BN-folded, int8 graph": tmp / "folded_int8graph.onnx",
    }
    export_onnx(model, files["fp32 (BN unfolded)"], shape, fold=False)
    export_onnx(model, files["fp32 BN-folded"], shape)
    export_onnx(model, files["fp32 BN-folded, int8 graph"], shape, graph="int8")
    calib = torch.randn(32, *shape, generator=torch.Generator().manual_seed(0))
    int8 = {  # name: (fp32 source, quantize_onnx options)
        "int8 QDQ, int8 graph (default)": ("fp32 BN-folded, int8 graph", {}),
        "int8 QOperator, int8 graph": ("fp32 BN-folded, int8 graph", {"fmt": "qoperator"}),
        "int8 QDQ, plain graph": ("fp32 BN-folded", {}),
    }
    for i, (name, (src, kw)) in enumerate(int8.items()):
        files[name] = tmp / f"int8_{i}.onnx"
        quantize_onnx(files[src], files[name], calib, **kw)
    times: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(rounds):
        for name, f in files.items():
            times[name].append(onnx_latency(f, shape, THREADS, warmup=5, repeats=repeats))
    base = statistics.median(times["fp32 (BN unfolded)"])
    best = statistics.median(times["fp32 BN-folded"])
    print(
        f"\nOneShot-S+ in onnxruntime, 224x224, batch 1, {THREADS} threads "
        f"(median of {rounds} interleaved rounds x {repeats} runs)"
    )
    print(f"{'model':<34}{'ms':>9}{'x fp32':>9}{'x folded':>10}   rounds (ms)")
    for name, t in times.items():
        m = statistics.median(t)
        print(
            f"{name:<34}{m:>9.2f}{m / base:>9.2f}{m / best:>10.2f}   "
            f"{' '.join(f'{v:.1f}' for v in t)}"
        )
    m = statistics.median(times["int8 QDQ, int8 graph (default)"])
    print(f"int8 / fp32: {m / base:.2f}x, int8 / BN-folded fp32: {m / best:.2f}x (goal <= 0.7x)")


def accuracy(model_path: str | None, tmp: Path, calib_images: int, eval_images: int) -> None:
    print("\nint8 accuracy")
    if not model_path:
        print(
            "no trained model given (--model final.pt): accuracy not measured here; "
            "tests/test_deploy.py checks |fp32 - int8| <= 2 points on a model it trains"
        )
        return
    from spos.deploy.quantize import load_images as _images
    from spos.nn.io import load_model

    model, space, _ = load_model(model_path)
    shape = (space.input_channels, space.input_size, space.input_size)
    fp32, int8 = tmp / "trained.onnx", tmp / "trained_int8.onnx"
    calib, _ = _images("builtin", "train", calib_images, shape)
    export_onnx(model, fp32, shape, graph="int8")
    quantize_onnx(fp32, int8, calib)
    images, labels = _images("builtin", "val", eval_images, shape)
    a32, a8 = (
        onnx_accuracy(fp32, images, labels, THREADS),
        onnx_accuracy(int8, images, labels, THREADS),
    )
    t32 = statistics.median(onnx_latency(fp32, shape, THREADS) for _ in range(3))
    t8 = statistics.median(onnx_latency(int8, shape, THREADS) for _ in range(3))
    print(
        f"{model_path}: top-1 on {len(images)} test images fp32 {100 * a32:.2f}%, int8 {100 * a8:.2f}% "
        f"({100 * (a8 - a32):+.2f} points); latency fp32 {t32:.3f} ms, int8 {t8:.3f} ms ({t8 / t32:.2f}x)"
    )


def table_error(table_path: str | None, backend: str, n_archs: int, repeats: int, rounds: int) -> None:
    """Prediction error of the latency table on random archs it was not fitted on.

    A table built here times the archs in its own interleaved rounds (``check_archs``), so a
    change of the host's speed between building and checking cannot bias the comparison. A
    table loaded from a file can only be checked against fresh measurements.
    """
    space = zoo.get("oneshot-s+").space(channel_genes=tuple(range(2, 10)))
    if table_path and Path(table_path).is_file():
        table = LatencyTable.load(table_path)
        print(f"\nlatency table {table_path} ({table.backend}, {table.threads} threads)")
        rng = random.Random(0)
        archs = [sample(table.space, rng) for _ in range(n_archs)]
        t = time.perf_counter()
        measured = measure_models_ms(
            [SubNet(table.space, a) for a in archs], (3, 224, 224), table.backend, "cpu", THREADS,
            warmup=3, repeats=repeats, rounds=rounds,
        )  # fmt: skip
        print(f"{n_archs} archs measured now in {rounds} interleaved rounds in {time.perf_counter() - t:.0f} s")
        rows = [(str(a), m, table.predict(a)) for a, m in zip(archs, measured)]
    else:
        t = time.perf_counter()
        table = LatencyTable.build(
            space, "cpu", backend, THREADS, warmup=3, repeats=repeats, rounds=rounds, check_archs=n_archs
        )
        print(
            f"\nlatency table ({backend}, cpu, {THREADS} threads, batch 1, {repeats} repeats) and "
            f"{n_archs} held-out archs measured in the same {rounds} interleaved rounds in "
            f"{time.perf_counter() - t:.0f} s"
        )
        if table_path:
            table.save(table_path)
        rows = [(c["arch"], c["measured_ms"], c["predicted_ms"]) for c in table.checks]
    if not rows:
        return
    errors = []
    print(f"{'arch':<50}{'measured ms':>12}{'predicted':>11}{'error':>8}")
    for arch, m, predicted in rows:
        errors.append((predicted - m) / m)
        print(f"{arch:<50}{m:>12.2f}{predicted:>11.2f}{100 * errors[-1]:>7.1f}%")
    abs_err = sorted(abs(e) for e in errors)
    print(
        f"median |error| {100 * statistics.median(abs_err):.1f}% (goal <= 15%), max {100 * abs_err[-1]:.1f}%, "
        f"mean signed {100 * statistics.mean(errors):+.1f}%"
    )


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not installed"
    return onnxruntime.__version__


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model", help="trained subnet final.pt (builtin dataset) for the accuracy row"
    )
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument(
        "--table-rounds", type=int, default=3, help="interleaved passes of the table and the archs"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument(
        "--table", help="latency table JSON to reuse (built and saved there if missing)"
    )
    ap.add_argument("--backend", choices=["torch", "onnxruntime"], default="onnxruntime")
    ap.add_argument("--skip", nargs="*", default=[], choices=["latency", "accuracy", "table"])
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, onnxruntime {_ort_version()}, ISA {torch.backends.cpu.get_cpu_capability()}, "
        f"{os.cpu_count()} cores, "
        f"load average {load:.1f} at start",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if "latency" not in args.skip:
            latency_variants(Path(tmp), args.rounds, args.repeats)
        if "accuracy" not in args.skip:
            accuracy(args.model, Path(tmp), 256, 10000)
        if "table" not in args.skip:
            table_error(args.table, args.backend, args.archs, 10, args.table_rounds)
    print(f"load average at end {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
