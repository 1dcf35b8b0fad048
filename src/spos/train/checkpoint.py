"""A training run's ``checkpoint.pt``: everything exact resume needs, and the checks that refuse
a checkpoint of another run (space, arch, config or number of processes).

Exact resume: the model, optimizer, scheduler, grad scaler, path sampler, every rank's RNG
states, the step, the epoch's running statistics and the metrics history are all saved. The
data order needs no state: it is seeded by (seed, epoch) (:mod:`spos.train.batches`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as dist

from ..errors import SposError
from ..runs import load_checkpoint
from ..runtime import global_rng_state, set_global_rng_state
from .config import RESUME_NEUTRAL, upgrade_keys

if TYPE_CHECKING:
    from .trainer import Trainer


def run_kind(supernet: bool) -> str:
    return "supernet-train" if supernet else "subnet-train"


def trainer_state(t: Trainer) -> dict:
    """Everything :func:`restore` needs. Collective under DDP: every rank must call it."""
    rng = global_rng_state()
    if t.world > 1:
        rng_all: list = [None] * t.world
        dist.all_gather_object(rng_all, rng)
    else:
        rng_all = [rng]
    return {
        "kind": run_kind(t.supernet),
        "space": t.space.to_dict(),
        "arch": None if t.arch is None else str(t.arch),
        "model": t.model.state_dict(),
        "ema": None if t.ema is None else t.ema.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict(),
        "sampler": None if t.sampler is None else t.sampler.state_dict(),
        "rng": rng_all,
        "step": t.step,
        "epoch": t.step // t.steps_per_epoch,
        "epoch_stats": t.epoch_stats.clone(),
        "bad_steps": t.bad_steps,
        "data": t.data_fingerprint(),
        "history": json.dumps(t.history),
        "config": t.cfg.to_dict(),
        "world_size": t.world,
    }


def config_changes(old: dict, mine: dict) -> list[str]:
    """Keys of ``mine`` whose value differs in ``old`` (a checkpoint's config), ignoring the
    :data:`RESUME_NEUTRAL` ones; ``old``'s renamed keys count under their new name."""
    from dataclasses import fields

    from .config import TrainConfig

    old = upgrade_keys(old, warn=False)  # the user cannot edit a checkpoint: no note
    # A key added after the checkpoint was written counts as its default there.
    default = {f.name: f.default for f in fields(TrainConfig)}
    return [k for k in mine if k not in RESUME_NEUTRAL and old.get(k, default.get(k)) != mine[k]]


def check_resumable(ckpt: dict, path: Path, t: Trainer) -> None:
    """Raise :class:`SposError` unless ``ckpt`` was written by this very run's settings."""
    want = run_kind(t.supernet)
    if ckpt.get("kind") != want:
        raise SposError(f"{path} is a {ckpt.get('kind')!r} checkpoint, not {want!r}; use another --out")
    space = t.space.to_dict()
    if ckpt.get("space") != space:
        diff = sorted(k for k, v in space.items() if ckpt.get("space", {}).get(k) != v)
        raise SposError(
            f"{path} was trained with another search space (differs in {diff}); resume with "
            f"the same config or start a new run in another --out"
        )
    old, mine = upgrade_keys(ckpt.get("config", {}), warn=False), t.cfg.to_dict()
    diff = config_changes(old, mine)
    if ckpt.get("arch") != (None if t.arch is None else str(t.arch)):
        diff.append("arch")
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {mine.get(k)!r}" for k in diff[:4])
        raise SposError(
            f"{path} was written with another config ({shown}); resume with the same config "
            f"or start a new run in another --out"
        )
    data, mine_data = ckpt.get("data"), t.data_fingerprint()
    if data is not None and data != mine_data:
        diff = ", ".join(f"{k}: {data.get(k)!r} -> {mine_data.get(k)!r}" for k in mine_data
                         if data.get(k) != mine_data.get(k) and k != "classes")  # fmt: skip
        if data.get("classes") != mine_data.get("classes"):
            diff = (diff + ", " if diff else "") + "the class list"
        raise SposError(
            f"{path} was trained on other data ({diff}), so the epoch order would differ; resume "
            f"with the same dataset or start a new run in another --out"
        )
    if ckpt.get("world_size") != t.world:
        raise SposError(
            f"{path} was written by {ckpt.get('world_size')} processes, this run has "
            f"{t.world}; resume with the same number of processes"
        )


def restore(t: Trainer, path: Path) -> None:
    """Load ``path`` into ``t`` after :func:`check_resumable`; this rank gets its own RNG states."""
    ckpt = load_checkpoint(path, map_location=t.device)
    check_resumable(ckpt, path, t)
    t.model.load_state_dict(ckpt["model"])
    if t.ema is not None:
        t.ema.load_state_dict(ckpt["ema"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    t.scaler.load_state_dict(ckpt["scaler"])
    if t.sampler is not None:
        t.sampler.load_state_dict(ckpt["sampler"])
    set_global_rng_state(ckpt["rng"][t.rank])
    t.step = int(ckpt["step"])
    t.epoch_stats = ckpt["epoch_stats"].cpu().double()
    t.bad_steps = int(ckpt.get("bad_steps", 0))
    t.history = json.loads(ckpt["history"])
