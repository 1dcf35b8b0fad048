"""Counting MACs, parameters and MicroNet operations (SPEC §3), and the exact cost lookup table.

Units: ``macs`` are multiply-accumulates (what the SPEC tables call "FLOPs"); ``mults`` and
``adds`` are the MicroNet Challenge's separate counts; all are per image (batch 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..nn.ops import SqueezeExcite

#: Σ normalized score references (SPEC §3): OneShot's rounded 328M MACs and 3.4M params.
SIGMA_MACS, SIGMA_PARAMS = 328e6, 3.4e6


#: MicroNet Challenge references: MobileNetV2-1.4 (6.9M params, 1170M math ops).
MICRONET_PARAMS, MICRONET_OPS = 6.9e6, 1170e6


# MicroNet per-element costs (mults, adds) of activations. relu, sigmoid and swish are the
# challenge's own figures; hard-swish = x * relu6(x + 3) / 6 and hard-sigmoid = relu6(x + 3) / 6
# take swish's and sigmoid's (one add, a clip counted as one multiply, one or two scalings).
_ACT_OPS = {nn.ReLU: (1, 0), nn.ReLU6: (1, 0), nn.Hardswish: (3, 1), nn.Hardsigmoid: (2, 1),
            nn.SiLU: (3, 1), nn.Sigmoid: (2, 1)}  # fmt: skip


@dataclass(frozen=True)
class Costs:
    macs: int
    params: int

    def __add__(self, other: Costs) -> Costs:
        return Costs(self.macs + other.macs, self.params + other.params)

    @property
    def sigma_score(self) -> float:
        return sigma_score(self.macs, self.params)


def sigma_score(macs: float, params: float) -> float:
    """Σ normalized score: MACs / 328M + params / 3.4M (SPEC §3)."""
    return macs / SIGMA_MACS + params / SIGMA_PARAMS


def micronet_score(params: float, mults: float, adds: float) -> float:
    """MicroNet score: params / 6.9M + (mults + adds) / 1170M (SPEC §3)."""
    return params / MICRONET_PARAMS + (mults + adds) / MICRONET_OPS


@dataclass
class OpRow:
    """One op of the op-by-op profile."""

    name: str
    op: str
    input_shape: tuple[int, ...]  # C, H, W (or features) of one image
    kernel: int
    cin: int
    cout: int
    params: int
    mults: int
    adds: int
    macs: int
    quantizable: bool

    def as_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = "x".join(str(s) for s in self.input_shape)
        return d


def profile(
    model: nn.Module,
    input_shape: int | Sequence[int] = 224,
    in_channels: int = 3,
    micronet: bool = False,
) -> list[OpRow]:
    """Op-by-op costs of one forward pass of ``model`` on one image.

    ``input_shape`` is a square size or a full (C, H, W). With ``micronet=True`` batch norms are
    folded into their convolutions first (SPEC §3), so BN costs nothing and convs gain a bias.
    Works for any module; models on the ``meta`` device cost no compute.
    """
    if micronet:
        from ..nn.fold import fold_bn
        model = fold_bn(model)
    shape = (in_channels, input_shape, input_shape) if isinstance(input_shape, int) else tuple(input_shape)
    rows: list[OpRow] = []
    hooks = []

    def hook(name: str):
        def fn(m: nn.Module, inputs, output) -> None:
            row = _row(name, m, inputs[0], output)
            if row is not None:
                rows.append(row)

        return fn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d, nn.BatchNorm2d, SqueezeExcite,
                          *_ACT_OPS)):  # fmt: skip
            hooks.append(m.register_forward_hook(hook(name)))
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None else torch.float32
    if device.type == "meta":
        # BN on meta tensors goes through slow decompositions; its output shape is its input's.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.forward = _identity
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
        for m in model.modules():
            m.__dict__.pop("forward", None)
    return rows


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _row(name: str, m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> OpRow | None:
    in_shape = tuple(x.shape[1:])
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        n_out = y[0].numel()
        vec = k * m.in_channels // m.groups
        bias = m.bias is not None
        params = m.weight.numel() + (m.bias.numel() if bias else 0)
        op = "dwconv" if m.groups == m.in_channels and m.groups > 1 else "conv"
        return OpRow(name, op, in_shape, m.kernel_size[0], m.in_channels, m.out_channels, params,
                     vec * n_out, (vec - 1) * n_out + (n_out if bias else 0),
                     vec * n_out + (n_out if bias else 0), True)  # fmt: skip
    if isinstance(m, nn.Linear):
        bias = m.bias is not None
        params = m.weight.numel() + (m.bias.numel() if bias else 0)
        return OpRow(name, "linear", in_shape, 1, m.in_features, m.out_features, params,
                     m.in_features * m.out_features,
                     (m.in_features - 1) * m.out_features + (m.out_features if bias else 0),
                     params, True)  # fmt: skip
    if isinstance(m, nn.AdaptiveAvgPool2d):
        c, hw = x.shape[1], x.shape[2] * x.shape[3]
        return OpRow(name, "avgpool", in_shape, x.shape[2], c, c, 0, c, (hw - 1) * c, c * hw, False)
    if isinstance(m, nn.BatchNorm2d):
        n = y[0].numel()
        params = m.weight.numel() + m.bias.numel() if m.affine else 0
        return OpRow(name, "batchnorm", in_shape, 1, m.num_features, m.num_features, params, n, n, 0, False)
    if isinstance(m, SqueezeExcite):
        n = y[0].numel()
        return OpRow(name + ".scale", "mul", in_shape, 1, x.shape[1], x.shape[1], 0, n, 0, 0, False)
    for kind, (mu, ad) in _ACT_OPS.items():
        if isinstance(m, kind):
            n = y[0].numel()
            return OpRow(name, type(m).__name__.lower(), in_shape, 1, x.shape[1], x.shape[1], 0,
                         mu * n, ad * n, 0, False)  # fmt: skip
    return None


def num_params(model: nn.Module) -> int:
    """Every learnable tensor; BN running statistics are buffers and do not count."""
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, input_shape: int | Sequence[int] = 224, in_channels: int = 3) -> Costs:
    """MACs of one forward pass (SPEC §3 convention) and the parameter count of ``model``."""
    rows = profile(model, input_shape, in_channels)
    return Costs(sum(r.macs for r in rows), num_params(model))


@dataclass(frozen=True)
class MicroNetCount:
    params: int
    mults: int
    adds: int

    @property
    def score(self) -> float:
        return micronet_score(self.params, self.mults, self.adds)


def count_micronet(model: nn.Module, input_shape: int | Sequence[int] = 224, in_channels: int = 3) -> MicroNetCount:
    """MicroNet Challenge counting with BN folded into the convs (SPEC §3)."""
    from ..nn.fold import fold_bn
    folded = fold_bn(model)
    rows = profile(folded, input_shape, in_channels)
    return MicroNetCount(num_params(folded), sum(r.mults for r in rows), sum(r.adds for r in rows))
