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
from dataclasses import dataclass, field
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


# ---- shuffle absorbed into weights ----------------------------------------------------------


def _trailing_zeros(q: int) -> int:
    return (q & -q).bit_length() - 1


Groups = list[list[torch.Tensor]]


class _SortedBlock(nn.Module):
    """A BN-folded choice block that reads and writes feature maps as *groups of pieces*.

    ShuffleNetV2 sends the odd channels of a stride-1 block's input to its main branch and the
    even ones onward, where they are split again: the channel at logical position ``q`` of a
    block's output enters the main branch ``tz(q)`` stride-1 blocks later (tz: trailing zero
    bits), or never within the stage. That number is the channel's *group*. Between blocks a
    feature map is a list of groups, each a list of contiguous pieces, so a stride-1 block
    concatenates group 0 for its main branch, hands groups 1.. on as they are (group t+1 becomes
    t) and adds one piece of its own output to each. Every channel is copied once on its way
    into a main branch instead of twice per block, and no strided slice is left; the channel
    orders inside pieces are absorbed into the convs' weights.
    """

    def __init__(self, block: nn.Module, a_sizes: list[int], a_groups: list[int],
                 b_sizes: list[int], b_groups: list[int]) -> None:  # fmt: skip
        super().__init__()
        self.block = block
        self.a_sizes, self.b_sizes = a_sizes, b_sizes  # piece widths of A (stride 2) and B
        self.a_groups, self.b_groups = a_groups, b_groups  # the group of each piece

    def forward(self, groups: Groups) -> Groups:
        b = self.block
        if b.proj is None:
            y, out = _cat(groups[0]), [list(g) for g in groups[1:]]
        else:
            y = _cat([p for g in groups for p in g])
            out = [[] for _ in range(max(self.a_groups + self.b_groups) + 1)]
            for t, piece in zip(self.a_groups, _split(b.proj(y), self.a_sizes)):
                out[t].append(piece)
        y = b.main(y)
        if b.se is not None:
            y = b.se(y)
        for t, piece in zip(self.b_groups, _split(y, self.b_sizes)):
            out[t].append(piece)
        return out


