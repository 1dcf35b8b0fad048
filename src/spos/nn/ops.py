"""Small building blocks shared by choice blocks and heads (SPEC §1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def activation(name: str) -> nn.Module:
    """``relu`` or ``hswish`` (x * clip(x + 3, 0, 6) / 6, torch's own Hardswish)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class SqueezeExcite(nn.Module):
    """GAP -> 1x1 conv (C -> make_divisible(C // 4, 8)) -> ReLU -> 1x1 conv -> hard-sigmoid -> scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = make_divisible(channels // 4, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = Conv2d(channels, hidden, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.expand = Conv2d(hidden, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


def channel_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ShuffleNetV2's shuffle-then-split: even channels pass through, odd ones go to the branch.

    Equivalent to the official ``channel_shuffle`` (reshape to (C/2, 2), transpose, split).
    Training goes through :class:`_ShuffleSplit`, whose backward writes one gradient in ``x``'s
    layout; no grad, traced or exported graphs take the two plain slices.
    """
    if (
        isinstance(x, torch.Tensor)
        and x.requires_grad
        and torch.is_grad_enabled()
        and x.dim() == 4
        and (x.is_contiguous() or is_channels_last(x))
        and not _tracing()
    ):
        return _ShuffleSplit.apply(x)
    return x[:, 0::2], x[:, 1::2]


def is_channels_last(x: torch.Tensor) -> bool:
    """Dense channels_last and not also NCHW-contiguous (as a tensor with H = W = 1 is)."""
    try:
        return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    except RuntimeError:  # torch.func.vmap cannot query other layouts: treat it as NCHW
        return False


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class _ShuffleSplit(torch.autograd.Function):
    """``x[:, 0::2], x[:, 1::2]`` whose gradient is one tensor in ``x``'s memory format.

    Autograd's own slice backward zero-fills a full *contiguous* (NCHW) tensor per half and adds
    the two. In a channels_last network that NCHW gradient flows through the concat into every
    block's last ReLU and BN, where mixed layouts take slow element-by-element kernels (1.1 ms
    for a [16, 160, 14, 14] ReLU backward that takes 0.08 ms in one layout); in NCHW the fills
    and the add are wasted passes (about 4% of a 224x224 supernet step). The outputs are views
    of ``x``: neither they nor ``x`` may be modified in place afterwards.
    """

    generate_vmap_rule = True  # torch.func.vmap (per-sample gradients)

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, 0::2], x[:, 1::2]

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor], output) -> None:  # torch.func needs it
        (x,) = inputs
        ctx.shape, ctx.dtype, ctx.device = x.shape, x.dtype, x.device
        ctx.memory_format = torch.channels_last if is_channels_last(x) else torch.contiguous_format

    @staticmethod
    def backward(ctx, g_even: torch.Tensor | None, g_odd: torch.Tensor | None) -> torch.Tensor:
        halves = [
            torch.zeros(ctx.shape[0], ctx.shape[1] // 2, *ctx.shape[2:], dtype=ctx.dtype,
                        device=ctx.device) if g is None else g
            for g in (g_even, g_odd)
        ]  # fmt: skip
        if torch.is_grad_enabled():  # create_graph (double backward): differentiable ops only
            return torch.stack(halves, 2).flatten(1, 2).contiguous(memory_format=ctx.memory_format)
        grad = torch.empty(ctx.shape, dtype=ctx.dtype, device=ctx.device, memory_format=ctx.memory_format)
        grad[:, 0::2].copy_(halves[0])
        grad[:, 1::2].copy_(halves[1])
        return grad


