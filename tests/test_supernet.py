import random

import pytest
import torch

from spos.space import SearchSpace, largest, sample, smallest
from spos.supernet import SubNet, SuperNet


@pytest.mark.parametrize("use_se,lcap", [(False, False), (True, True)])
def test_subnet_output_equals_supernet_output(tiny_space, use_se, lcap):
    space = tiny_space.replace(use_se=use_se, last_conv_after_pooling=lcap)
    torch.manual_seed(0)
    net = SuperNet(space)
    rng = random.Random(0)
    # give BN non-trivial running stats on several paths first
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(torch.randn(8, 3, 32, 32), sample(space, rng))
    net.eval()
    x = torch.randn(4, 3, 32, 32)
    for arch in [sample(space, rng) for _ in range(6)] + [largest(space), smallest(space)]:
        sub = net.subnet(arch).eval()
        with torch.no_grad():
            diff = (net(x, arch) - sub(x)).abs().max().item()
        assert diff <= 1e-5, (str(arch), diff)


def test_only_the_chosen_blocks_and_channel_slices_get_gradients(tiny_space):
    torch.manual_seed(0)
    net = SuperNet(tiny_space).train()
    arch = sample(tiny_space, random.Random(3))
    arch = type(arch)(arch.blocks, (2,) * len(arch.blocks), arch.stage_depths)  # scale 0.6
    net(torch.randn(4, 3, 32, 32), arch).sum().backward()
    for pos, (choices, b) in enumerate(zip(net.features, arch.blocks)):
        for gene, block in enumerate(choices):
            grads = [p.grad for p in block.parameters()]
            if gene != b:
                assert all(g is None for g in grads), f"unchosen block {gene} at {pos} got a gradient"
                continue
            mid = tiny_space.mid(pos, arch.channels[pos])
            assert mid < block.mid
            first_pw = next(m for m in block.main if isinstance(m, torch.nn.Conv2d) and m.groups == 1)
            g = first_pw.weight.grad
            assert g[:mid].abs().sum() > 0
            assert g[mid:].abs().sum() == 0
            bn = next(m for m in block.main if isinstance(m, torch.nn.BatchNorm2d) and m.num_features == block.mid)
            assert bn.weight.grad[mid:].abs().sum() == 0 and bn.weight.grad[:mid].abs().sum() > 0


def test_sliced_training_forward_updates_only_the_slice_of_bn_statistics(tiny_space):
    net = SuperNet(tiny_space).train()
    arch = smallest(tiny_space)
    block = net.chosen_blocks(arch)[1]
    bn = block.main[1]
    before = bn.running_mean.clone()
    with torch.no_grad():
        net(torch.randn(4, 3, 32, 32), arch)
    mid = tiny_space.mid(1, arch.channels[1])
    assert not torch.equal(bn.running_mean[:mid], before[:mid])
    assert torch.equal(bn.running_mean[mid:], before[mid:])


def test_extracted_subnet_has_same_shapes_as_one_built_from_scratch(tiny_space):
    net = SuperNet(tiny_space)
    for seed in range(5):
        arch = sample(tiny_space, random.Random(seed))
        a = {k: v.shape for k, v in net.subnet(arch).state_dict().items()}
        b = {k: v.shape for k, v in SubNet(tiny_space, arch).state_dict().items()}
        assert a == b
    # and at full size
    space = SearchSpace()
    arch = sample(space, random.Random(0))
    with torch.device("meta"):
        full = SuperNet(space)
        a = {k: v.shape for k, v in full.subnet(arch).state_dict().items()}
        b = {k: v.shape for k, v in SubNet(space, arch).state_dict().items()}
    assert a == b


def test_subnet_is_plain_pytorch(tiny_space):
    sub = SubNet(tiny_space, sample(tiny_space, random.Random(0)))
    traced = torch.fx.symbolic_trace(sub.eval())  # static graph, no arch argument anywhere
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(traced(x), sub(x))
