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
