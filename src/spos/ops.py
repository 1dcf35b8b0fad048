"""Small building blocks shared by choice blocks and heads (SPEC §1)."""

from __future__ import annotations

import torch
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
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


def channel_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ShuffleNetV2's shuffle-then-split: even channels pass through, odd ones go to the branch.

    Equivalent to the official ``channel_shuffle`` (reshape to (C/2, 2), transpose, split).
    In training the two halves' gradients are interleaved straight into one tensor laid out like
    ``x`` (see :class:`_ShuffleSplit`); traced or exported graphs keep the two plain slices.
    """
    if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled() and not _tracing():
        return _ShuffleSplit.apply(x)
    return x[:, 0::2], x[:, 1::2]


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class _ShuffleSplit(torch.autograd.Function):
    """``x[:, 0::2], x[:, 1::2]`` whose backward writes both gradients into one tensor with
    ``x``'s memory format.

    Autograd's own slice backward zero-fills a full *contiguous* (NCHW) tensor per half and adds
    the two. For a channels_last network that NCHW gradient then flows through the concat into
    every block's last ReLU and BN, where mixed layouts take slow element-by-element kernels.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.shape, ctx.dtype, ctx.device = x.shape, x.dtype, x.device
        ctx.channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return x[:, 0::2], x[:, 1::2]

    @staticmethod
    def backward(ctx, g_even: torch.Tensor | None, g_odd: torch.Tensor | None) -> torch.Tensor:
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        grad = torch.empty(ctx.shape, dtype=ctx.dtype, device=ctx.device, memory_format=fmt)
        for half, g in ((grad[:, 0::2], g_even), (grad[:, 1::2], g_odd)):
            if g is None:
                half.zero_()
            else:
                half.copy_(g)
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
