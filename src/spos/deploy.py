"""Deployment (SPEC §6): BN folding, shuffle as a 1x1 conv, ONNX export, int8 quantisation and
the latency lookup table.

Units: latencies are milliseconds per forward pass of one batch (batch 1 unless said); accuracy
is top-1 as a fraction in [0, 1]. ONNX files take one input ``input`` (N, C, H, W, float32,
normalised as in training; N is dynamic) and give ``logits`` (N, num_classes).
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import math
import os
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import SposError
from .ops import ShuffleSplitConv
from .space import BLOCK_NAMES, SCALES, Arch, SearchSpace, mid_channels

#: ONNX opset of exported files: 14+ has HardSwish; 17 is well supported by onnxruntime's
#: quantiser and by the TorchScript exporter.
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"


# ---- BN folding and shuffle as conv ---------------------------------------------------------


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d merged into the conv before it.

    W' = W * gamma / sqrt(var + eps); b' = beta + (b - mean) * gamma / sqrt(var + eps).
    Conv -> BN pairs are found inside ``nn.Sequential`` containers, where all of spos's are.
    """
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = _fold(conv, bn)
                seq._modules[b] = nn.Identity()
    return model


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = (
        bn.weight / torch.sqrt(bn.running_var + bn.eps)
        if bn.affine
        else 1 / torch.sqrt(bn.running_var + bn.eps)
    )
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(shift + (bias - bn.running_mean) * scale)
    return fused


def shuffle_as_conv(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose stride-1 choice blocks shuffle-and-split with a fixed 1x1
    permutation conv (:class:`~spos.ops.ShuffleSplitConv`) instead of strided slicing.

    Outputs are identical; the original model's forward and state_dict are untouched.
    """
    from .blocks import ChoiceBlock

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, ChoiceBlock) and m.proj is None:
            p = next(m.parameters())
            m.split = ShuffleSplitConv(m.in_channels).to(device=p.device, dtype=p.dtype)
    return model


def deployable(model: nn.Module, shuffle_conv: bool = False) -> nn.Module:
    """What ships: an eval-mode copy with BN folded and, optionally, shuffle as a 1x1 conv."""
    model = fold_bn(model)
    return shuffle_as_conv(model) if shuffle_conv else model


# ---- ONNX export ----------------------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike | io.BytesIO,
    input_shape: Sequence[int],
    shuffle_conv: bool = False,
    fold: bool = True,
    dynamo: bool = False,
) -> None:
    """Write ``model`` as ONNX (opset :data:`OPSET`) with a dynamic batch dimension.

    ``input_shape`` is (C, H, W) of one image. BN is folded unless ``fold=False``.
    The TorchScript exporter is the default: on torch 2.14 it is ~30x faster than the
    ``torch.export``-based one (``dynamo=True``; 0.4 s vs 12 s for OneShot-S+), which matters
    when the latency table exports hundreds of blocks; both give the same numerics.
    """
    net = fold_bn(model) if fold else copy.deepcopy(model).eval()
    if shuffle_conv:
        net = shuffle_as_conv(net)
    x = torch.zeros((1, *input_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, not broken; users need not see that per call.
        warnings.simplefilter("ignore")
        if dynamo:
            kw = {"dynamic_shapes": {"x": {0: torch.export.Dim("batch")}}, "dynamo": True,
                  "opset_version": max(OPSET, 18), "external_data": False, "verbose": False}  # fmt: skip
        else:
            kw = {"dynamic_axes": {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, "dynamo": False,
                  "opset_version": OPSET}  # fmt: skip
        torch.onnx.export(net, (x,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], **kw)


def ort_session(model: str | os.PathLike | bytes, threads: int = 2, device: str = "cpu"):
    """An onnxruntime session with ``threads`` intra-op threads and full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # quantised graphs log harmless per-node warnings
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SposError(
                "onnxruntime here has no CUDA provider; install onnxruntime-gpu or use --device cpu"
            )
        providers.insert(0, "CUDAExecutionProvider")
    src = model if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes):
        check_onnx_file(model)
    return ort.InferenceSession(src, opts, providers=providers)