class _SortedFeatures(nn.Module):
    """The choice blocks of :func:`shuffle_in_weights`; one tensor in, one tensor out."""

    def __init__(self, blocks: list[_SortedBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups: Groups = [[x]]
        for b in self.blocks:
            groups = b(groups)
        return _cat([p for g in groups for p in g])


def _cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)


def _split(x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    return (x,) if len(sizes) == 1 else torch.split(x, sizes, 1)


@torch.no_grad()
def _permute_input(layers: nn.Sequential, order: list[int]) -> None:
    """Make ``layers`` read input channel ``order[i]`` from channel ``i``: a leading depthwise
    conv is permuted whole (its output follows the new order), the first dense conv by column."""
    for m in layers:
        if not isinstance(m, nn.Conv2d):
            continue
        if m.groups == 1:
            m.weight.copy_(m.weight[:, order])
            return
        m.weight.copy_(m.weight[order])
        if m.bias is not None:
            m.bias.copy_(m.bias[order])


@torch.no_grad()
def _permute_output(conv: nn.Conv2d, order: list[int], se: nn.Module | None = None) -> None:
    """Make ``conv`` (and the SE module that rescales its output) emit channel ``order[i]`` as i."""
    conv.weight.copy_(conv.weight[order])
    if conv.bias is not None:
        conv.bias.copy_(conv.bias[order])
    if se is not None:
        se.reduce.weight.copy_(se.reduce.weight[:, order])
        se.expand.weight.copy_(se.expand.weight[order])
        se.expand.bias.copy_(se.expand.bias[order])


def _pieces(pos: list[int], group: Callable[[int], int]) -> tuple[list[int], list[int]]:
    """Widths and groups of the runs of equal group in ``pos`` (which is sorted by group)."""
    sizes, groups = [], []
    for t, run in itertools.groupby(pos, key=group):
        sizes.append(len(list(run)))
        groups.append(t)
    return sizes, groups


def shuffle_in_weights(model: nn.Module) -> nn.Module:
    """A BN-folded copy of a :class:`~spos.supernet.SubNet` with no strided channel slicing.

    Feature maps travel as groups of contiguous pieces (see :class:`_SortedBlock`): each
    shuffle-and-split becomes a Concat of the pieces a main branch reads and one Split of each
    new output, and the channel permutations live in the conv weights. Outputs match the
    original model. This is what int8 backends want: onnxruntime's uint8 kernels run in NHWC,
    where a step-2 channel slice is an element-by-element gather (about a third of the int8
    OneShot-S+'s time), while pieces are row copies.
    """
    from .blocks import ChoiceBlock

    model = fold_bn(model)
    blocks = list(model.features)
    if not all(isinstance(b, ChoiceBlock) for b in blocks):
        raise SposError("shuffle_in_weights needs a spos SubNet (features of choice blocks)")
    phys = list(range(blocks[0].in_channels))  # phys[i]: logical channel stored at i
    sorted_blocks = []
    for j, b in enumerate(blocks):
        rest = 0  # stride-1 blocks after this one in its stage
        while j + 1 + rest < len(blocks) and blocks[j + 1 + rest].stride == 1:
            rest += 1
        group = lambda q, rest=rest: rest if q == 0 else min(_trailing_zeros(q), rest)
        if b.proj is None:
            half = b.in_channels // 2
            assert all(q % 2 == 1 for q in phys[:half]), "input not in group order"
            _permute_input(b.main, [(q - 1) // 2 for q in phys[:half]])
            a_pos, n_a = [q // 2 for q in phys[half:]], half
        else:
            _permute_input(b.proj, phys)
            _permute_input(b.main, phys)
            n_a = b.in_channels
            a_pos = sorted(range(n_a), key=lambda q: (group(q), q))
            _permute_output(b.proj[-3], a_pos)  # ... conv, BN (Identity once folded), act
        b_pos = sorted(range(n_a, b.out_channels), key=lambda q: (group(q), q))
        _permute_output(b.main[-3], [q - n_a for q in b_pos], b.se)
        assert [group(q) for q in a_pos] == sorted(group(q) for q in a_pos), "A not in order"
        phys = [q for t in range(rest + 1) for pos in (a_pos, b_pos) for q in pos if group(q) == t]
        a_sizes, a_groups = _pieces(a_pos, group)
        b_sizes, b_groups = _pieces(b_pos, group)
        sorted_blocks.append(_SortedBlock(b, a_sizes, a_groups, b_sizes, b_groups))
    model.features = _SortedFeatures(sorted_blocks)
    head_conv = next(m for m in model.head if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        head_conv.weight.copy_(head_conv.weight[:, phys])
    return model


class Hardswish6(nn.Module):
    """``6 * hardswish(x) = x * clip(x + 3, 0, 6)``: two int8 ops (Add, Mul) in onnxruntime.

    :func:`scale_hardswish` puts it where the factor 6 can be absorbed by the next conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x + 3, 0, 6)


class HardswishOps(nn.Module):
    """``hardswish`` spelled as Add, Clip, Mul, Mul: quantisable op by op (ONNX HardSwish is not)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x + 3, 0, 6) * (1 / 6)


@torch.no_grad()
def _rescale(layers: nn.Sequential, s_in: float, target: float | None = None) -> float:
    """Rewrite ``layers`` (forward order) for an input stored ``s_in`` times its true value.

    Convs and linears divide their weights by the scale of what they read; each Hardswish
    becomes :class:`Hardswish6`, whose output is stored 6x (ReLU, pooling and identities keep
    the scale). With ``target`` the output is made that many times its true value: through the
    last conv when only ReLU-like ops follow it, else by the plain :class:`HardswishOps`.
    Returns the output's scale.
    """
    s, last_conv, last_act = s_in, None, None
    for name, m in layers.named_children():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.weight.div_(s)
            s, last_conv, last_act = 1.0, m, None
        elif isinstance(m, nn.Hardswish):
            layers._modules[name] = Hardswish6()
            s, last_act = 6.0, name
    if target is None or target == s:
        return s
    if last_act is not None and target == 1.0:
        layers._modules[last_act] = HardswishOps()
        return 1.0
    assert last_act is None and last_conv is not None, "cannot rescale this layer sequence"
    last_conv.weight.mul_(target / s)  # only ReLU-like (positively homogeneous) ops follow
    if last_conv.bias is not None:
        last_conv.bias.mul_(target / s)
    return target


def scale_hardswish(model: nn.Module) -> nn.Module:
    """A copy of a BN-folded SubNet (plain or from :func:`shuffle_in_weights`) whose
    hard-swishes run as two int8-friendly ops.

    ONNX's HardSwish has no int8 kernel in onnxruntime (it becomes fp32 HardSigmoid + Mul
    between dequantise/quantise pairs). Here each one computes ``x * clip(x + 3, 0, 6)``, six
    times the true value, and the next conv (or the classifier) divides its weights by 6. Every
    feature map carries one scale for all its channels, so a pass-through channel and a new one
    side by side agree; where they would not, a ReLU branch's last conv is rescaled. Outputs
    match the original model.
    """
    from .blocks import ChoiceBlock

    model = copy.deepcopy(model)
    s = _rescale(model.stem, 1.0)
    blocks = model.features.blocks if isinstance(model.features, _SortedFeatures) else model.features
    for b in blocks:
        block = b.block if isinstance(b, _SortedBlock) else b
        if not isinstance(block, ChoiceBlock):
            raise SposError("scale_hardswish needs a spos SubNet (features of choice blocks)")
        s_out = s if block.proj is None else _rescale(block.proj, s)
        _rescale(block.main, s, s_out)
        if block.se is not None:
            with torch.no_grad():
                block.se.reduce.weight.div_(s_out)  # SE's gate reads the (scaled) mean
        s = s_out
    s = _rescale(model.head, s)
    _rescale(model.classifier, s, 1.0)
    return model


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


# ---- ONNX export ----------------------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike | io.BytesIO,
    input_shape: Sequence[int],
    graph: str = "plain",
    fold: bool = True,
    dynamo: bool = False,
) -> None:
    """Write ``model`` as ONNX (opset :data:`OPSET`) with a dynamic batch dimension.

    ``input_shape`` is (C, H, W) of one image. BN is folded (as the given :data:`GRAPHS`
    ``graph``) unless ``fold=False``, which exports the model as it is.
    The TorchScript exporter is the default: on torch 2.14 it is ~30x faster than the
    ``torch.export``-based one (``dynamo=True``; 0.4 s vs 12 s for OneShot-S+), which matters
    when the latency table exports hundreds of blocks; both give the same numerics.
    """
    net = deployable(model, graph) if fold else copy.deepcopy(model).eval()
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
    return median_ms(_ort_runner(path, input_shape, threads, batch_size), warmup, repeats)


def _ort_runner(
    model: str | os.PathLike | bytes,
    input_shape: Sequence[int],
    threads: int,
    batch_size: int,
    device: str = "cpu",
) -> Callable[[], object]:
    """A new session on ``model`` and a function running it on a fixed random input."""
    session = ort_session(model, threads, device)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


class _Timer:
    """Times modules on one backend/device: torch eager or onnxruntime (exported in memory).

    ``prepare(module, shape)`` does the one-off work (BN folding, export, session) and returns a
    runner; ``time(runner)`` is its median ms. Keeping runners lets a caller measure many
    models in interleaved rounds, so a slow spell of a shared machine hits all of them alike.
    """

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

    def prepare(self, module: nn.Module, input_shape: Sequence[int]) -> Callable[[], Callable]:
        """The one-off work for ``module``; returns a factory of runners for :meth:`time`.

        onnxruntime gets a fresh session per timing: an idle session's thread pool would spin
        beside the one being timed.
        """
        module = fold_bn(module)
        if self.backend == "onnxruntime":
            buf = io.BytesIO()
            export_onnx(module, buf, input_shape, fold=False)
            onnx_bytes = buf.getvalue()
            return lambda: _ort_runner(
                onnx_bytes, input_shape, self.threads, self.batch_size, self.device
            )
        dev = torch.device(self.device)
        module = module.to(dev)
        x = torch.randn((self.batch_size, *input_shape), device=dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def run() -> None:
            module(x)
            sync()  # CUDA kernels are asynchronous: time their completion, not their launch

        return lambda: run

    def time(self, runner: Callable[[], Callable]) -> float:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return median_ms(runner(), self.warmup, self.repeats)
        finally:
            torch.set_num_threads(previous)

    def interleaved(self, jobs: dict, rounds: int) -> dict:
        """``{key: (module, shape)}`` -> ``{key: ms}``: the median over ``rounds`` passes
        that each time every job once, with its warm-up."""
        runners = {k: self.prepare(m, shape) for k, (m, shape) in jobs.items()}
        times: dict = {k: [] for k in jobs}
        for _ in range(rounds):
            for k, runner in runners.items():
                times[k].append(self.time(runner))
        return {k: float(statistics.median(v)) for k, v in times.items()}


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
    #: Held-out whole subnets timed in the build's own rounds: {"arch", "measured_ms", "predicted_ms"}.
    checks: list[dict] = field(default_factory=list)

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
        rounds: int = 3,
        check_archs: int = 0,
    ) -> LatencyTable:
        """Measure every part of ``space`` (positions after the first in a stage are alike) and
        ``calibration_archs`` whole random subnets, which fit :attr:`scale` (0: no fit), in
        ``rounds`` interleaved passes; each figure is the median over the passes.

        ``check_archs`` more random subnets, not used for the fit, are timed in the same rounds
        and kept in :attr:`checks` with their predictions: the table's own test of accuracy,
        which a later measurement could not give if the machine's speed changed in between."""
        from .blocks import ChoiceBlock
        from .space import sample
        from .supernet import SubNet, make_classifier, make_head, make_stem

        timer = _Timer(backend, device, threads, warmup, repeats, batch_size)
        image = (space.input_channels, space.input_size, space.input_size)
        last = space.final_size
        head_in = (space.stage_channels[-1], last, last)
        jobs: dict[tuple, tuple[nn.Module, tuple]] = {
            ("stem",): (make_stem(space), image),
            ("head",): (nn.Sequential(make_head(space), make_classifier(space)), head_in),
        }
        positions = space.positions()
        first: dict[tuple, int] = {}  # positions after the first in a stage are alike
        alike: dict[int, int] = {}  # position -> the measured position it shares entries with
        for p in positions:
            key = (p.in_channels, p.out_channels, p.stride, p.input_size, p.act, p.use_se)
            alike[p.index] = first.setdefault(key, p.index)
            if alike[p.index] != p.index:
                continue
            shape = (p.in_channels, p.input_size, p.input_size)
            for b in range(len(BLOCK_NAMES)):
                for g in space.channel_genes:
                    mid = mid_channels(p.out_channels, g)
                    block = ChoiceBlock(p.in_channels, p.out_channels, p.stride, b, mid, p.act, p.use_se)
                    jobs[("block", p.index, b, g)] = (block, shape)
        # Each part runs as its own model: the per-call cost of a model with the same input
        # (feeding and returning tensors of that size) is taken off, and added back once.
        shapes = {shape for _, shape in jobs.values()}
        jobs.update({("empty", shape): (_Empty(), shape) for shape in shapes})
        rng = random.Random(0x5EED)  # its own stream: benchmarks test on other archs
        calib = [sample(space, rng) for _ in range(calibration_archs)]
        jobs.update({("whole", i): (SubNet(space, a), image) for i, a in enumerate(calib)})
        check_rng = random.Random(0xC4EC)  # a third stream: neither calibration nor benchmarks
        held_out = [sample(space, check_rng) for _ in range(check_archs)]
        jobs.update({("check", i): (SubNet(space, a), image) for i, a in enumerate(held_out)})
        if progress:
            progress(f"measuring {len(jobs)} models x {rounds} interleaved rounds")
        ms = timer.interleaved(jobs, rounds)
        part = {k: max(v - ms[("empty", jobs[k][1])], 0.0) for k, v in ms.items()}
        blocks: list[list[list[float | None]]] = [
            [[None] * len(SCALES) for _ in BLOCK_NAMES] for _ in positions
        ]
        for p in positions:
            for b in range(len(BLOCK_NAMES)):
                for g in space.channel_genes:
                    blocks[p.index][b][g] = part[("block", alike[p.index], b, g)]
        overhead = ms[("empty", image)]
        table = cls(space, device, backend, threads, batch_size, overhead, part[("stem",)],
                    part[("head",)], blocks)  # fmt: skip
        if calib:
            ratios = [
                part[("whole", i)] / max(table.predict(a) - overhead, 1e-9)
                for i, a in enumerate(calib)
            ]
            table.scale = float(statistics.median(ratios))
            if progress:
                progress(f"calibrated on {len(calib)} whole subnets: scale {table.scale:.3f}")
        table.checks = [
            {"arch": str(a), "measured_ms": ms[("check", i)], "predicted_ms": table.predict(a)}
            for i, a in enumerate(held_out)
        ]
        return table

    def check_errors(self) -> list[float]:
        """Relative error (predicted - measured) / measured of each held-out check subnet."""
        return [(c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"] for c in self.checks]

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
            "checks": self.checks,
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
                [
                    {"arch": str(c["arch"]), "measured_ms": float(c["measured_ms"]),
                     "predicted_ms": float(c["predicted_ms"])}
                    for c in d.get("checks", [])
                ],  # fmt: skip
            )
        except (ValueError, KeyError, TypeError) as e:
            raise SposError(
                f"{p} is not a spos latency table ({e}); build one with `spos latency-table`"
            ) from None


def measure_models_ms(
    models: Sequence[nn.Module],
    input_shape: Sequence[int],
    backend: str = "torch",
    device: str = "cpu",
    threads: int = 2,
    warmup: int = 3,
    repeats: int = 10,
    rounds: int = 3,
    batch_size: int = 1,
) -> list[float]:
    """Median ms of each whole (BN-folded) model, measured like the latency table's entries:
    in ``rounds`` interleaved passes, each figure the median over them."""
    timer = _Timer(backend, device, threads, warmup, repeats, batch_size)
    ms = timer.interleaved({i: (m, tuple(input_shape)) for i, m in enumerate(models)}, rounds)
    return [ms[i] for i in range(len(models))]
