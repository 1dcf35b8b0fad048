import pytest
import torch
from torch import nn

from spos.nn.bn import recalibrate_bn
from spos.nn.supernet import SuperNet
from spos.search.evaluator import Evaluator, SearchData
from spos.space import Arch

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_logits(supernet: SuperNet, arch: Arch, recal: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Logits of the subnet after plain-torch BN recalibration: each BN reset and switched to a
    cumulative average (momentum None), then one forward pass over all ``recal`` images in one
    batch, which leaves exactly their mean and unbiased variance in the running buffers."""
    net = supernet.subnet(arch).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        net(recal)
        return net.eval()(images).double()


@pytest.mark.parametrize("channels_last", [True, False])
def test_evaluator_scores_top1_and_cross_entropy_of_the_recalibrated_subnet_like_a_plain_forward_pass(
    supernet, tiny_space, channels_last
):
    g = torch.Generator().manual_seed(1)
    recal, images = torch.randn(24, 3, 32, 32, generator=g), torch.randn(40, 3, 32, 32, generator=g)
    arch = Arch((2, 0, 3, 1, 2), (4, 9, 2, 6, 5), tiny_space.stage_depths)
    logits = reference_logits(supernet, arch, recal, images)
    # Labels the reference gets right on 27 of 40 images, wrong on the rest: top-1 is 0.675.
    pred = logits.argmax(1)
    labels = torch.where(torch.arange(40) < 27, pred, (pred + 1) % 10)
    expected_loss = -logits.log_softmax(1)[torch.arange(40), labels].mean().item()

    # Batch 24: the recalibration set is one batch (the reference's exact statistics); the
    # held-out images run in batches of 24 and 16.
    evaluator = Evaluator(supernet, SearchData(recal, images, labels), batch_size=24, channels_last=channels_last)
    acc, loss = evaluator.score(arch)
    assert acc == 27 / 40
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert evaluator.accuracy(arch) == acc
    # The recalibration is what makes the reference: without it (the supernet's initial BN
    # buffers) the same labels score another loss.
    with torch.no_grad():
        stale = supernet.subnet(arch).eval()(images).double()
    stale_loss = -stale.log_softmax(1)[torch.arange(40), labels].mean().item()
    assert abs(stale_loss - expected_loss) > 0.05


@pytest.mark.parametrize("channels_last", [True, False])
def test_evaluator_is_top1_of_the_recalibrated_subnet_and_leaves_the_supernet_alone(
    supernet, data, channels_last
):
    arch = Arch((0, 1, 2, 3, 0), (9, 5, 2, 7, 4), supernet.space.stage_depths)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    acc = Evaluator(supernet, data, batch_size=16, channels_last=channels_last).accuracy(arch)

    net = recalibrate_bn(supernet.subnet(arch), data.recal_images, 16).eval()
    with torch.no_grad():
        expected = (net(data.holdout_images).argmax(1) == data.holdout_labels).float().mean().item()
    assert acc == pytest.approx(expected)
    # Labels equal to the subnet's own predictions score 1: the holdout labels are what is scored.
    with torch.no_grad():
        own = net(data.holdout_images).argmax(1)
    own_data = SearchData(data.recal_images, data.holdout_images, own)
    assert Evaluator(supernet, own_data, 16, channels_last).accuracy(arch) == 1.0
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_score_net_scores_a_changed_subnet_not_the_supernets_weights(supernet, tiny_space):
    g = torch.Generator().manual_seed(2)
    recal, images = torch.randn(24, 3, 32, 32, generator=g), torch.randn(40, 3, 32, 32, generator=g)
    arch = Arch((1, 3, 0, 2, 1), (6, 2, 8, 4, 9), tiny_space.stage_depths)
    labels = reference_logits(supernet, arch, recal, images).argmax(1)
    evaluator = Evaluator(supernet, SearchData(recal, images, labels), batch_size=24)
    # The subnet as copied out scores as score(arch) does: every label is its own prediction.
    assert evaluator.score_net(supernet.subnet(arch)) == evaluator.score(arch)
    assert evaluator.score(arch)[0] == 1.0
    # A subnet whose classifier was changed after the copy is scored as it is now: with the
    # bias of the class it predicts least pushed far up, it predicts that class everywhere.
    net = supernet.subnet(arch)
    with torch.no_grad():
        last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        least = int(torch.bincount(labels, minlength=10).argmin())
        last.bias[least] += 1e4
    acc, loss = evaluator.score_net(net)
    assert acc == pytest.approx((labels == least).float().mean().item())
    assert loss > 10.0
    # Its BN statistics were recalibrated in place on the recalibration images.
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
