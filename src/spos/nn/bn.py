"""Exact BN recalibration (SPEC §5).

Weights shared across paths leave a subnet's BN running statistics meaningless, so every
candidate's statistics are recomputed before it is scored. The SPEC asks for an *exact* average
over a fixed image set, not the EMA of the official and MXNet code (dominated by the last
batches): each BN's running mean/var become the mean and unbiased variance of everything that
BN saw, pooled over all batches (Chan's parallel formula, float64), whatever the batch size.

BNs normalise with batch statistics during recalibration (as in training), so a BN whose input
passes through earlier BNs sees inputs that depend on how the images were batched; only the
first BN, or any BN when one batch holds all images, is batch-size independent. That is the
standard SPOS procedure; the pooling removes the EMA's bias, not this dependence.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SposError


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 256,
    forward=None,
) -> nn.Module:
    """Reset and recompute every ``nn.BatchNorm2d``'s running statistics over ``images``.

    ``images`` is an N x C x H x W float tensor already on the model's device (decoded once, no
    augmentation). ``batch_size`` is in images; batches are made near-equal (sizes differ by at
    most one) so that none has a single image. ``forward`` (default ``model``) is the callable
    run on each batch. Only BNs called as modules are recalibrated (subnets, not the supernet's
    sliced BNs). Returns ``model`` with its train/eval modes restored; running stats updated in
    place; ``num_batches_tracked`` counts the batches.
    """
    if batch_size < 2:
        raise SposError(f"BN recalibration needs a batch size of at least 2, got {batch_size}")
    n = int(images.shape[0])
    if n < 2:
        raise SposError(f"BN recalibration needs at least 2 images, got {n}; raise --recal-images")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {bn: bn.momentum for bn in bns}
    stats: dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]] = {bn: [] for bn in bns}

    def record(bn: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        # With momentum 1 the BN's own forward leaves this batch's mean and unbiased variance in
        # its buffers: the statistics come for free instead of a second reduction per layer.
        x = inputs[0]
        stats[bn].append((x.numel() // x.shape[1], bn.running_mean.clone(), bn.running_var.clone()))

    hooks = [bn.register_forward_hook(record) for bn in bns]
    try:
        model.eval()  # dropout off; only the BNs normalise with batch statistics
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = 1.0
            bn.train()
        run = forward if forward is not None else model
        for batch in torch.tensor_split(images, -(-n // batch_size)):
            run(batch)
        for bn in bns:
            if stats[bn]:
                _pool(bn, stats[bn])
    finally:
        for h in hooks:
            h.remove()
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return model


def _pool(bn: nn.Module, batches: list[tuple[int, torch.Tensor, torch.Tensor]]) -> None:
    """Combine per-batch (count, mean, unbiased var) into the pooled mean and unbiased var."""
    counts = torch.tensor([c for c, _, _ in batches], dtype=torch.float64, device=bn.running_mean.device)
    means = torch.stack([m for _, m, _ in batches]).double()
    variances = torch.stack([v for _, _, v in batches]).double()
    total = counts.sum()
    mean = (counts[:, None] * means).sum(0) / total
    # Sum of squared deviations: within each batch plus between batch means and the pooled mean.
    m2 = ((counts[:, None] - 1) * variances + counts[:, None] * (means - mean) ** 2).sum(0)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(m2 / (total - 1))
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.fill_(len(batches))