def check_onnx_file(path: str | os.PathLike) -> None:
    """Raise :class:`SposError` unless ``path`` is a readable ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.is_file():
        raise SposError(
            f"ONNX file {p} does not exist; write one with `spos export ARCH --onnx {p}`"
        )
    try:
        onnx.load(str(p), load_external_data=False)
    except (DecodeError, OSError, ValueError) as e:
        raise SposError(
            f"{p} is not an ONNX model ({str(e).splitlines()[0][:100]}); "
            f"pass a .onnx file written by `spos export`"
        ) from None


def onnx_input_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """(C, H, W) of the model's image input."""
    import onnx

    check_onnx_file(path)
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    if len(shape) != 3 or not all(shape):
        raise SposError(
            f"{path}: expected an image input (N, C, H, W) with fixed C, H, W, got {shape}"
        )
    return shape  # type: ignore[return-value]


def onnx_predict(session, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Logits of ``images`` (N, C, H, W) from an onnxruntime session, in batches."""
    x = images.numpy() if isinstance(images, torch.Tensor) else images
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: np.ascontiguousarray(x[i : i + batch_size], np.float32)})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def onnx_accuracy(
    path: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor, threads: int = 2
) -> float:
    """Top-1 accuracy (fraction) of an ONNX model on ``images`` / ``labels``."""
    logits = onnx_predict(ort_session(path, threads), images)
    return float((logits.argmax(1) == np.asarray(labels)).mean())


# ---- int8 quantisation ----------------------------------------------------------------------


class ImageCalibrationReader:
    """Feeds calibration images to onnxruntime's calibrator in batches (its CalibrationDataReader
    protocol: ``get_next()`` returns an input dict, then None when done)."""

    def __init__(
        self, images: np.ndarray | torch.Tensor, input_name: str = INPUT_NAME, batch_size: int = 16
    ) -> None:
        x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        self._batches = [
            {input_name: np.ascontiguousarray(x[i : i + batch_size], np.float32)}
            for i in range(0, len(x), batch_size)
        ]
        self._it: Iterator[dict] = iter(self._batches)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_onnx(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calibration: np.ndarray | torch.Tensor,
    fmt: str = "qdq",
    per_channel: bool = True,
    method: str = "minmax",
    preprocess: bool = True,
    exclude_op_types: Sequence[str] = (),
) -> None:
    """Static int8 post-training quantisation of an fp32 ONNX model with onnxruntime.

    ``calibration``: (N, C, H, W) images, normalised like the training data. ``fmt``: ``qdq``
    (QuantizeLinear/DequantizeLinear pairs, what onnxruntime fuses into int8 kernels) or
    ``qoperator`` (QLinearConv & co.). Weights int8 per output channel; activations uint8
    (onnxruntime's recommended U8S8 on x86). ``preprocess`` runs onnxruntime's
    ``quant_pre_process`` (symbolic shape inference + graph optimisation) first.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_onnx_file(src)
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if fmt not in formats:
        raise SposError(f"unknown quantisation format {fmt!r}; choose qdq or qoperator")
    if method not in methods:
        raise SposError(f"unknown calibration method {method!r}; choose {', '.join(methods)}")
    if len(calibration) == 0:
        raise SposError("no calibration images; pass --calib-images 1 or more")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(src)
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(model), str(pre), skip_symbolic_shape=False)
            model = pre
        op_types = None
        if exclude_op_types:
            import onnx

            present = {n.op_type for n in onnx.load(str(model)).graph.node}
            op_types = sorted(present - set(exclude_op_types))
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(model),
            str(dst),
            ImageCalibrationReader(calibration),
            quant_format=formats[fmt],
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            op_types_to_quantize=op_types,
        )


# ---- latency measurement --------------------------------------------------------------------


