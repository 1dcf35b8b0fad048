"""What ships: the deployable graph of a model (BN folded; plain, int8-friendly or shuffle as
conv), its ONNX file checked against PyTorch, and its accuracy under onnxruntime."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import zoo
from ..errors import SposError
from ..nn.fold import fold_bn, shuffle_as_conv
from ..nn.io import load_model
from ..nn.onnx import INPUT_NAME, onnx_predict, ort_session, write_onnx
from ..nn.supernet import SubNet
from ..space import SearchSpace
from .int8 import scale_hardswish, shuffle_in_weights

#: Largest |onnxruntime - PyTorch| logit difference an export may show (fp32 rounding only).
PARITY_ATOL = 1e-4

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


def load_for_export(
    source: str, space: SearchSpace | None = None, input_size: int | None = None, seed: int = 0
) -> tuple[nn.Module, SearchSpace]:
    """(model, space) to export from ``source``: a trained subnet file (``final.pt``), or an
    arch string / zoo name parsed against ``space`` with random weights seeded by ``seed``.

    ``input_size`` (pixels) overrides the resolution; None keeps the file's or the space's.
    The weights do not depend on it. A supernet file is refused: it holds no single subnet.
    """
    if Path(source).is_file() or source.endswith((".pt", ".pth")):
        model, space, arch = load_model(source)
        if arch is None:
            raise SposError(
                f"{source} holds a supernet; export one subnet: pass a subnet's final.pt or "
                f"an arch string (`spos search` prints the best arch)"
            )
    else:
        arch, space = zoo.resolve(source, space)
        torch.manual_seed(seed)
        model = SubNet(space, arch)
    if input_size is not None and input_size != space.input_size:
        space = space.replace(input_size=input_size)
    return model, space


def export_checked(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: Sequence[int],
    graph: str = "plain",
    dynamo: bool = False,
    atol: float = PARITY_ATOL,
) -> float:
    """:func:`export_onnx`, then run the file in onnxruntime on two seeded random images and
    compare with ``model`` in PyTorch; returns the max abs logit difference, or raises
    SposError when it exceeds ``atol``. ``input_shape`` is (C, H, W) of one image."""
    export_onnx(model, path, input_shape, graph=graph, dynamo=dynamo)
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = ort_session(path).run(None, {INPUT_NAME: x.numpy()})[0]
    diff = float(abs(got - ref).max())
    if diff > atol:
        raise SposError(f"exported model differs from PyTorch by {diff:.2e} (> {atol:.0e}); please report this")
    return diff


@dataclass(frozen=True)
class Exported:
    """An ONNX file written by :func:`export_source`."""

    path: Path
    input_shape: tuple[int, int, int]  # C, H, W of one image; the batch dimension is dynamic
    max_abs_diff: float  # largest |onnxruntime - PyTorch| logit on the parity check


def export_source(
    source: str,
    path: str | os.PathLike,
    graph: str = "plain",
    dynamo: bool = False,
    space: SearchSpace | None = None,
    input_size: int | None = None,
    seed: int = 0,
) -> Exported:
    """The library call behind ``spos export``: :func:`load_for_export` ``source`` (see there
    for ``space``, ``input_size`` and ``seed``), then :func:`export_checked` it to ``path``."""
    model, space = load_for_export(source, space, input_size, seed)
    shape = (space.input_channels, space.input_size, space.input_size)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    diff = export_checked(model, out, shape, graph=graph, dynamo=dynamo)
    return Exported(out, shape, diff)
