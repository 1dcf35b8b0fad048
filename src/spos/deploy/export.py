"""What ships: the deployable graph of a model (BN folded; plain, int8-friendly or shuffle as
conv), its ONNX file, and its accuracy under onnxruntime."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SposError
from ..nn.fold import fold_bn, shuffle_as_conv
from ..nn.onnx import onnx_predict, ort_session, write_onnx
from .int8 import scale_hardswish, shuffle_in_weights

#: Export graphs: ``plain`` (fastest fp32), ``int8`` (fastest int8 in onnxruntime: no strided
#: slices, hard-swish as Add + Mul) and ``conv`` (shuffle as a 1x1 permutation conv).
GRAPHS = ("plain", "int8", "conv")


def deployable(model: nn.Module, graph: str = "plain") -> nn.Module:
    """What ships: an eval-mode copy with BN folded, as one of :data:`GRAPHS`."""
    if graph == "plain":
        return fold_bn(model)
    if graph == "conv":
        return shuffle_as_conv(fold_bn(model))
    if graph == "int8":
        return scale_hardswish(shuffle_in_weights(model))
    raise SposError(f"unknown graph {graph!r}; choose one of {', '.join(GRAPHS)}")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike | io.BytesIO,
    input_shape: Sequence[int],
    graph: str = "plain",
    fold: bool = True,
    dynamo: bool = False,
) -> None:
    """Write ``model`` as ONNX: its :func:`deployable` ``graph`` (BN folded), or the model as
    it is with ``fold=False``. ``input_shape`` is (C, H, W) of one image."""
    write_onnx(deployable(model, graph) if fold else model, path, input_shape, dynamo)


def onnx_accuracy(
    path: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor, threads: int = 2
) -> float:
    """Top-1 accuracy (fraction) of an ONNX model on ``images`` / ``labels``."""
    logits = onnx_predict(ort_session(path, threads), images)
    return float((logits.argmax(1) == np.asarray(labels)).mean())
