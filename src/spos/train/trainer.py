"""One trainer for the supernet and for subnets (SPEC §4).

``Trainer(TrainConfig(...)).run()`` trains a supernet (``arch`` None: one sampled path per step)
or a subnet from scratch (``arch`` an arch string or zoo name), on one device or under
``torchrun`` with DistributedDataParallel. Everything that changes the weights' trajectory is in
:class:`TrainConfig`; the run folder gets ``config.yaml``/``run.json``, ``metrics.jsonl`` (one
line per epoch), ``checkpoint.pt`` (exact resume) and, at the end, ``final.pt``.

Exact resume: an epoch's data order is a permutation seeded by (seed, epoch), so a resumed run
skips the batches it already consumed; built-in data draws its flips from a generator seeded by
(seed, step); the sampler, optimizer, scheduler and every RNG state are in the checkpoint.

Data parallelism: ``batch_size`` is the global batch. Each step's global batch is cut into
``world_size * accum_steps`` contiguous micro-batches; rank r takes micro-batches
``r * accum_steps ...``. A single process with ``accum_steps = N`` therefore sees exactly the
micro-batches N ranks see (BN statistics are per micro-batch in both), which is what makes a
DDP run reproducible by one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .. import data
from ..cost.table import cost_table
from ..errors import SposError
from ..genes import largest, sample, smallest
from ..nn.bn import recalibrate_bn
from ..nn.io import model_payload
from ..nn.supernet import SubNet, SuperNet
from ..runs import atomic_write_text, load_checkpoint, save_checkpoint, write_run_info
from ..runtime import (
    global_rng_state,
    init_distributed,
    resolve_device,
    seed_of,
    set_global_rng_state,
)
from ..space import Arch
from .config import RESUME_NEUTRAL, TrainConfig, build_space, upgrade_keys
from .evaluate import evaluate
from .optim import clear_unchosen_grads, lr_factor, param_groups


class Trainer:
    """Trains what ``config`` describes; call :meth:`run`. Rank and world size come from the
    ``torchrun`` environment (RANK, WORLD_SIZE, LOCAL_RANK) when present."""

    def __init__(self, config: TrainConfig, command: str = "", resume: bool = False) -> None:
        config.check()
        self.cfg, self.command, self.resume = config, command, resume
        self.space, self.arch = build_space(config)
        self.supernet = self.arch is None
        self.out = Path(config.out)
        self._init_distributed()
        cfg = config
        micro = self.world * cfg.accum_steps
        if cfg.batch_size % micro:
            raise SposError(
                f"batch_size {cfg.batch_size} must be divisible by world size x accum_steps = {micro}"
            )
        self.micro_batch = cfg.batch_size // micro

        torch.manual_seed(seed_of(cfg.seed, self.rank))
        random.seed(seed_of(cfg.seed, self.rank, 1))
        np.random.seed(seed_of(cfg.seed, self.rank, 2) % 2**32)

        self._init_data()
        self._init_model()
        self.step = 0
        self.epoch_stats = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, images, skipped
        self.history: list[dict] = []
        self._val_cache: dict[str, Any] = {}

    # ---- set-up helpers --------------------------------------------------------------------
    def _init_data(self) -> None:
        """Datasets, the holdout split and the step counts."""
        cfg = self.cfg
        # The supernet never trains on the holdout split (the search scores paths on it).
        self.train_ds = data.dataset(cfg.data, "train", True, self.space.input_size, cfg.on_error)
        self.recal_ds = data.dataset(cfg.data, "train", False, self.space.input_size, cfg.on_error)
        self.val_ds = data.dataset(cfg.data, "val", False, self.space.input_size, cfg.on_error)
        n = len(self.train_ds)
        holdout = 0
        if self.supernet:
            holdout = round(cfg.holdout * n) if cfg.holdout < 1 else int(cfg.holdout)
        self.train_idx, self.holdout_idx = data.holdout_split(n, holdout, cfg.seed)
        self.steps_per_epoch = len(self.train_idx) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise SposError(
                f"{len(self.train_idx)} training images make no full batch of {cfg.batch_size}; "
                f"lower batch_size"
            )
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.stop_step = min(self.total_steps, cfg.max_steps or self.total_steps)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_epochs * self.steps_per_epoch
        self.warmup_steps = round(warmup)

    def _init_model(self) -> None:
        """Model, optimizer, lr schedule, path sampler and the DDP wrapper."""
        cfg = self.cfg
        self.model = SuperNet(self.space) if self.supernet else SubNet(self.space, self.arch)
        self.model.to(self.device)
        # NHWC on CPU too: sliced supernet steps run 1.36x (224x224) to 1.56x (28x28 preset) faster.
        self.channels_last = cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.optimizer = torch.optim.SGD(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                         momentum=cfg.momentum, nesterov=cfg.nesterov)  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.warmup_steps, self.total_steps, cfg.schedule)
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.sampler = None
        if self.supernet:
            from ..sampling.samplers import build_sampler

            self.sampler = build_sampler(
                self.space, kind=cfg.sampler, seed=cfg.seed, window=self._window(),
                warmup_start_epoch=cfg.warmup_start_epoch, min_channel_gene=cfg.min_channel_gene,
                latency=self._latency(),
            )  # fmt: skip
        self.ddp = None
        if self.world > 1:
            # Unchosen choice blocks get no gradient; every rank trains the same path.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids,
                                                           find_unused_parameters=self.supernet)  # fmt: skip

    def _init_distributed(self) -> None:
        """This rank's device and the torchrun process group (spos.runtime does both)."""
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(self.cfg.device)
        init_distributed(self.device)

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or self.cfg.amp == "none":
            return None
        if self.cfg.amp == "fp16":
            return torch.float16
        if self.cfg.amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _latency(self):
        if self.cfg.latency_table is None:
            return None
        from ..cost.latency import LatencyTable

        return LatencyTable.load(self.cfg.latency_table)

    def _window(self):
        if self.cfg.window is None:
            return None
        from ..cost.bounds import Bounds

        return Bounds.from_dict(self.cfg.window)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- data ------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int, first: int) -> Iterator[list[tuple[torch.Tensor, torch.Tensor, int]]]:
        """This rank's micro-batches for each step of ``epoch`` from batch ``first`` on."""
        cfg = self.cfg
        perm = torch.randperm(len(self.train_idx), generator=torch.Generator().manual_seed(seed_of(cfg.seed, epoch)))
        idx = torch.as_tensor(self.train_idx)[perm]
        per_rank = self.micro_batch * cfg.accum_steps

        def rank_slice(b: int) -> list[list[int]]:
            start = b * cfg.batch_size + self.rank * per_rank
            chunk = idx[start : start + per_rank].tolist()
            return [chunk[m * self.micro_batch : (m + 1) * self.micro_batch] for m in range(cfg.accum_steps)]

        if isinstance(self.train_ds, data.TensorImages):
            for b in range(first, self.steps_per_epoch):
                step = epoch * self.steps_per_epoch + b
                out = []
                for m, ids in enumerate(rank_slice(b)):
                    # Seeded by the micro-batch's place in the global batch, not by (rank, m):
                    # N ranks and one process accumulating N micro-batches flip the same images.
                    g = torch.Generator().manual_seed(seed_of(cfg.seed, step, self.rank * cfg.accum_steps + m))
                    out.append((*self.train_ds.batch(ids, g), 0))
                yield out
            return
        micro_lists = [ids for b in range(first, self.steps_per_epoch) for ids in rank_slice(b)]
        g = torch.Generator().manual_seed(seed_of(cfg.seed, epoch, first, self.rank))
        loader = DataLoader(self.train_ds, batch_sampler=micro_lists, num_workers=cfg.workers,
                            collate_fn=data.collate_skipping, generator=g,
                            pin_memory=self.device.type == "cuda")  # fmt: skip
        it = iter(loader)
        for _ in range(first, self.steps_per_epoch):
            yield [next(it) for _ in range(cfg.accum_steps)]

    def _val_data(self):
        """(BN recalibration images, validation batches factory), both fixed for the whole run."""
        if "val" not in self._val_cache:
            cfg = self.cfg
            n_val = len(self.val_ds) if cfg.val_size is None else min(cfg.val_size, len(self.val_ds))
            val_idx = list(range(len(self.val_ds)))
            if n_val < len(self.val_ds):
                val_idx = sorted(torch.randperm(len(self.val_ds), generator=torch.Generator().manual_seed(cfg.seed))[:n_val].tolist())
            recal = None
            if self.supernet:
                # A fixed seeded subset of the supernet's training images, without augmentation.
                g = torch.Generator().manual_seed(seed_of(cfg.seed, 7))
                pick = torch.randperm(len(self.train_idx), generator=g)[: cfg.recal_images].tolist()
                recal = data.to_tensors(self.recal_ds, [self.train_idx[i] for i in sorted(pick)],
                                        cfg.eval_batch_size, cfg.workers)[0]  # fmt: skip
            if isinstance(self.val_ds, data.TensorImages) and n_val:
                x, y = data.to_tensors(self.val_ds, val_idx, cfg.eval_batch_size)
                bs = cfg.eval_batch_size

                def batches(x=x, y=y, bs=bs):
                    return ((x[i : i + bs], y[i : i + bs]) for i in range(0, len(y), bs))
            else:

                def batches():
                    return data.iter_batches(self.val_ds, val_idx, cfg.eval_batch_size, cfg.workers)

            self._val_cache["val"] = (recal, batches if n_val else None)
        return self._val_cache["val"]

    # ---- validation ------------------------------------------------------------------------
    def validation_paths(self, epoch: int) -> dict[str, Arch]:
        """Largest, smallest and a middle path of the current sampling window (channel warm-up
        and MACs/params window); fixed for a given epoch."""
        from ..sampling.schedule import allowed_channel_genes
        space, cfg = self.space, self.cfg
        genes = allowed_channel_genes(space, epoch, cfg.warmup_start_epoch, cfg.min_channel_gene)
        sub = space.replace(channel_genes=genes)
        rng = random.Random(seed_of(cfg.seed, 11))
        pool = [sample(sub, rng) for _ in range(64)]
        window = self._window()
        if window is None or window.is_open:
            mid = Arch(pool[0].blocks, (genes[len(genes) // 2],) * space.num_blocks, space.stage_depths)
            return {"largest": largest(sub), "smallest": smallest(sub), "middle": mid}
        costs = cost_table(space)
        latency = self.sampler.latency if self.sampler is not None else None
        ms = (lambda a: latency.predict(a)) if latency is not None and window.needs_latency else (lambda a: None)
        inside = sorted((costs(a).macs, i, a) for i, a in enumerate(pool) if window.contains(costs(a), ms(a)))
        if not inside:
            inside = sorted((costs(a).macs, i, a) for i, a in enumerate(pool))
        return {"largest": inside[-1][2], "smallest": inside[0][2], "middle": inside[len(inside) // 2][2]}

    def validate(self, epoch: int) -> dict:
        """Supernet: BN-recalibrated accuracy of the validation paths; subnet: plain accuracy."""
        recal, batches = self._val_data()
        if batches is None:
            return {}
        kw = {"device": self.device, "autocast": self._autocast, "channels_last": self.channels_last}
        if not self.supernet:
            return {"val": evaluate(self.model, batches(), **kw)}
        results = {}
        for name, arch in self.validation_paths(epoch).items():
            net = self.model.subnet(arch)  # a copy: recalibration leaves the supernet's BNs alone

            def forward(x, net=net):
                x = x.to(self.device, non_blocking=True)
                return net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)

            with self._autocast():
                recalibrate_bn(net, recal, self.cfg.eval_batch_size, forward=forward)
            results[name] = {"arch": str(arch), **evaluate(net, batches(), **kw)}
        return {"val": results}

    # ---- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = global_rng_state()
        if self.world > 1:
            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, rng)
            rng_all = gathered
        else:
            rng_all = [rng]
        return {
            "kind": "supernet-train" if self.supernet else "subnet-train",
            "space": self.space.to_dict(),
            "arch": None if self.arch is None else str(self.arch),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": None if self.sampler is None else self.sampler.state_dict(),
            "rng": rng_all,
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "epoch_stats": self.epoch_stats.clone(),
            "history": json.dumps(self.history),
            "config": self.cfg.to_dict(),
            "world_size": self.world,
        }

    def save(self) -> None:
        state = self.state_dict()  # collective under DDP: every rank must call it
        if self.is_main:
            save_checkpoint(state, self.out / "checkpoint.pt")

    def load(self, path: Path) -> None:
        """Restore everything from ``path``; refuse checkpoints of another space or config."""
        ckpt = load_checkpoint(path, map_location=self.device)
        want = "supernet-train" if self.supernet else "subnet-train"
        if ckpt.get("kind") != want:
            raise SposError(f"{path} is a {ckpt.get('kind')!r} checkpoint, not {want!r}; use another --out")
        if ckpt.get("space") != self.space.to_dict():
            diff = sorted(k for k, v in self.space.to_dict().items() if ckpt.get("space", {}).get(k) != v)
            raise SposError(
                f"{path} was trained with another search space (differs in {diff}); resume with "
                f"the same config or start a new run in another --out"
            )
        old = upgrade_keys(ckpt.get("config", {}), str(path))
        mine = self.cfg.to_dict()
        diff = [k for k in mine if k not in RESUME_NEUTRAL and old.get(k) != mine[k]]
        if ckpt.get("arch") != (None if self.arch is None else str(self.arch)):
            diff.append("arch")
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {mine.get(k)!r}" for k in diff[:4])
            raise SposError(
                f"{path} was written with another config ({shown}); resume with the same config "
                f"or start a new run in another --out"
            )
        if ckpt.get("world_size") != self.world:
            raise SposError(
                f"{path} was written by {ckpt.get('world_size')} processes, this run has "
                f"{self.world}; resume with the same number of processes"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.sampler is not None:
            self.sampler.load_state_dict(ckpt["sampler"])
        set_global_rng_state(ckpt["rng"][self.rank])
        self.step = int(ckpt["step"])
        self.epoch_stats = ckpt["epoch_stats"].cpu().double()
        self.history = json.loads(ckpt["history"])

    # ---- the loop --------------------------------------------------------------------------
    def train_step(self, micro_batches: list, epoch: int) -> Arch | None:
        """One optimizer step on this rank's micro-batches; returns the trained path."""
        arch = self.sampler.sample(epoch) if self.sampler is not None else None
        model = self.ddp or self.model
        self.optimizer.zero_grad(set_to_none=True)
        n_micro = len(micro_batches)
        for m, (x, y, skipped) in enumerate(micro_batches):
            self.epoch_stats[3] += skipped
            if len(y) == 0:
                raise SposError("every image of a batch was unreadable; check the data folder")
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = self.ddp is None or m == n_micro - 1
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self._autocast():
                out = model(x, arch) if arch is not None else model(x)
                loss = self.criterion(out.float(), y)
            self.scaler.scale(loss / n_micro).backward()
            with torch.no_grad():
                self.epoch_stats[0] += float(loss) * len(y)
                self.epoch_stats[1] += int((out.argmax(1) == y).sum())
                self.epoch_stats[2] += len(y)
        if arch is not None:
            clear_unchosen_grads(self.model, arch)
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return arch

    def _end_epoch(self, epoch: int, seconds: float) -> None:
        stats = self.epoch_stats.clone()
        if self.world > 1:
            dist.all_reduce(stats)
        record = {
            "epoch": epoch,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(stats[0] / max(stats[2], 1)),
            "train_acc": float(stats[1] / max(stats[2], 1)),
            "train_images": int(stats[2]),
            "skipped_images": int(stats[3]),
            "seconds": round(seconds, 2),
        }
        if self.is_main:
            record.update(self.validate(epoch))
            self.history.append(record)
            lines = "".join(json.dumps(r) + "\n" for r in self.history)
            atomic_write_text(self.out / "metrics.jsonl", lines)
            print(_summary(record), flush=True)
        if self.world > 1:
            dist.barrier()
        self.epoch_stats.zero_()

    def run(self) -> dict:
        """Train to the end (or ``max_steps``); returns the last epoch's metrics record."""
        cfg = self.cfg
        ckpt_path = self.out / "checkpoint.pt"
        if self.resume:
            if not ckpt_path.is_file():
                raise SposError(f"nothing to resume: {ckpt_path} does not exist; drop --resume")
            self.load(ckpt_path)
        elif ckpt_path.is_file():
            raise SposError(f"{self.out} already holds a run; pass --resume to continue it or use another --out")
        if self.is_main:
            write_run_info(self.out, {**cfg.to_dict(), "resolved_space": self.space.to_dict(),
                                      "resolved_arch": None if self.arch is None else str(self.arch),
                                      "world_size": self.world}, self.command)  # fmt: skip
        self.model.train()
        spe = self.steps_per_epoch
        while self.step < self.stop_step:
            epoch, first = divmod(self.step, spe)
            bar = self._progress(epoch, first)
            t0, seen = time.perf_counter(), 0
            for micro_batches in self._epoch_batches(epoch, first):
                self.train_step(micro_batches, epoch)
                seen += sum(len(mb[1]) for mb in micro_batches) * self.world
                if bar is not None:
                    bar.update(1)
                    if self.step % 10 == 0 or self.step == self.stop_step:
                        s = self.epoch_stats
                        bar.set_postfix(loss=f"{float(s[0] / max(s[2], 1)):.3f}",
                                        acc=f"{float(s[1] / max(s[2], 1)):.3f}",
                                        img_s=f"{seen / (time.perf_counter() - t0):.0f}")  # fmt: skip
                if self.step % spe == 0 or self.step == self.stop_step:
                    self._end_epoch(epoch, time.perf_counter() - t0)
                    self.save()
                elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
                if self.step >= self.stop_step:
                    break
            if bar is not None:
                bar.close()
        if self.is_main:
            kind = "supernet" if self.supernet else "subnet"
            payload = model_payload(self.model, self.space, self.arch, kind, cfg.to_dict())
            save_checkpoint(payload, self.out / "final.pt")
        if self.world > 1:
            dist.barrier()
        return self.history[-1] if self.history else {}

    def _progress(self, epoch: int, first: int):
        if not (self.cfg.progress and self.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {epoch}",
                    dynamic_ncols=True, leave=False)  # fmt: skip


def _summary(r: dict) -> str:
    text = (f"epoch {r['epoch']} step {r['step']}: loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:.4f} lr {r['lr']:.4g}")  # fmt: skip
    val = r.get("val")
    if isinstance(val, dict) and "acc" in val:
        text += f" | val acc {val['acc']:.4f}"
    elif isinstance(val, dict):
        text += " | recalibrated val acc " + " ".join(f"{k} {v['acc']:.4f}" for k, v in val.items())
    if r.get("skipped_images"):
        text += f" | skipped {r['skipped_images']} unreadable images"
    return text


def train(config: TrainConfig, command: str = "", resume: bool = False) -> dict:
    """Run a training to the end and tear down the process group; returns the last metrics."""
    trainer = Trainer(config, command, resume)
    try:
        return trainer.run()
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
