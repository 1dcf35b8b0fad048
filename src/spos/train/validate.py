"""Per-epoch validation: a subnet's plain accuracy, or a supernet's BN-recalibrated accuracy on
three paths of the current sampling window (largest, smallest and a middle one)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data
from ..cost.table import cost_table
from ..genes import largest, sample, smallest
from ..nn.bn import recalibrate_bn
from ..runtime import seed_of
from ..sampling.schedule import allowed_channel_genes
from ..space import Arch, SearchSpace
from .config import TrainConfig
from .evaluate import evaluate

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class ValidationData:
    """Fixed for the whole run: the BN recalibration images (supernet only) and a factory of
    validation batches (None when ``val_size`` is 0)."""

    recal: torch.Tensor | None
    batches: Batches | None


def validation_data(cfg: TrainConfig, val_ds: Dataset, recal_ds: Dataset | None,
                    train_idx: Sequence[int]) -> ValidationData:  # fmt: skip
    """``cfg.val_size`` seeded validation images and, given ``recal_ds`` (the training split
    without augmentation), ``cfg.recal_images`` seeded images of the supernet's training part."""
    n_val = len(val_ds) if cfg.val_size is None else min(cfg.val_size, len(val_ds))
    val_idx = list(range(len(val_ds)))
    if n_val < len(val_ds):
        g = torch.Generator().manual_seed(cfg.seed)
        val_idx = sorted(torch.randperm(len(val_ds), generator=g)[:n_val].tolist())
    recal = None
    if recal_ds is not None:
        # Never the holdout: only images the supernet trains on.
        g = torch.Generator().manual_seed(seed_of(cfg.seed, 7))
        pick = torch.randperm(len(train_idx), generator=g)[: cfg.recal_images].tolist()
        recal = data.to_tensors(recal_ds, [train_idx[i] for i in sorted(pick)],
                                cfg.eval_batch_size, cfg.workers)[0]  # fmt: skip
    if not n_val:
        return ValidationData(recal, None)
    bs = cfg.eval_batch_size
    if isinstance(val_ds, data.TensorImages):
        x, y = data.to_tensors(val_ds, val_idx, bs)

        def batches():
            return ((x[i : i + bs], y[i : i + bs]) for i in range(0, len(y), bs))
    else:

        def batches():
            return data.iter_batches(val_ds, val_idx, bs, cfg.workers)

    return ValidationData(recal, batches)


def validation_paths(space: SearchSpace, cfg: TrainConfig, epoch: int, window=None, latency=None) -> dict[str, Arch]:
    """Largest, smallest and a middle path of ``epoch``'s sampling window (channel warm-up and
    the MACs/params/latency ``window``, a :class:`spos.cost.bounds.Bounds`); fixed per epoch."""
    genes = allowed_channel_genes(space, epoch, cfg.warmup_start_epoch, cfg.min_channel_gene)
    sub = space.replace(channel_genes=genes)
    rng = random.Random(seed_of(cfg.seed, 11))
    pool = [sample(sub, rng) for _ in range(64)]
    if window is None or window.is_open:
        mid = Arch(pool[0].blocks, (genes[len(genes) // 2],) * space.num_blocks, space.stage_depths)
        return {"largest": largest(sub), "smallest": smallest(sub), "middle": mid}
    costs = cost_table(space)
    use_latency = latency is not None and window.needs_latency
    inside = sorted((costs(a).macs, i, a) for i, a in enumerate(pool)
                    if window.contains(costs(a), latency.predict(a) if use_latency else None))  # fmt: skip
    if not inside:
        inside = sorted((costs(a).macs, i, a) for i, a in enumerate(pool))
    return {"largest": inside[-1][2], "smallest": inside[0][2], "middle": inside[len(inside) // 2][2]}


def validate(
    model: nn.Module,
    val: ValidationData,
    paths: dict[str, Arch] | None,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
    recal_batch_size: int = 256,
) -> dict:
    """``{"val": metrics}`` for a subnet (``paths`` None), ``{"val": {name: {arch, metrics}}}``
    for a supernet's ``paths``, each BN-recalibrated on ``val.recal``; ``{}`` without data."""
    if val.batches is None:
        return {}
    kw = {"device": device, "autocast": autocast, "channels_last": channels_last}
    if paths is None:
        return {"val": evaluate(model, val.batches(), **kw)}
    results = {}
    for name, arch in paths.items():
        net = model.subnet(arch)  # a copy: recalibration leaves the supernet's BNs alone

        def forward(x, net=net):
            x = x.to(device, non_blocking=True)
            return net(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

        with autocast():
            recalibrate_bn(net, val.recal, recal_batch_size, forward=forward)
        results[name] = {"arch": str(arch), **evaluate(net, val.batches(), **kw)}
    return {"val": results}
