"""Int8 post-training quantisation of an ONNX file with onnxruntime (static, QDQ), calibrated on
a few batches of training images.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import SposError
from ..nn.onnx import INPUT_NAME, check_onnx_file


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