def median_ms(fn: Callable[[], object], warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def onnx_latency(
    path: str | os.PathLike | bytes,
    input_shape: Sequence[int],
    threads: int = 2,
    warmup: int = 5,
    repeats: int = 30,
    batch_size: int = 1,
) -> float:
    """Median ms of one onnxruntime run on a (batch_size, *input_shape) random input."""
    session = ort_session(path, threads)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    return median_ms(lambda: session.run(None, feed), warmup, repeats)


class _Timer:
    """Times one module on one backend/device: torch eager or onnxruntime (exported in memory)."""

    def __init__(
        self, backend: str, device: str, threads: int, warmup: int, repeats: int, batch_size: int
    ) -> None:
        if backend not in ("torch", "onnxruntime"):
            raise SposError(f"unknown backend {backend!r}; choose torch or onnxruntime")
        if device not in ("cpu", "cuda"):
            raise SposError(f"unknown device {device!r}; choose cpu or cuda")
        if device == "cuda" and backend == "torch" and not torch.cuda.is_available():
            raise SposError("--device cuda needs a CUDA GPU visible to torch; use --device cpu")
        self.backend, self.device, self.threads = backend, device, threads
        self.warmup, self.repeats, self.batch_size = warmup, repeats, batch_size

    def __call__(self, module: nn.Module, input_shape: Sequence[int]) -> float:
        module = fold_bn(module)
        if self.backend == "onnxruntime":
            buf = io.BytesIO()
            export_onnx(module, buf, input_shape, fold=False)
            return onnx_latency(
                buf.getvalue(),
                input_shape,
                self.threads,
                self.warmup,
                self.repeats,
                self.batch_size,
            )
        dev = torch.device(self.device)
        module = module.to(dev)
        x = torch.randn((self.batch_size, *input_shape), device=dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def run() -> None:
            module(x)
            sync()  # CUDA kernels are asynchronous: time their completion, not their launch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return median_ms(run, self.warmup, self.repeats)
        finally:
            torch.set_num_threads(previous)


class _Empty(nn.Module):
    """The cheapest model a backend can run: measures its per-call overhead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0  # onnx needs at least one node


@dataclass
class LatencyTable:
    """Measured latency (ms) of every (position, block, channel gene), the stem and the head.

    ``predict(arch)`` is the runtime's fixed per-call ``overhead_ms`` plus ``scale`` times the
    sum of the stem, the head and the arch's 20 block entries. Each entry is measured as a
    separate model, so the per-call overhead of a model with the same input is subtracted from
    each entry and the network's is added back once. Parts measured alone run with warm caches
    and no layout hand-over between them, so their sum under-predicts a whole network by a
    steady fraction (about 17% for onnxruntime on a 2-core CPU): ``scale`` is fitted on a few
    whole random subnets measured at build time (median ratio). Channel genes the space does not
    allow are not measured (None).
    """

    space: SearchSpace
    device: str
    backend: str
    threads: int
    batch_size: int
    overhead_ms: float
    stem_ms: float
    head_ms: float
    blocks: list[list[list[float | None]]]  # [position][block gene][channel gene]
    scale: float = 1.0  # whole network / sum of parts, fitted on calibration subnets

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        device: str = "cpu",
        backend: str = "torch",
        threads: int = 2,
        warmup: int = 3,
        repeats: int = 10,
        batch_size: int = 1,
        progress: Callable[[str], None] | None = None,
        calibration_archs: int = 5,
    ) -> LatencyTable:
        """Measure every part of ``space`` once (positions after the first in a stage are alike),
        then ``calibration_archs`` whole random subnets to fit :attr:`scale` (0: no fit)."""
        from .blocks import ChoiceBlock
        from .supernet import make_classifier, make_head, make_stem

        timer = _Timer(backend, device, threads, warmup, repeats, batch_size)
        overheads: dict[tuple, float] = {}

        def measure(module: nn.Module, shape: tuple) -> float:
            # Each part runs as its own model: take off the per-call cost of a model with the
            # same input (feeding and returning tensors of that size), added back once in predict.
            if shape not in overheads:
                overheads[shape] = timer(_Empty(), shape)
            return max(timer(module, shape) - overheads[shape], 0.0)

        image = (space.input_channels, space.input_size, space.input_size)
        stem = measure(make_stem(space), image)
        overhead = overheads[image]
        last = space.final_size
        head = measure(nn.Sequential(make_head(space), make_classifier(space)), (space.stage_channels[-1], last, last))
        positions = space.positions()
        blocks: list[list[list[float | None]]] = [
            [[None] * len(SCALES) for _ in BLOCK_NAMES] for _ in positions
        ]
        done: dict[tuple, int] = {}
        for p in positions:
            key = (p.in_channels, p.out_channels, p.stride, p.input_size, p.act, p.use_se)
            if key in done:
                blocks[p.index] = copy.deepcopy(blocks[done[key]])
                continue
            done[key] = p.index
            for b in range(len(BLOCK_NAMES)):
                for g in space.channel_genes:
                    block = ChoiceBlock(
                        p.in_channels,
                        p.out_channels,
                        p.stride,
                        b,
                        mid_channels(p.out_channels, g),
                        p.act,
                        p.use_se,
                    )
                    blocks[p.index][b][g] = measure(block, (p.in_channels, p.input_size, p.input_size))
            if progress:
                progress(
                    f"position {p.index}: {p.in_channels}->{p.out_channels}, stride {p.stride}, "
                    f"{p.input_size}x{p.input_size} measured"
                )
        table = cls(space, device, backend, threads, batch_size, overhead, stem, head, blocks)
        if calibration_archs > 0:
            from .space import sample
            from .supernet import SubNet

            rng = random.Random(0x5EED)  # its own stream: benchmarks test on other archs
            ratios = []
            for _ in range(calibration_archs):
                arch = sample(space, rng)
                whole = timer(SubNet(space, arch), image) - overhead
                ratios.append(whole / max(table.predict(arch) - overhead, 1e-9))
            table.scale = float(statistics.median(ratios))
            if progress:
                progress(f"calibrated on {calibration_archs} whole subnets: scale {table.scale:.3f}")
        return table

    def predict(self, arch: Arch) -> float:
        """Predicted latency of ``arch`` in milliseconds."""
        arch.validate(self.space)
        total = self.stem_ms + self.head_ms
        for i, (b, g) in enumerate(zip(arch.blocks, arch.channels)):
            ms = self.blocks[i][b][g]
            if ms is None:
                raise SposError(
                    f"the latency table has no entry for position {i}, {BLOCK_NAMES[b]} at "
                    f"scale {SCALES[g]}; rebuild it for this search space"
                )
            total += ms
        return self.overhead_ms + self.scale * total

    def to_dict(self) -> dict:
        return {
            "kind": "spos-latency-table",
            "unit": "ms",
            "space": self.space.to_dict(),
            "device": self.device,
            "backend": self.backend,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "overhead_ms": self.overhead_ms,
            "stem_ms": self.stem_ms,
            "head_ms": self.head_ms,
            "blocks": self.blocks,
            "scale": self.scale,
        }

    def save(self, path: str | os.PathLike) -> None:
        from .runs import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        p = Path(path)
        if not p.is_file():
            raise SposError(
                f"latency table {p} does not exist; build one with `spos latency-table --out {p}`"
            )
        try:
            d = json.loads(p.read_text())
            if d.get("kind") != "spos-latency-table":
                raise ValueError("not a spos latency table")
            space = SearchSpace.from_dict(d["space"])
            blocks = [
                [
                    [
                        None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                        for v in row
                    ]
                    for row in pos
                ]
                for pos in d["blocks"]
            ]
            if len(blocks) != space.num_blocks:
                raise ValueError(f"{len(blocks)} positions for a {space.num_blocks}-block space")
            return cls(
                space,
                d["device"],
                d["backend"],
                int(d["threads"]),
                int(d["batch_size"]),
                float(d["overhead_ms"]),
                float(d["stem_ms"]),
                float(d["head_ms"]),
                blocks,
                float(d.get("scale", 1.0)),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise SposError(
                f"{p} is not a spos latency table ({e}); build one with `spos latency-table`"
            ) from None


def measure_model_ms(
    model: nn.Module,
    input_shape: Sequence[int],
    backend: str = "torch",
    device: str = "cpu",
    threads: int = 2,
    warmup: int = 3,
    repeats: int = 10,
    batch_size: int = 1,
) -> float:
    """Median ms of a whole (BN-folded) model, measured like the latency table's entries."""
    return _Timer(backend, device, threads, warmup, repeats, batch_size)(model, input_shape)
