"""The CPU fast paths of spos.nn.ops.conv2d give F.conv2d's results: outputs and gradients."""

import pytest
import torch
import torch.nn.functional as F

from spos.nn import ops

pytestmark = pytest.mark.usefixtures("one_thread")


def _both(x, w, b, stride, padding, groups):
    """Output and input/weight/bias gradients of ops.conv2d and of F.conv2d on copies."""
    results = []
    for fn in (ops.conv2d, lambda *a: F.conv2d(a[0], a[1], a[2], a[3], a[4], 1, a[5])):
        xi, wi = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        bi = None if b is None else b.detach().clone().requires_grad_()
        y = fn(xi, wi, bi, stride, padding, groups)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))
        results.append((y, xi.grad, wi.grad, None if bi is None else bi.grad))
    return results


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(("size", "k", "stride"), [(1, 3, 1), (2, 7, 2), (2, 5, 1), (3, 7, 1), (4, 7, 2), (5, 3, 2), (7, 7, 1)])
@pytest.mark.parametrize("bias", [False, True])
def test_depthwise_equals_f_conv2d_where_the_kernel_outgrows_the_map(layout, size, k, stride, bias):
    g = torch.Generator().manual_seed(size * 31 + k)
    c = 6
    x = torch.randn(3, c, size, size, generator=g).contiguous(memory_format=layout)
    w, b = torch.randn(c, 1, k, k, generator=g), (torch.randn(c, generator=g) if bias else None)
    (y, gx, gw, gb), (ry, rgx, rgw, rgb) = _both(x, w, b, stride, k // 2, c)
    assert y.shape == ry.shape
    torch.testing.assert_close(y, ry, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, rgx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rgw, rtol=1e-5, atol=1e-5)  # cropped taps get exactly zero
    if bias:
        torch.testing.assert_close(gb, rgb, rtol=1e-5, atol=1e-5)
    if size + k // 2 < k:  # taps that only ever see padding
        assert torch.count_nonzero(gw[:, :, 0, :]) == 0


@pytest.mark.parametrize("size", [1, 2, 4, 5])
def test_pointwise_on_tiny_channels_last_maps_equals_f_conv2d(size):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(4, 8, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(5, 8, 1, 1, generator=g), torch.randn(5, generator=g)
    (y, gx, gw, gb), (ry, rgx, rgw, rgb) = _both(x, w, b, 1, 0, 1)
    for got, want in ((y, ry), (gx, rgx), (gw, rgw), (gb, rgb)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last)  # the layout oneDNN would give


def test_fast_paths_can_be_switched_off_and_are_off_while_tracing(monkeypatch):
    calls = []
    real = ops.depthwise_conv2d
    monkeypatch.setattr(ops, "depthwise_conv2d", lambda *a: calls.append(1) or real(*a))
    x, w = torch.randn(2, 4, 2, 2), torch.randn(4, 1, 7, 7)
    ops.conv2d(x, w, None, 2, 3, 4)
    assert calls == [1]
    monkeypatch.setattr(ops, "FAST_PATHS", False)
    ops.conv2d(x, w, None, 2, 3, 4)
    assert calls == [1]
    monkeypatch.setattr(ops, "FAST_PATHS", True)
    torch.jit.trace(lambda t: ops.conv2d(t, w, None, 2, 3, 4), (x,), check_trace=False)
    assert calls == [1]
