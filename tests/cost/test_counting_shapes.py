"""``count`` takes the input shapes users pass (thop / fvcore / torchinfo conventions included)."""

import pytest
import torch
import torchvision

from spos.cost import Costs, count, count_micronet, profile
from spos.errors import SposError

#: torchvision models built without weights, and their MACs / params per 224x224 image. Built on
#: the meta device: counting runs shapes only, no arithmetic.
MODELS = {"resnet18": (torchvision.models.resnet18, 1_814_099_432, 11_689_512),
          "mobilenet_v2": (torchvision.models.mobilenet_v2, 300_775_272, 3_504_872)}  # fmt: skip
FORMS = {"int": 224, "(H, W)": (224, 224), "(C, H, W)": (3, 224, 224), "(N, C, H, W)": (1, 3, 224, 224),
         "batch of 8": [8, 3, 224, 224], "torch.Size": torch.Size([3, 224, 224]),
         "example tensor": torch.empty(2, 3, 224, 224, device="meta"),
         "one-image tensor": torch.empty(3, 224, 224, device="meta")}  # fmt: skip


@pytest.fixture(scope="module")
def models():
    with torch.device("meta"):
        return {name: build() for name, (build, _, _) in MODELS.items()}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_shape_form_counts_one_image(models, name, form):
    _, macs, params = MODELS[name]
    assert count(models[name], FORMS[form]) == Costs(macs, params)


def test_an_example_tensor_on_the_cpu_runs_through_the_real_model():
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2(num_classes=10)
    assert count(net, torch.randn(4, 3, 64, 64)) == count(net, 64) == count(net, (1, 3, 64, 64))


def test_channels_come_from_the_first_convolution():
    grey = torchvision.models.resnet18(num_classes=10)
    grey.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # real weights: micronet folds BN
    assert count(grey, 28) == count(grey, (28, 28)) == count(grey, (1, 28, 28)) == count(grey, (5, 1, 28, 28))
    assert count_micronet(grey, 28) == count_micronet(grey, (1, 28, 28))
    assert len(profile(grey, torch.zeros(1, 28, 28))) == len(profile(grey, 28))


@pytest.mark.parametrize("bad", [(224,), (2, 2, 3, 224, 224), "224", 224.0, (3, 0, 224), (3, -1, 5), None, True,
                                 (3.0, 224, 224), torch.zeros(224), torch.zeros(1, 1, 1, 3, 8)])  # fmt: skip
def test_anything_else_is_a_one_line_error(models, bad):
    with pytest.raises(SposError) as e:
        count(models["resnet18"], bad)
    msg = str(e.value)
    assert "\n" not in msg and ("input shape must be" in msg or "example input must be" in msg)


def test_an_input_the_model_cannot_take_is_a_one_line_error_not_a_conv_traceback(models):
    with pytest.raises(SposError, match=r"cannot run on a 1x1x32x32 input .*3 channels") as e:
        count(torchvision.models.resnet18(), (1, 32, 32))
    assert "\n" not in str(e.value)
