"""The op-by-op profile (``spos.cost.profile``, behind ``spos profile`` and the int8 report) row by
row against hand counts, on a model with one op of every kind the counter knows, non-square
kernels and maps, a grouped conv that is not depthwise and a 2-channel depthwise conv."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spos.cost.counting import Costs, count, count_micronet, profile
from spos.errors import SposError


def model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 2, (3, 1), padding=(1, 0), bias=False),  # groups == in_channels == 1: a conv
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=True),  # depthwise, 2 channels
        nn.Hardswish(),
        nn.Conv2d(2, 8, 1, bias=True),
        nn.Conv2d(8, 4, 1, groups=2, bias=False),  # grouped, not depthwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


# Input 1 x 6 x 5 (C, H, W); every map below keeps 6 x 5 = 30 positions.
# name, op, input shape, kernel, cin, cout, params, mults, adds, macs, quantizable
EXPECTED = [
    ("0", "conv", (1, 6, 5), 3, 1, 2, 6, 3 * 60, 2 * 60, 3 * 60, True),  # 3 taps x 60 outputs
    ("1", "batchnorm", (2, 6, 5), 1, 2, 2, 4, 60, 60, 0, False),
    ("2", "relu", (2, 6, 5), 1, 2, 2, 0, 60, 0, 0, False),
    ("3", "dwconv", (2, 6, 5), 3, 2, 2, 18 + 2, 9 * 60, 8 * 60 + 60, 9 * 60 + 60, True),
    ("4", "hardswish", (2, 6, 5), 1, 2, 2, 0, 3 * 60, 60, 0, False),
    ("5", "conv", (2, 6, 5), 1, 2, 8, 16 + 8, 2 * 240, 1 * 240 + 240, 2 * 240 + 240, True),
    ("6", "conv", (8, 6, 5), 1, 8, 4, 16, 4 * 120, 3 * 120, 4 * 120, True),  # 4 inputs per group
    ("7", "avgpool", (4, 6, 5), 6, 4, 4, 0, 4, 29 * 4, 30 * 4, False),
    ("9", "linear", (4,), 1, 4, 10, 50, 40, 3 * 10 + 10, 50, True),
]


def test_every_row_matches_the_hand_count():
    rows = profile(model(), (1, 6, 5))
    got = [(r.name, r.op, r.input_shape, r.kernel, r.cin, r.cout, r.params, r.mults, r.adds, r.macs,
            r.quantizable) for r in rows]  # fmt: skip
    assert got == EXPECTED
    for r in rows:  # counts are whole numbers, not floats that compare equal
        assert all(
            type(v) is int for v in (r.kernel, r.cin, r.cout, r.params, r.mults, r.adds, r.macs)
        )
        assert type(r.quantizable) is bool
    assert rows[0].as_dict()["input_shape"] == "1x6x5"


def test_count_and_micronet_pass_the_input_channels_through():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 5, 10))  # no conv to take C from
    assert count(mlp, (4, 5), in_channels=2) == Costs(410, 410)
    m = count_micronet(mlp, (4, 5), in_channels=2)
    assert (m.params, m.mults, m.adds) == (410, 400, 39 * 10 + 10)
    with pytest.raises(SposError) as err:
        count(mlp, (4, 5))
    assert (
        str(err.value) == "the model has no Conv2d to take the input channels from; pass (C, H, W)"
    )


def test_micronet_profile_folds_bn_into_the_conv_bias():
    rows = profile(model(), torch.zeros(1, 1, 6, 5), micronet=True)
    assert "batchnorm" not in [r.op for r in rows]
    first = rows[0]  # the folded conv gained a bias: 2 params and one add per output
    assert (first.op, first.params, first.mults, first.adds, first.macs) == (
        "conv",
        6 + 2,
        180,
        120 + 60,
        180 + 60,
    )


def test_rows_of_a_bias_free_linear_a_bn_without_affine_and_a_squeeze_excite_scale():
    from spos.nn.ops import SqueezeExcite

    net = nn.Sequential(
        nn.Conv2d(1, 8, 1, bias=False),
        nn.BatchNorm2d(8, affine=False),  # no weight or bias: 0 params
        SqueezeExcite(8),  # hidden make_divisible(8 // 4, 8) = 8; its own row is the final scale
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3, bias=False),
    )
    # Input 1 x 2 x 3: 6 positions; 8 x 6 = 48 activations per full map.
    expected = [
        ("0", "conv", (1, 2, 3), 1, 1, 8, 8, 48, 0, 48, True),
        ("1", "batchnorm", (8, 2, 3), 1, 8, 8, 0, 48, 48, 0, False),
        ("2.pool", "avgpool", (8, 2, 3), 2, 8, 8, 0, 8, 5 * 8, 48, False),
        ("2.reduce", "conv", (8, 1, 1), 1, 8, 8, 64 + 8, 64, 7 * 8 + 8, 64 + 8, True),
        ("2.relu", "relu", (8, 1, 1), 1, 8, 8, 0, 8, 0, 0, False),
        ("2.expand", "conv", (8, 1, 1), 1, 8, 8, 64 + 8, 64, 7 * 8 + 8, 64 + 8, True),
        ("2.gate", "hardsigmoid", (8, 1, 1), 1, 8, 8, 0, 2 * 8, 8, 0, False),
        ("2.scale", "mul", (8, 2, 3), 1, 8, 8, 0, 48, 0, 0, False),  # x * gate: one mult each
        ("3", "avgpool", (8, 2, 3), 2, 8, 8, 0, 8, 5 * 8, 48, False),
        ("5", "linear", (8,), 1, 8, 3, 24, 24, 7 * 3, 24, True),  # no bias: no add of one
    ]
    rows = profile(net, (1, 2, 3))
    got = [(r.name, r.op, r.input_shape, r.kernel, r.cin, r.cout, r.params, r.mults, r.adds, r.macs,
            r.quantizable) for r in rows]  # fmt: skip
    assert got == expected
    assert all(type(r.params) is int and type(r.quantizable) is bool for r in rows)
    # MACs: conv, SE pool, reduce, expand, pool, linear (BN, activations and the scale: none).
    assert count(net, (1, 2, 3)) == Costs(48 + 48 + 72 + 72 + 48 + 24, 8 + 72 + 72 + 24)


def test_the_example_input_follows_the_model_and_counts_stay_per_image():
    net = model()
    rows = profile(net, (1, 6, 5))
    # An example batch counts its first image only; the default input is 224 x 224.
    assert profile(net, torch.zeros(3, 1, 6, 5)) == rows
    assert profile(net) == profile(net, 224)
    # The input takes the model's dtype (a float64 conv refuses float32) and, with no
    # parameters at all, float32 on the CPU.
    assert profile(model().double(), (1, 6, 5)) == rows
    free = profile(nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1)), (2, 3, 3))
    assert [(r.op, r.mults, r.adds, r.macs) for r in free] == [("relu", 18, 0, 0), ("avgpool", 2, 16, 18)]
    # A model on the meta device costs the same and gets its own batch-norm forward back.
    with torch.device("meta"):
        meta = model()
    assert profile(meta, (1, 6, 5)) == rows
    assert not any("forward" in m.__dict__ for m in meta.modules())
