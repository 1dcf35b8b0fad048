"""A module as ONNX, and onnxruntime sessions on ONNX files: what deployment ships and what
the latency table times. Files take one input ``input`` (N, C, H, W, float32) and give
``logits``."""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SposError
from ..runs import atomic_write_bytes

#: ONNX opset of exported files: 14+ has HardSwish; 17 is well supported by onnxruntime's
#: quantiser and by the TorchScript exporter.
OPSET = 17


INPUT_NAME, OUTPUT_NAME = "input", "logits"


def write_onnx(
    module: nn.Module,
    path: str | os.PathLike | io.BytesIO,
    input_shape: Sequence[int],
    dynamo: bool = False,
) -> None:
    """Write an eval-mode copy of ``module`` as it is as ONNX (opset :data:`OPSET`), with a
    dynamic batch dimension; ``input_shape`` is (C, H, W) of one image.

    The TorchScript exporter is the default: on torch 2.14 it is ~30x faster than the
    ``torch.export``-based one (``dynamo=True``; 0.4 s vs 12 s for OneShot-S+), which matters
    when the latency table exports hundreds of blocks; both give the same numerics.
    :func:`spos.deploy.export_onnx` folds BN and picks the graph first.
    """
    net = copy.deepcopy(module).eval()
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
        if isinstance(path, io.BytesIO):
            torch.onnx.export(net, (x,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], **kw)
            return
        # Into memory, then one atomic write: a full disk or read-only folder is one line
        # naming the path (spos.runs.os_error), and no half-written .onnx is left behind.
        buf = io.BytesIO()
        torch.onnx.export(net, (x,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], **kw)
    atomic_write_bytes(path, buf.getvalue())


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


def strided_slices(path: str | os.PathLike) -> int:
    """How many Slice nodes of an ONNX file take every 2nd (or n-th) element: the channel split
    of the ``plain`` graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return sum(
        1
        for n in graph.node
        if n.op_type == "Slice"
        and len(n.input) > 4
        and n.input[4] in consts
        and np.any(np.abs(consts[n.input[4]]) > 1)
    )


def onnx_predict(session, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Logits of ``images`` (N, C, H, W) from an onnxruntime session, in batches."""
    x = images.numpy() if isinstance(images, torch.Tensor) else images
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: np.ascontiguousarray(x[i : i + batch_size], np.float32)})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)
