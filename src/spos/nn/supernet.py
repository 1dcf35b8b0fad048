"""The weight-sharing supernet and the plain subnets it hands out (SPEC §1).

``SuperNet(space)(x, arch)`` runs one path, slicing each chosen block to the arch's width.
``SuperNet.subnet(arch)`` returns a :class:`SubNet`: ordinary PyTorch, no arch argument, with
copies of the path's weights. ``SubNet(space, arch)`` builds the same network from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..space import BLOCK_NAMES, Arch, SearchSpace, mid_channels
from .blocks import ChoiceBlock, conv_bn
from .ops import Conv2d, activation


def _outer_act(space: SearchSpace) -> str:
    return "hswish" if space.use_se else "relu"


def make_stem(space: SearchSpace) -> nn.Sequential:
    return nn.Sequential(
        *conv_bn(space.input_channels, space.stem_channels, 3, space.stem_stride),
        activation(_outer_act(space)),
    )


def make_head(space: SearchSpace) -> nn.Sequential:
    """Original head (1x1 conv -> BN -> act -> GAP) or MobileNetV3's (GAP -> 1x1 conv+bias -> act)."""
    cin, cout, act = space.stage_channels[-1], space.last_channels, _outer_act(space)
    if space.last_conv_after_pooling:
        layers = [nn.AdaptiveAvgPool2d(1), Conv2d(cin, cout, 1, bias=True), activation(act)]
    else:
        layers = [*conv_bn(cin, cout), activation(act), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*layers, nn.Flatten(1))


def make_classifier(space: SearchSpace) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(space.drop_rate), nn.Linear(space.last_channels, space.num_classes))


class SubNet(nn.Module):
    """A single architecture as a plain network; ``space`` and ``arch`` are kept for reference."""

    def __init__(self, space: SearchSpace, arch: Arch) -> None:
        super().__init__()
        arch.validate(space)
        self.space, self.arch = space, arch
        self.stem = make_stem(space)
        self.features = nn.Sequential(
            *(
                ChoiceBlock(p.in_channels, p.out_channels, p.stride, b,
                            mid_channels(p.out_channels, c), p.act, p.use_se)
                for p, b, c in zip(space.positions(), arch.blocks, arch.channels)
            )
        )  # fmt: skip
        self.head = make_head(space)
        self.classifier = make_classifier(space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(self.stem(x))))


class SuperNet(nn.Module):
    """Every position holds all four choice blocks at the widest allowed channel scale."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self._positions = space.positions()
        widest = space.channel_genes[-1]
        self.stem = make_stem(space)
        self.features = nn.ModuleList(
            nn.ModuleList(
                ChoiceBlock(p.in_channels, p.out_channels, p.stride, b,
                            mid_channels(p.out_channels, widest), p.act, p.use_se)
                for b in range(len(BLOCK_NAMES))
            )
            for p in self._positions
        )  # fmt: skip
        self.head = make_head(space)
        self.classifier = make_classifier(space)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self.stem(x)
        for p, choices, b, c in zip(self._positions, self.features, arch.blocks, arch.channels):
            x = choices[b].forward_sliced(x, mid_channels(p.out_channels, c))
        return self.classifier(self.head(x))

    def chosen_blocks(self, arch: Arch) -> list[ChoiceBlock]:
        return [choices[b] for choices, b in zip(self.features, arch.blocks)]

    def subnet(self, arch: Arch) -> SubNet:
        """A plain :class:`SubNet` carrying its own copy of this path's weights (and BN stats).

        Every width-dependent tensor of a choice block is the *prefix* of the supernet's tensor in
        every dimension (see :mod:`spos.nn.blocks`), so copying is ``dst = src[:n0, :n1, ...]``.
        """
        arch.validate(self.space)
        first = next(self.parameters())
        with torch.device("meta"):  # no wasted random init: every tensor is overwritten below
            net = SubNet(self.space, arch)
        net.to_empty(device=first.device)
        src = self.state_dict()
        with torch.no_grad():
            for name, t in net.state_dict().items():
                parts = name.split(".")
                if parts[0] == "features":  # features.{pos}.X <- features.{pos}.{block gene}.X
                    parts.insert(2, str(arch.blocks[int(parts[1])]))
                t.copy_(src[".".join(parts)][tuple(slice(0, n) for n in t.shape)])
        return net.train(self.training)
