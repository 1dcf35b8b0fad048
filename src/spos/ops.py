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
    """
    return x[:, 0::2], x[:, 1::2]


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
