import copy
import random

import pytest
import torch

from spos.genes import largest, sample, smallest
from spos.nn.supernet import SubNet, SuperNet
from spos.space import SearchSpace


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


@pytest.mark.parametrize("use_se", [False, True])
def test_channels_last_training_step_equals_the_exact_nchw_slice(tiny_space, use_se):
    """In channels_last the main branches run at widths rounded up to CHANNEL_ALIGN with the
    surplus masked out, and the channel split has its own backward. Outputs, every gradient
    (the surplus included: exactly 0) and every running statistic must equal plain NCHW slicing."""
    from spos.nn.blocks import CHANNEL_ALIGN

    space = tiny_space.replace(use_se=use_se, dropout=0.0)  # no dropout: same function twice
    torch.manual_seed(0)
    nchw = SuperNet(space).train()
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    rng = random.Random(1)
    padded = 0
    for arch in [sample(space, rng) for _ in range(4)] + [smallest(space)]:
        x = torch.randn(6, 3, 32, 32)
        x_cl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
        x = x.requires_grad_()
        for net in (nchw, cl):
            net.zero_grad(set_to_none=True)
        out, out_cl = nchw(x, arch), cl(x_cl, arch)
        torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-5)
        out.square().sum().backward()
        out_cl.square().sum().backward()
        assert x_cl.grad.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(x_cl.grad, x.grad, rtol=1e-4, atol=1e-5)
        for (name, p), p_cl in zip(nchw.named_parameters(), cl.parameters()):
            if p.grad is None:
                assert p_cl.grad is None, name
                continue
            # summation order differs between layouts: compare on the gradient's own scale
            err = (p_cl.grad - p.grad).abs().max().item()
            assert err <= 1e-5 * max(p.grad.abs().max().item(), 1.0), (name, err)
        for (name, b), b_cl in zip(nchw.named_buffers(), cl.buffers()):
            torch.testing.assert_close(b_cl, b, rtol=1e-5, atol=1e-6, msg=name)
        for pos, block in enumerate(cl.chosen_blocks(arch)):
            mid = space.mid(pos, arch.channels[pos])
            if mid == block.mid:
                continue
            padded += mid % CHANNEL_ALIGN != 0
            for name, p in block.main.named_parameters():  # mid channels beyond the slice: exactly 0
                if p.shape[0] == block.mid:
                    assert not p.grad[mid:].any(), (pos, name)
                if p.dim() == 4 and p.shape[1] == block.mid:
                    assert not p.grad[:, mid:].any(), (pos, name)
    assert padded > 0, "no path exercised the aligned widths"


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
def test_channel_split_gradient_keeps_the_layout_and_is_twice_differentiable(fmt):
    from spos.nn.ops import channel_split

    x = torch.randn(2, 8, 3, 3, dtype=torch.double).contiguous(memory_format=fmt).requires_grad_()
    even, odd = channel_split(x)
    (even.sum() + 2 * odd.sum()).backward()
    assert x.grad.is_contiguous(memory_format=fmt)
    assert torch.equal(x.grad[:, 0::2], torch.ones_like(even)) and torch.equal(x.grad[:, 1::2], 2 * torch.ones_like(odd))
    assert torch.autograd.gradcheck(channel_split, (x,))
    assert torch.autograd.gradgradcheck(channel_split, (x,))  # e.g. gradient penalties
    only_odd = torch.autograd.grad(channel_split(x)[1].square().sum(), x)[0]  # one half unused
    assert not only_odd[:, 0::2].any() and torch.equal(only_odd[:, 1::2], 2 * x[:, 1::2].detach())


def test_per_sample_gradients_with_torch_func_go_through_the_split(tiny_space):
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    net = SuperNet(tiny_space.replace(dropout=0.0)).double().eval()
    arch = sample(tiny_space, random.Random(0))
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = dict(net.named_buffers())

    def loss(p, image):
        return functional_call(net, (p, buffers), (image.unsqueeze(0), arch)).logsumexp(1).sum()

    images = torch.randn(3, 3, 32, 32, dtype=torch.double)
    batched = vmap(grad(loss), in_dims=(None, 0))(params, images)
    for i in range(3):
        one = grad(loss)(params, images[i])
        for k in ("stem.0.weight", "classifier.1.weight"):
            torch.testing.assert_close(batched[k][i], one[k])


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