class ShuffleSplitConv(nn.Module):
    """The same shuffle-then-split as a fixed 1x1 permutation conv (SPEC §6), for backends that
    dislike strided slicing or reshape. Output channels: [even inputs, odd inputs]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        perm = torch.cat([torch.arange(0, channels, 2), torch.arange(1, channels, 2)])
        weight = torch.zeros(channels, channels, 1, 1)
        weight[torch.arange(channels), perm] = 1.0
        self.register_buffer("weight", weight)
        self.half = channels // 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = nn.functional.conv2d(x, self.weight)
        return y[:, : self.half], y[:, self.half :]


#: Pointwise convs on maps of at most this many pixels run as one GEMM (``F.linear``) on CPU.
#: oneDNN's 1x1 convolution backward on tiny maps (the small preset's 4x4 .. 1x1 stages and
#: its 1x1 head conv) is 1.3-2.4x slower than MKL's GEMM; from 7x7 up the conv is as fast.
LINEAR_MAX_PIXELS = 16

#: False routes :func:`conv2d` to plain ``F.conv2d`` everywhere (for benchmarks and debugging).
FAST_PATHS = True


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, 1, groups)`` with two exact CPU fast paths.

    Depthwise convs go through :func:`depthwise_conv2d` (kernel cropped to the taps that can
    reach the map, and a weight gradient that does not take oneDNN's slow path); pointwise convs
    on tiny channels_last or 1x1 maps are one GEMM. Elsewhere, on other devices and while
    tracing or exporting, it is ``F.conv2d``.
    """
    traced = isinstance(x, torch.fx.Proxy) or _tracing()
    if FAST_PATHS and not traced and x.device.type == "cpu" and x.dim() == 4:
        if groups > 1 and groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1:
            return depthwise_conv2d(x, weight, bias, stride, padding)
        if (groups == 1 and weight.shape[-2:] == (1, 1) and stride == 1 and padding == 0
                and x.shape[2] * x.shape[3] <= LINEAR_MAX_PIXELS
                and (is_channels_last(x) or x.shape[2] * x.shape[3] == 1)):  # fmt: skip
            y = F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias)
            return y.permute(0, 3, 1, 2)  # channels_last strides: the layout oneDNN would give
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, state_dict and hooks) whose forward is :func:`conv2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square = self.stride[0] == self.stride[1] and self.padding[0] == self.padding[1]
        if not square or self.dilation != (1, 1) or self.padding_mode != "zeros":
            return super().forward(x)
        return conv2d(x, self.weight, self.bias, self.stride[0], self.padding[0], self.groups)


def used_taps(size: int, k: int, stride: int, padding: int) -> tuple[int, int]:
    """First and last kernel tap (along one axis) that ever reads a real pixel of a map of
    ``size`` pixels; the others only ever see zero padding (a 7x7 kernel on a 2x2 map)."""
    out = (size + 2 * padding - k) // stride + 1
    return max(0, padding - stride * (out - 1)), min(k - 1, padding + size - 1)


def depthwise_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int
) -> torch.Tensor:
    """A depthwise conv equal to ``F.conv2d(..., groups=C)``, computed with the kernel cropped
    to its :func:`used_taps` (exact: the dropped taps multiply zero padding and get zero
    gradient) and, when the cropped kernel is still larger than the map, the weight gradient
    of :class:`_DepthwiseTaps` instead of oneDNN's (10-50x slower there).
    """
    (kh, kw), (h, w) = weight.shape[-2:], x.shape[-2:]
    (top, bottom), (left, right) = used_taps(h, kh, stride, padding), used_taps(w, kw, stride, padding)
    out_h, out_w = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    pads = [padding - left, stride * (out_w - 1) + right - padding - (w - 1),
            padding - top, stride * (out_h - 1) + bottom - padding - (h - 1)]  # fmt: skip
    weight = weight[:, :, top : bottom + 1, left : right + 1]
    if pads[0] == pads[2] >= max(pads[1], pads[3]):
        pad = pads[0]  # symmetric padding; surplus rows and columns at the end are cut below
    else:
        layout = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        x, pad = F.pad(x, [max(p, 0) for p in pads]).contiguous(memory_format=layout), 0
    if (bottom - top >= h or right - left >= w) and torch.is_grad_enabled() and weight.requires_grad:
        y = _DepthwiseTaps.apply(x, weight, stride, pad)
    else:
        y = F.conv2d(x, weight, None, stride, pad, 1, x.shape[1])
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y if y.shape[-2:] == (out_h, out_w) else y[:, :, :out_h, :out_w]


class _DepthwiseTaps(torch.autograd.Function):
    """Depthwise conv whose weight gradient is one multiply-and-sum per kernel tap.

    oneDNN computes a depthwise weight gradient on a map smaller than the kernel through a
    generic grouped-conv or GEMM path that does 16x the work (35 ms where the forward takes
    1 ms, for [128, 160, 2, 2] with a 5x5 kernel); per tap it is a dot product per channel.
    """

    generate_vmap_rule = True  # torch.func (per-sample gradients)

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        x, weight, ctx.stride, ctx.padding = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], x.shape[1],
                [True, False, False],
            )[0]  # fmt: skip
        xp = F.pad(x, (p, p, p, p)) if p else x
        (kh, kw), (oh, ow) = weight.shape[-2:], grad.shape[-2:]
        taps = [
            (xp[:, :, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s] * grad).sum((0, 2, 3))
            for i in range(kh)
            for j in range(kw)
        ]  # out of place, so that torch.func.vmap can batch it
        return grad_x, torch.stack(taps, 1).view(weight.shape), None, None
