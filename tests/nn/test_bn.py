import pytest
import torch
from torch import nn

from spos.errors import SposError
from spos.nn.bn import recalibrate_bn
from spos.nn.supernet import SuperNet
from spos.space import Arch


def _direct_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance per channel over every image and pixel, in float64."""
    flat = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(1), flat.var(1, unbiased=True)


def _inputs_of(model: nn.Module, bns: list[nn.Module], images: torch.Tensor) -> dict:
    """Each BN's input when ``images`` go through ``model`` in one batch, BNs in train mode."""
    seen = {}
    hooks = [bn.register_forward_pre_hook(lambda m, a: seen.__setitem__(m, a[0].detach())) for bn in bns]
    model.eval()
    for bn in bns:
        bn.train()
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return seen


@pytest.fixture
def subnet(tiny_space):
    torch.manual_seed(0)
    arch = Arch((0, 3, 1, 2, 3), (9, 4, 6, 2, 9), tiny_space.stage_depths)
    net = SuperNet(tiny_space).subnet(arch)
    # Statistics a recalibration must forget.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(7.0)
    return net


@pytest.mark.parametrize("batch_size", [2, 5, 24])
def test_first_bn_equals_direct_stats_whatever_the_batch_size(subnet, batch_size):
    images = torch.randn(24, 3, 32, 32) * 2 + 0.5
    recalibrate_bn(subnet, images, batch_size)
    first = subnet.stem[1]
    mean, var = _direct_stats(subnet.stem[0](images))
    torch.testing.assert_close(first.running_mean.double(), mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(first.running_var.double(), var, atol=1e-4, rtol=1e-4)


def test_every_bn_equals_direct_stats_when_one_batch_holds_all_images(subnet):
    images = torch.randn(48, 3, 32, 32)
    recalibrate_bn(subnet, images, batch_size=48)
    bns = [m for m in subnet.modules() if isinstance(m, nn.BatchNorm2d)]
    inputs = _inputs_of(subnet, bns, images)
    assert len(inputs) == len(bns) > 10
    for bn in bns:
        mean, var = _direct_stats(inputs[bn])
        torch.testing.assert_close(bn.running_mean.double(), mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(bn.running_var.double(), var, atol=1e-4, rtol=1e-4)


def test_pooling_is_exact_where_per_batch_variance_averaging_is_not():
    # Batches with very different means: averaging per-batch variances misses the spread.
    bn = nn.Sequential(nn.BatchNorm2d(2))
    images = torch.cat([torch.randn(10, 2, 4, 4), torch.randn(10, 2, 4, 4) + 10])
    recalibrate_bn(bn, images, batch_size=10)
    mean, var = _direct_stats(images)
    torch.testing.assert_close(bn[0].running_var.double(), var, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bn[0].running_mean.double(), mean, atol=1e-4, rtol=1e-4)
    assert var.min() > 20  # the between-batch spread (means 0 and 10) dominates
    assert int(bn[0].num_batches_tracked) == 2


def test_modes_and_momentum_are_restored(subnet):
    subnet.train()
    subnet.classifier.eval()
    recalibrate_bn(subnet, torch.randn(8, 3, 32, 32), 4)
    assert subnet.training and subnet.stem[1].training and not subnet.classifier.training
    assert all(m.momentum == 0.1 for m in subnet.modules() if isinstance(m, nn.BatchNorm2d))


def test_recalibrated_eval_output_does_not_depend_on_old_stats(subnet, tiny_space):
    images = torch.randn(16, 3, 32, 32)
    recalibrate_bn(subnet, images, 16).eval()
    a = subnet(images)
    for m in subnet.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(-3.0)
    recalibrate_bn(subnet, images, 16).eval()
    torch.testing.assert_close(subnet(images), a)


def test_bad_sizes_are_user_errors(subnet):
    with pytest.raises(SposError, match="batch size"):
        recalibrate_bn(subnet, torch.randn(8, 3, 32, 32), 1)
    with pytest.raises(SposError, match="at least 2 images"):
        recalibrate_bn(subnet, torch.randn(1, 3, 32, 32), 8)
