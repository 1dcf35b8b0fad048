"""One trainer for the supernet and for subnets (SPEC §4).

``Trainer(TrainConfig(...)).run()`` trains a supernet (``arch`` None: one sampled path per step)
or a subnet from scratch (``arch`` an arch string or zoo name), on one device or under
``torchrun`` with DistributedDataParallel. Everything that changes the weights' trajectory is in
:class:`TrainConfig`; the run folder gets ``config.yaml``/``run.json``, ``metrics.jsonl`` (one
line per epoch), ``checkpoint.pt`` (exact resume) and, at the end, ``final.pt``.

This module is the loop; its pieces live beside it: the data order and micro-batch sharding in
:mod:`.batches`, per-epoch validation in :mod:`.validate`, the checkpoint and its resume checks
in :mod:`.checkpoint`, the optimizer's parameter groups and lr schedule in :mod:`.optim`.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from .. import data, genes, tblog
from ..errors import Preempted, SposError
from ..nn.io import model_payload
from ..nn.supernet import SubNet, SuperNet
from ..runs import RunLock, atomic_write_text, check_writable, save_checkpoint, write_run_info
from ..runtime import StopSignals, agree, end_distributed, seed_of, start_process
from ..sampling.schedule import full_range_epoch
from ..space import SCALES, Arch
from .batches import MicroBatch, Sharding, epoch_batches
from .checkpoint import restore, trainer_state
from .config import TrainConfig, build_space
from .layout import choose_layout, time_layouts
from .optim import clear_unchosen_grads, lr_factor, param_groups
from .validate import ValidationData, validate, validation_data, validation_paths


class Trainer:
    """Trains what ``config`` describes; call :meth:`run`. Rank and world size come from the
    ``torchrun`` environment (RANK, WORLD_SIZE, LOCAL_RANK) when present."""

    def __init__(self, config: TrainConfig, command: str = "", resume: bool = False) -> None:
        config.check()
        self.cfg, self.command, self.resume = config, command, resume
        self.space, self.arch = build_space(config)
        self.supernet = self.arch is None
        self.out = Path(config.out)
        self.device, self.rank, self.world = start_process(config.device)
        self.shard = Sharding(config.batch_size, config.accum_steps, self.rank, self.world)
        self.micro_batch = self.shard.micro_batch

        torch.manual_seed(seed_of(config.seed, self.rank))
        random.seed(seed_of(config.seed, self.rank, 1))
        np.random.seed(seed_of(config.seed, self.rank, 2) % 2**32)

        self.window = self._window()
        self._init_data()
        self._init_model()
        self.step = 0
        self.epoch_stats = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, images, skipped
        self.history: list[dict] = []
        self._val: ValidationData | None = None
        self._ends: tuple[int, list[Arch]] | None = None  # sandwich: (epoch, [largest, smallest])
        self.bad_steps = 0  # steps skipped for a non-finite loss or gradient (on_divergence: skip)
        self._last_save = time.monotonic()
        self._signals = StopSignals()

    # ---- set-up helpers --------------------------------------------------------------------
    def _init_data(self) -> None:
        """Datasets, the holdout split and the step counts."""
        cfg = self.cfg
        # The supernet never trains on the holdout split (the search scores paths on it).
        self.train_ds = data.dataset(cfg.data, "train", True, self.space.input_size, cfg.on_error, cfg.decoder)
        self.recal_ds = data.dataset(cfg.data, "train", False, self.space.input_size, cfg.on_error, cfg.decoder)
        self.val_ds = data.dataset(cfg.data, "val", False, self.space.input_size, cfg.on_error, cfg.decoder)
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
        self.amp_dtype = self._amp_dtype()
        self.layout_rates: dict[str, float] | None = None
        self.channels_last = self._layout()
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema = None
        if cfg.ema is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
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
                self.space, kind=cfg.sampler, seed=cfg.seed, window=self.window,
                warmup_start_epoch=cfg.warmup_start_epoch, min_channel_gene=cfg.min_channel_gene,
                latency=self._latency(),
            )  # fmt: skip
        self.ddp = None
        if self.world > 1 and self.supernet and (cfg.sandwich or cfg.sampler == "fair"):
            # Several paths a step: no DDP wrapper (its reducer hooks would fire per path); the
            # step all-reduces the summed gradients itself. Start from rank 0's weights, as DDP would.
            with torch.no_grad():
                for t in [*self.model.parameters(), *self.model.buffers()]:
                    dist.broadcast(t, src=0)
        elif self.world > 1:
            # Unchosen choice blocks get no gradient; every rank trains the same path.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids,
                                                           find_unused_parameters=self.supernet)  # fmt: skip

    def _layout(self) -> bool:
        """``channels_last`` as configured, or (``auto``) the faster layout on this host: the
        choice of the run's first start when resuming (run.json), else timed now; every rank
        takes rank 0's choice."""
        cfg = self.cfg
        if cfg.channels_last != "auto":
            return bool(cfg.channels_last)
        if self.resume and (self.out / "checkpoint.pt").is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                chosen = json.loads((self.out / "run.json").read_text()).get("layout", {}).get("channels_last")
                if isinstance(chosen, bool):
                    return chosen
        rng = random.Random(seed_of(cfg.seed, 0, 3))
        paths = [genes.sample(self.space, rng) for _ in range(3)] if self.supernet else [None]
        shape = (self.micro_batch, self.space.input_channels, self.space.input_size, self.space.input_size)
        self.layout_rates = time_layouts(self.model, shape, self.device, paths, self._autocast)
        choice = torch.tensor([choose_layout(self.layout_rates)], device=self.device)
        if self.world > 1:
            dist.broadcast(choice, src=0)
        if self.rank == 0:
            r = self.layout_rates
            print(f"spos: layout: channels_last {r['channels_last']:.0f} img/s, NCHW {r['contiguous']:.0f} img/s on "
                  f"this host -> {'channels_last' if choice.item() else 'NCHW'}", file=sys.stderr, flush=True)  # fmt: skip
        return bool(choice.item())

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

    # ---- the pieces that live in their own modules ----------------------------------------
    def _epoch_batches(self, epoch: int, first: int) -> Iterator[list[MicroBatch]]:
        """This rank's micro-batches for each step of ``epoch`` from step ``first`` on."""
        return epoch_batches(self.train_ds, self.train_idx, self.shard, seed=self.cfg.seed, epoch=epoch,
                             first=first, steps_per_epoch=self.steps_per_epoch, workers=self.cfg.workers,
                             pin_memory=self.device.type == "cuda")  # fmt: skip

    def validation_paths(self, epoch: int) -> dict[str, Arch]:
        """Largest, smallest and a middle path of ``epoch``'s sampling window."""
        latency = self.sampler.latency if self.sampler is not None else None
        return validation_paths(self.space, self.cfg, epoch, self.window, latency)

    def validate(self, epoch: int) -> dict:
        """Supernet: BN-recalibrated accuracy of the validation paths; subnet: plain accuracy."""
        if self._val is None:  # built on first use, then fixed for the whole run
            self._val = validation_data(self.cfg, self.val_ds, self.recal_ds if self.supernet else None,
                                        self.train_idx)  # fmt: skip
        paths = self.validation_paths(epoch) if self.supernet else None
        return validate(self.model, self._val, paths, self.device, self._autocast, self.channels_last,
                        self.cfg.eval_batch_size)  # fmt: skip

    def state_dict(self) -> dict:
        """The checkpoint's contents (:mod:`spos.train.checkpoint`); collective under DDP."""
        return trainer_state(self)

    def save(self) -> None:
        state = self.state_dict()  # collective under DDP: every rank must call it
        if self.is_main:
            save_checkpoint(state, self.out / "checkpoint.pt")
        self._last_save = time.monotonic()

    def _final_model(self) -> nn.Module:
        """What final.pt holds: the model, or (``ema``) its averaged weights with the model's
        own BN statistics (the averaged copy's buffers are those of the first step)."""
        if self.ema is None:
            return self.model
        with torch.no_grad():
            for mine, trained in zip(self.ema.module.buffers(), self.model.buffers()):
                mine.copy_(trained)
        return self.ema.module

    def load(self, path: Path) -> None:
        """Restore everything from ``path``; refuse checkpoints of another space or config."""
        restore(self, path)

    # ---- the loop --------------------------------------------------------------------------
    def step_paths(self, epoch: int) -> list[Arch] | None:
        """The paths one step of ``epoch`` trains (None: a subnet). One for SPOS; four for the
        fair sampler; with ``sandwich`` the largest and smallest path first (``sandwich_ends``:
        the window's, or the widest and narrowest channels on sampled block types), then two
        sampled ones (the largest is the teacher under ``distill``)."""
        if self.sampler is None:
            return None
        if not self.cfg.sandwich:
            return self.sampler.sample_step(epoch)
        if self.cfg.sandwich_ends == "widths":
            genes, n = self.sampler.allowed(epoch), self.space.num_blocks  # ascending
            wide, narrow = self.sampler.sample(epoch), self.sampler.sample(epoch)
            return [Arch(wide.blocks, (genes[-1],) * n, wide.stage_depths),
                    Arch(narrow.blocks, (genes[0],) * n, narrow.stage_depths),
                    *self.sampler.sample_step(epoch), *self.sampler.sample_step(epoch)]  # fmt: skip
        if self._ends is None or self._ends[0] != epoch:  # fixed per epoch, like validation's
            paths = self.validation_paths(epoch)
            self._ends = (epoch, [paths["largest"], paths["smallest"]])
        return [*self._ends[1], *self.sampler.sample_step(epoch), *self.sampler.sample_step(epoch)]

    def train_step(self, micro_batches: list, epoch: int) -> list[Arch] | None:
        """One optimizer step on this rank's micro-batches over every path of
        :meth:`step_paths` (gradients summed over paths, averaged over micro-batches and ranks);
        returns the trained paths. Logged loss and accuracy are the first path's."""
        paths = self.step_paths(epoch)
        # Several paths: plain forwards, then one all-reduce of the summed gradients (no DDP).
        several = paths is not None and len(paths) > 1
        model = self.model if several or self.ddp is None else self.ddp
        self.optimizer.zero_grad(set_to_none=True)
        # on_divergence: skip restores the BN statistics a bad batch's forward already changed.
        saved = [b.clone() for b in self.model.buffers()] if self.cfg.on_divergence == "skip" else None
        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        n_micro = len(micro_batches)
        for m, (x, y, skipped) in enumerate(micro_batches):
            self.epoch_stats[3] += skipped
            if len(y) == 0:
                raise SposError("every image of a batch was unreadable; check the data folder")
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = model is not self.ddp or m == n_micro - 1
            teacher = None
            for i, arch in enumerate(paths or [None]):
                with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self._autocast():
                    out = model(x, arch) if arch is not None else model(x)
                    if teacher is not None:
                        loss = F.kl_div(out.float().log_softmax(1), teacher, reduction="batchmean")
                    else:
                        loss = self.criterion(out.float(), y)
                if self.cfg.distill and i == 0:
                    teacher = out.detach().float().softmax(1)
                nonfinite |= ~torch.isfinite(loss.detach())
                self.scaler.scale(loss / n_micro).backward()
                if i == 0:
                    with torch.no_grad():
                        self.epoch_stats[0] += float(loss) * len(y)
                        self.epoch_stats[1] += int((out.argmax(1) == y).sum())
                        self.epoch_stats[2] += len(y)
        if several and self.world > 1:
            _all_reduce_mean_grads(self.model, self.world)
        if paths is not None:
            clear_unchosen_grads(self.model, paths)
        if self._diverged(nonfinite, epoch, saved):
            self.scheduler.step()  # the batch is consumed: data order and lr stay on schedule
            self.step += 1
            return paths
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.scheduler.step()
        self.step += 1
        return paths

    def _diverged(self, nonfinite: torch.Tensor, epoch: int, saved: list[torch.Tensor] | None) -> bool:
        """Check the step's loss and gradient norm (clipping to ``grad_clip`` on the way); on
        every rank alike. Returns True for a step to skip; raises :class:`SposError` to stop."""
        fp16 = self.scaler.is_enabled()
        if fp16 or self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
        # fp16: non-finite gradients are the GradScaler's overflow steps (skipped, not divergence).
        bad_loss, bad_grad = agree([bool(nonfinite), not fp16 and not bool(torch.isfinite(norm))], self.device)
        if not (bad_loss or bad_grad):
            if self.cfg.grad_clip:
                nn.utils.clip_grads_with_norm_(params, self.cfg.grad_clip, norm)
            return False
        self.bad_steps += 1
        what = "loss" if bad_loss else "gradient norm"
        if self.cfg.on_divergence == "skip" and self.bad_steps <= self.cfg.max_bad_steps:
            for b, old in zip(self.model.buffers(), saved or []):
                b.copy_(old)
            self.optimizer.zero_grad(set_to_none=True)
            if fp16:
                self.scaler.update()  # closes the unscale_ above; the next step may unscale again
            if self.is_main:
                print(f"spos: warning: non-finite {what} at step {self.step + 1}: step skipped "
                      f"({self.bad_steps} of at most {self.cfg.max_bad_steps})", file=sys.stderr, flush=True)  # fmt: skip
            return True
        ckpt = self.out / "checkpoint.pt"
        kept = f"the last checkpoint ({ckpt}) is kept" if ckpt.is_file() else "no checkpoint was written"
        amp = ", or fp16 overflow (try amp: bf16)" if self.amp_dtype == torch.float16 else ""
        many = f" ({self.bad_steps} bad steps, more than max_bad_steps)" if self.cfg.on_divergence == "skip" else ""
        raise SposError(
            f"training diverged: non-finite {what} at step {self.step + 1} (epoch {epoch}){many}; {kept}. "
            f"Likely cause: lr {self.cfg.lr:g} too high for batch {self.cfg.batch_size}{amp}; lower lr, "
            f"set grad_clip, or on_divergence: skip for rare bad batches"
        )

    def data_fingerprint(self) -> dict:
        """What fixes the epoch order and the labels: split sizes and class list. A resumed run
        must see the same."""
        return {"train": len(self.train_ds), "val": len(self.val_ds), "holdout": len(self.holdout_idx),
                "classes": [str(c) for c in getattr(self.train_ds, "classes", None) or []]}  # fmt: skip

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
            if self.cfg.tensorboard:
                tblog.log_epoch(self.out, record)
        if self.world > 1:
            dist.barrier()
        self.epoch_stats.zero_()

    def run(self) -> dict:
        """Train to the end (or ``max_steps``); returns the last epoch's metrics record.

        Holds the run folder's lock (rank 0). SIGTERM / SIGINT end the current step, save the
        checkpoint and raise :class:`~spos.errors.Preempted` on every rank."""
        lock = RunLock(self.out) if self.is_main else contextlib.nullcontext()
        with lock, self._signals:
            return self._run()

    def _run(self) -> dict:
        self._start()
        self.model.train()
        self._last_save = time.monotonic()
        while self.step < self.stop_step:
            self._train_epoch(*divmod(self.step, self.steps_per_epoch))
        if self.is_main:
            kind = "supernet" if self.supernet else "subnet"
            payload = model_payload(self._final_model(), self.space, self.arch, kind, self.cfg.to_dict())
            save_checkpoint(payload, self.out / "final.pt")
        if self.world > 1:
            dist.barrier()
        return self.history[-1] if self.history else {}

    def _start(self) -> None:
        """Resume from (or refuse to overwrite) ``checkpoint.pt``; write the run's info files."""
        ckpt_path = self.out / "checkpoint.pt"
        if self.is_main:
            check_writable(self.out)  # before hours of work, not at the first checkpoint
        if self.resume and not ckpt_path.is_file():
            # One command for the first start and every requeue.
            if self.is_main:
                print(f"spos: no checkpoint in {self.out} yet: starting a new run", file=sys.stderr, flush=True)
        elif self.resume:
            self.load(ckpt_path)
        elif ckpt_path.is_file():
            raise SposError(f"{self.out} already holds a run; pass --resume to continue it or use another --out")
        if self.is_main and self.supernet:
            self._warn_unreached_widths()
        if self.is_main:
            write_run_info(self.out, {**self.cfg.to_dict(), "resolved_space": self.space.to_dict(),
                                      "resolved_arch": None if self.arch is None else str(self.arch),
                                      "world_size": self.world}, self.command,
                           {"layout": {"channels_last": self.channels_last, "img_s": self.layout_rates}})  # fmt: skip

    def _warn_unreached_widths(self) -> None:
        """A channel warm-up that the run ends before finishing leaves the narrowest widths, which
        the search may still pick, never trained on their own: say so at the start."""
        cfg = self.cfg
        full = full_range_epoch(self.space, cfg.warmup_start_epoch, cfg.min_channel_gene)
        if full < cfg.epochs:
            return
        reached, narrowest = SCALES[self.sampler.allowed(cfg.epochs - 1)[0]], SCALES[self.sampler.full_genes[0]]
        latest = cfg.epochs - 1 - (full - cfg.warmup_start_epoch)
        print(f"spos: warning: the channel warm-up from epoch {cfg.warmup_start_epoch} reaches scale {reached} by "
              f"this run's last epoch and the narrowest, {narrowest}, only at epoch {full}: widths below "
              f"{reached} are never trained on their own; set epochs above {full}, or warmup_start_epoch "
              + (f"at most {latest} or null" if latest >= 0 else "null"),
              file=sys.stderr, flush=True)  # fmt: skip

    def _train_epoch(self, epoch: int, first: int) -> None:
        """Steps ``first ...`` of ``epoch`` (up to ``stop_step``), checkpointing as configured."""
        spe, every = self.steps_per_epoch, self.cfg.checkpoint_every
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
            minutes = self.cfg.checkpoint_minutes
            due = bool(minutes) and time.monotonic() - self._last_save >= 60 * minutes
            stop, due = agree([self._signals.requested, due], self.device)
            if self.step % spe == 0 or self.step == self.stop_step:
                self._end_epoch(epoch, time.perf_counter() - t0)
                self.save()
            elif (every and self.step % every == 0) or due or stop:
                self.save()
            if stop:
                if bar is not None:
                    bar.close()
                raise Preempted(f"{self._signals.name} at step {self.step} of {self.stop_step} (epoch {epoch}); "
                                f"checkpoint saved in {self.out}: run the same command with --resume to "
                                f"continue")  # fmt: skip
            if self.step >= self.stop_step:
                break
        if bar is not None:
            bar.close()

    def _progress(self, epoch: int, first: int):
        if not (self.cfg.progress and self.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {epoch}",
                    dynamic_ncols=True, leave=False)  # fmt: skip


def _all_reduce_mean_grads(model: nn.Module, world: int) -> None:
    """Average every existing gradient over ranks in one flat all-reduce (all ranks trained
    the same paths, so the same parameters have gradients)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


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
        result = trainer.run()
    except BaseException:
        if trainer.world > 1:
            end_distributed(clean=False)
        raise
    if trainer.world > 1:
        end_distributed()
    return result
