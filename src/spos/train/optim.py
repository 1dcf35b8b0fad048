"""The optimisation recipe of SPEC §4: lr warm-up + cosine/constant schedule, no weight decay on
BN and biases, and no update for choice blocks off the trained path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ..nn.supernet import SuperNet
from ..space import Arch


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier on the base lr at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup`` steps, then per-step cosine to 0 at ``total`` steps, or constant."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only: never on BN parameters or biases (1-D tensors)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def clear_unchosen_grads(net: SuperNet, archs: Arch | Sequence[Arch]) -> None:
    """Set the grads of every block off the trained paths (one arch or several) to None, so SGD
    gives those parameters no momentum or weight-decay update this step (as the official
    release does)."""
    archs = [archs] if isinstance(archs, Arch) else list(archs)
    for position, choices in enumerate(net.features):
        chosen = {a.blocks[position] for a in archs}
        for b, block in enumerate(choices):
            if b not in chosen:
                for p in block.parameters():
                    p.grad = None
