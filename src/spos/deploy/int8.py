"""The int8-friendly graph: channel shuffles folded into the conv weights (no strided slice left)
and hard-swish rescaled into Add + Mul, computing the same function as the plain graph.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import torch
from torch import nn

from ..errors import SposError
from ..nn.fold import fold_bn


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
    """A BN-folded copy of a :class:`~spos.nn.supernet.SubNet` with no strided channel slicing.

    Feature maps travel as groups of contiguous pieces (see :class:`_SortedBlock`): each
    shuffle-and-split becomes a Concat of the pieces a main branch reads and one Split of each
    new output, and the channel permutations live in the conv weights. Outputs match the
    original model. This is what int8 backends want: onnxruntime's uint8 kernels run in NHWC,
    where a step-2 channel slice is an element-by-element gather (about a third of the int8
    OneShot-S+'s time), while pieces are row copies.
    """
    from ..nn.blocks import ChoiceBlock
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
    from ..nn.blocks import ChoiceBlock
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
