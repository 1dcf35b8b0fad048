"""Int8 post-training quantisation of an ONNX file with onnxruntime (static, QDQ), calibrated on
a few batches of training images, and what it costs: top-1 (fraction) and latency (ms) of the
fp32 and int8 files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cost.timing import onnx_latency
from ..data import dataset, to_tensors
from ..errors import SposError
from ..nn.onnx import INPUT_NAME, check_onnx_file, onnx_input_shape, strided_slices
from ..runs import atomic_write_bytes
from .export import onnx_accuracy


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
    Longer than a screen: onnxruntime's quantiser options, each set once with its reason.
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
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(model),
            str(out),
            ImageCalibrationReader(calibration),
            quant_format=formats[fmt],
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            op_types_to_quantize=op_types,
        )
        atomic_write_bytes(dst, out.read_bytes())  # one line on ENOSPC/EACCES, no partial file


def load_images(
    data: str, split: str, n: int, shape: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of ``min(n, len)`` images of ``split`` (``train`` or ``val``) of ``data``
    ('builtin' or an ImageFolder root), drawn with a fixed seed and preprocessed as for
    evaluation (no augmentation). SposError unless the images have ``shape`` (C, H, W)."""
    ds = dataset(data, split, train=False, input_size=shape[1])
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    images, labels = to_tensors(ds, order[: min(n, len(ds))].tolist())
    if tuple(images.shape[1:]) != tuple(shape):
        raise SposError(
            f"{data} gives images of shape {tuple(images.shape[1:])} but the model expects "
            f"{tuple(shape)}; export the model for this dataset's size and channels"
        )
    return images, labels


@dataclass(frozen=True)
class QuantizeReport:
    """What :func:`quantize_and_measure` wrote and measured."""

    src: Path  # the fp32 ONNX file
    dst: Path  # the int8 ONNX file written
    input_shape: tuple[int, int, int]  # C, H, W of one image
    calib_images: int  # images actually used for calibration
    strided_slices: int  # Slice nodes of ``src`` taking every n-th channel (slow in int8)
    eval_images: int  # test images of the accuracy check (0: not measured)
    top1_fp32: float | None  # fraction in [0, 1]; None when not measured
    top1_int8: float | None
    latency_fp32_ms: float  # median ms per batch-1 forward in onnxruntime on this CPU
    latency_int8_ms: float
    threads: int  # onnxruntime intra-op threads of the latency and accuracy runs


def quantize_and_measure(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    data: str,
    calib_images: int = 256,
    eval_images: int = 10000,
    threads: int = 2,
    fmt: str = "qdq",
    per_channel: bool = True,
    method: str = "minmax",
    exclude_op_types: Sequence[str] = (),
) -> QuantizeReport:
    """The library call behind ``spos quantize``: :func:`quantize_onnx` ``src`` into ``dst``,
    calibrated on ``calib_images`` training images of ``data``, then top-1 of both files on
    ``eval_images`` test images (0: skip) and their batch-1 latency with ``threads`` threads."""
    shape = onnx_input_shape(src)
    calib, _ = load_images(data, "train", calib_images, shape)
    slices = strided_slices(src)
    quantize_onnx(src, dst, calib, fmt=fmt, per_channel=per_channel, method=method,
                  exclude_op_types=exclude_op_types)  # fmt: skip
    top1_fp32 = top1_int8 = None
    n_eval = 0
    if eval_images > 0:
        images, labels = load_images(data, "val", eval_images, shape)
        n_eval = len(images)
        top1_fp32 = onnx_accuracy(src, images, labels, threads)
        top1_int8 = onnx_accuracy(dst, images, labels, threads)
    return QuantizeReport(
        src=Path(src), dst=Path(dst), input_shape=shape, calib_images=len(calib), strided_slices=slices,
        eval_images=n_eval, top1_fp32=top1_fp32, top1_int8=top1_int8,
        latency_fp32_ms=onnx_latency(src, shape, threads), latency_int8_ms=onnx_latency(dst, shape, threads),
        threads=threads,
    )  # fmt: skip
