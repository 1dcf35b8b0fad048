"""ShuffleNetV2-style choice blocks SNB-3/5/7 and SXB-3 (SPEC §1).

A :class:`ChoiceBlock` is an ordinary module: built at width ``mid`` it is the block of a subnet.
Built at the maximum width it is one of the supernet's four choices, and ``forward_sliced(x, mid)``
runs it at any narrower width by using the first ``mid`` channels of every width-dependent
tensor. Every such tensor is sliced as a *prefix in every dimension*, so extracting a subnet block
is ``dst = src[:n0, :n1, ...]`` for each parameter and buffer (``SuperNet.subnet``).

On a channels_last CPU tensor the main branch is computed :data:`CHANNEL_ALIGN`-aligned: ``mid``
rounded up, with the surplus channels' weights masked out of the pointwise conv that reads them.
The result, every gradient and every running statistic equal the plain slice's; only the
kernels differ (see :meth:`ChoiceBlock.forward_sliced`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..space import BLOCK_KERNELS
from .ops import Conv2d, SqueezeExcite, activation, channel_split, conv2d, is_channels_last

#: In channels_last on CPU, sliced main branches run at widths rounded up to a multiple of this.
#: oneDNN's depthwise convs and ATen's batch norm work on whole 16-float vectors there; a width
#: like 38 or 57 takes their slow tail paths (an SXB-3 block at width 44 trained 1.8x slower than
#: at 48). NCHW kernels have no such cliff, so NCHW and other devices slice exactly.
CHANNEL_ALIGN = 16


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class ChoiceBlock(nn.Module):
    """One choice block.

    stride 1: even input channels pass through, odd ones go through the main branch (in = out).
    stride 2: a projection branch (dw k x k s2 -> BN -> pw -> BN -> act) beside a main branch
    that takes all inputs and makes ``out - in`` channels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        block_gene: int,
        mid: int,
        act: str = "relu",
        use_se: bool = False,
    ) -> None:
        super().__init__()
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 choice block needs in_channels == out_channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.block_gene, self.mid = stride, block_gene, mid
        k = BLOCK_KERNELS[block_gene]
        main_in = in_channels // 2 if stride == 1 else in_channels
        main_out = out_channels // 2 if stride == 1 else out_channels - in_channels

        if block_gene == 3:  # SXB-3: three (dw3 -> BN -> pw -> BN -> act) units
            layers = [
                *conv_bn(main_in, main_in, 3, stride, groups=main_in),
                *conv_bn(main_in, mid), activation(act),
                *conv_bn(mid, mid, 3, groups=mid),
                *conv_bn(mid, mid), activation(act),
                *conv_bn(mid, mid, 3, groups=mid),
                *conv_bn(mid, main_out), activation(act),
            ]  # fmt: skip
        else:  # SNB-k: pw -> BN -> act -> dw k x k -> BN -> pw -> BN -> act
            layers = [
                *conv_bn(main_in, mid), activation(act),
                *conv_bn(mid, mid, k, stride, groups=mid),
                *conv_bn(mid, main_out), activation(act),
            ]  # fmt: skip
        self.main = nn.Sequential(*layers)
        self.se = SqueezeExcite(main_out) if use_se else None
        if stride == 2:
            self.proj = nn.Sequential(
                *conv_bn(in_channels, in_channels, k, 2, groups=in_channels),
                *conv_bn(in_channels, in_channels),
                activation(act),
            )
        else:
            self.proj = None
        # Deploy-time only: spos.nn.fold.shuffle_as_conv sets a ShuffleSplitConv here for backends
        # that dislike strided slicing. None keeps the default forward and state_dict unchanged.
        self.split: nn.Module | None = None

    def _branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.proj is None:
            return channel_split(x) if self.split is None else self.split(x)
        return self.proj(x), x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_proj, x_main = self._branches(x)
        y = self.main(x_main)
        if self.se is not None:
            y = self.se(y)
        return torch.cat((x_proj, y), 1)

    def forward_sliced(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        """Run the main branch at width ``mid`` <= ``self.mid``: compute follows the width.

        On a channels_last CPU input the branch runs ``width`` = ``mid`` rounded up to
        :data:`CHANNEL_ALIGN` channels (at most ``self.mid``). The surplus channels ``mid:width``
        are real supernet channels, but every pointwise conv that reads mid channels gets their
        input columns multiplied by 0, so they add nothing to the output and receive exactly zero
        gradient, and batch norm leaves their running statistics as they were.
        """
        if mid == self.mid:
            return self.forward(x)
        width = mid
        if x.device.type == "cpu" and x.dim() == 4 and is_channels_last(x):
            width = min(-(-mid // CHANNEL_ALIGN) * CHANNEL_ALIGN, self.mid)
        mask = None
        if width != mid:
            mask = (torch.arange(width, device=x.device) < mid).to(x.dtype).view(1, -1, 1, 1)
        x_proj, y = self._branches(x)
        last_conv = self.main[-3]  # ... conv, BN, act
        c = y.shape[1]
        is_mid = False  # whether y's channels are the mid ones (between the first and last pw)
        for m in self.main:
            if isinstance(m, nn.Conv2d):
                if m.groups > 1:  # depthwise: as wide as its input
                    w, groups = m.weight[:c], c
                else:
                    cout = m.out_channels if m is last_conv else width
                    w, groups = m.weight[:cout, :c], 1
                    if is_mid and mask is not None:
                        w = w * mask
                    is_mid = m is not last_conv
                y = conv2d(y, w, None, m.stride[0], m.padding[0], groups)
                c = y.shape[1]
            elif isinstance(m, nn.BatchNorm2d):
                y = _sliced_batch_norm(m, y, c, keep=mid if is_mid else c)
            else:
                y = m(y)
        if self.se is not None:
            y = self.se(y)
        return torch.cat((x_proj, y), 1)


def _sliced_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, c: int, keep: int) -> torch.Tensor:
    """``bn`` on the first ``c`` channels; updates the running statistics of the first ``keep``
    of them in place (channels ``keep:c`` are alignment surplus, see ``forward_sliced``)."""
    training = bn.training or bn.running_mean is None
    momentum = bn.momentum
    updates = bn.training and bn.track_running_stats and bn.num_batches_tracked is not None
    if updates:
        bn.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative average, as nn.BatchNorm2d does
            momentum = 1.0 / float(bn.num_batches_tracked)
    mean = bn.running_mean[:c] if bn.running_mean is not None else None
    var = bn.running_var[:c] if bn.running_var is not None else None
    # Surplus channels' statistics must not move: batch norm updates copies, and only the first
    # ``keep`` entries are written back (autograd saves the tensors it was given, so they stay).
    partial = updates and keep < c and mean is not None
    if partial:
        mean, var = mean.clone(), var.clone()
    y = F.batch_norm(
        x, mean, var, bn.weight[:c], bn.bias[:c], training,
        momentum if momentum is not None else 0.0, bn.eps,
    )  # fmt: skip
    if partial:
        with torch.no_grad():
            bn.running_mean[:keep].copy_(mean[:keep])
            bn.running_var[:keep].copy_(var[:keep])
    return y
