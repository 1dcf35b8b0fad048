"""BN folding into the preceding conv (SPEC §6) and channel shuffle as a fixed 1x1
permutation conv, for backends that dislike strided slicing.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from .ops import ShuffleSplitConv


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
    permutation conv (:class:`~spos.nn.ops.ShuffleSplitConv`) instead of strided slicing.

    Outputs are identical; the original model's forward and state_dict are untouched.
    """
    from .blocks import ChoiceBlock
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, ChoiceBlock) and m.proj is None:
            p = next(m.parameters())
            m.split = ShuffleSplitConv(m.in_channels).to(device=p.device, dtype=p.dtype)
    return model
