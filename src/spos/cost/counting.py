"""Counting MACs, parameters and MicroNet operations (SPEC §3), and the exact cost lookup table.

Units: ``macs`` are multiply-accumulates (what the SPEC tables call "FLOPs"); ``mults`` and
``adds`` are the MicroNet Challenge's separate counts; all are per image (batch 1).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import SposError
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


#: What :func:`count`, :func:`profile` and :func:`count_micronet` accept as the input.
InputShape = int | Sequence[int] | torch.Tensor


def profile(
    model: nn.Module,
    input_shape: InputShape = 224,
    in_channels: int | None = None,
    micronet: bool = False,
) -> list[OpRow]:
    """Op-by-op costs of one forward pass of ``model`` on one image.

    ``input_shape`` is what :func:`example_input` accepts (a square side, (H, W), (C, H, W),
    (N, C, H, W) or an example tensor). With ``micronet=True`` batch norms are folded into
    their convolutions first (SPEC §3), so BN costs nothing and convs gain a bias. Works for any
    module; models on the ``meta`` device cost no compute.
    """
    if micronet:
        from ..nn.fold import fold_bn
        model = fold_bn(model)
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
    x = example_input(model, input_shape, in_channels)
    if x.device.type == "meta":
        # BN on meta tensors goes through slow decompositions; its output shape is its input's.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.forward = _identity
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(x)
        model.train(was_training)
    except RuntimeError as e:
        raise SposError(f"the model cannot run on a {'x'.join(map(str, x.shape))} input "
                        f"({str(e).splitlines()[0]}); pass the input shape it takes") from None  # fmt: skip
    finally:
        for h in hooks:
            h.remove()
        for m in model.modules():
            m.__dict__.pop("forward", None)
    return rows


def example_input(model: nn.Module, input_shape: InputShape, in_channels: int | None = None) -> torch.Tensor:
    """A 1 x C x H x W input for ``model`` on its device and dtype (zeros), from the shapes users
    pass: an int (a square side), (H, W), (C, H, W), (N, C, H, W) (the thop / fvcore
    convention; costs stay per image, so N is dropped) or an example tensor (its first image).
    C, where not given, is ``in_channels`` or else the first convolution's input channels.
    Anything else is a one-line :class:`SposError`."""
    if isinstance(input_shape, torch.Tensor):
        if input_shape.dim() not in (3, 4) or 0 in input_shape.shape:
            raise SposError(f"an example input must be a C x H x W or N x C x H x W tensor, got shape "
                            f"{tuple(input_shape.shape)}")  # fmt: skip
        return input_shape[:1] if input_shape.dim() == 4 else input_shape.unsqueeze(0)
    def whole(d) -> bool:  # ints, numpy ints; not bools
        return isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0

    if whole(input_shape):
        dims: tuple = (int(input_shape), int(input_shape))
    elif isinstance(input_shape, Sequence) and not isinstance(input_shape, str):
        dims = tuple(input_shape)
    else:
        dims = ()
    if not 2 <= len(dims) <= 4 or not all(whole(d) for d in dims):
        raise SposError(f"input shape must be an int (square side), (H, W), (C, H, W), (N, C, H, W) or an example "
                        f"tensor, of positive ints; got {input_shape!r}")  # fmt: skip
    if len(dims) == 2:
        dims = (in_channels or _first_conv_channels(model), *dims)
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None else torch.float32
    return torch.zeros((1, *map(int, dims[-3:])), device=device, dtype=dtype)


def _first_conv_channels(model: nn.Module) -> int:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise SposError("the model has no Conv2d to take the input channels from; pass (C, H, W)")
    return conv.in_channels


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


def count(model: nn.Module, input_shape: InputShape = 224, in_channels: int | None = None) -> Costs:
    """MACs of one forward pass on one image (SPEC §3 convention) and the parameter count of
    ``model``. ``input_shape``: an int (square side), (H, W), (C, H, W), (N, C, H, W) or an
    example tensor (:func:`example_input`); C defaults to the first convolution's input channels."""
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


def count_micronet(model: nn.Module, input_shape: InputShape = 224, in_channels: int | None = None) -> MicroNetCount:
    """MicroNet Challenge counting with BN folded into the convs (SPEC §3)."""
    from ..nn.fold import fold_bn
    folded = fold_bn(model)
    rows = profile(folded, input_shape, in_channels)
    return MicroNetCount(num_params(folded), sum(r.mults for r in rows), sum(r.adds for r in rows))
