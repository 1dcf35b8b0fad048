"""Top-1 accuracy and mean cross-entropy of a model over batches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import SposError


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast=contextlib.nullcontext,
    channels_last: bool = False,
) -> dict:
    """Top-1 accuracy (fraction) and mean cross-entropy of ``model`` in eval mode over ``batches``."""
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = model(x).float()
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    if n == 0:
        raise SposError("no validation images were readable")
    return {"acc": correct / n, "loss": loss / n, "images": n}
