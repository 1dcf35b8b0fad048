"""Every hyperparameter of a training run (:class:`TrainConfig`) and the space it builds."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import data, tblog, zoo
from ..errors import SposError, dataclass_from_dict
from ..space import Arch, SearchSpace

#: Old config key -> its name now (accepted with a deprecation note; checkpoints written with the
#: old name resume as if they had the new one).
RENAMED = {"bn_images": "recal_images"}


def upgrade_keys(d: dict, where: str = "config", warn: bool = True) -> dict:
    """``d`` with every :data:`RENAMED` key under its new name. With ``warn`` (a config the user
    wrote) each old key gets a one-line :class:`FutureWarning`; without (a checkpoint's or a
    saved run's config, which nobody edits) the rename is silent."""
    out = dict(d)
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise SposError(f"{where} sets both {old!r} and {new!r}; keep {new!r} only")
            if warn:
                warnings.warn(f"{where} key {old!r} is deprecated; call it {new!r}", FutureWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out


#: Config keys that may differ between a run and its resumption (they do not change the weights).
RESUME_NEUTRAL = ("max_steps", "checkpoint_every", "checkpoint_minutes", "workers", "device", "progress",
                  "out", "val_size", "eval_batch_size", "on_divergence", "max_bad_steps", "tensorboard")  # fmt: skip


@dataclass
class TrainConfig:
    """Every hyperparameter of a training run; ``lr`` is absolute for the global ``batch_size``
    (SPEC §4 scales lr linearly with batch: 1.3 at 1024 -> 0.1625 at 128)."""

    data: str = "builtin"  # "builtin" (Fashion-MNIST) or an ImageFolder root with train/ and val/
    space: dict = field(default_factory=dict)  # SearchSpace fields, plus optional layout and width
    arch: str | None = None  # None: train the supernet; an arch string or zoo name: a subnet
    epochs: int = 120
    max_steps: int | None = None  # stop after this many optimizer steps in total (smoke runs)
    batch_size: int = 1024  # global, over all ranks and accumulation steps
    accum_steps: int = 1  # micro-batches per rank per step (gradients averaged)
    lr: float = 1.3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5  # not applied to BN parameters or biases
    label_smoothing: float = 0.1
    warmup_epochs: float = 5.0
    warmup_steps: int | None = None  # overrides warmup_epochs when set
    schedule: str = "cosine"  # after warm-up: "cosine" (per step, to 0) or "constant"
    grad_clip: float | None = None  # max global gradient L2 norm
    amp: str = "auto"  # CUDA only: "auto" (bf16 where supported), "bf16", "fp16", "none"
    # NHWC weights and activations (true), NCHW (false), or "auto": a few timed steps of each on
    # this host at start-up pick the faster (spos.train.layout; the rates go into run.json, a
    # resume keeps the choice). true is the default because it is reproducible: two runs of one
    # config may time differently under load, and the layouts differ in float rounding.
    channels_last: bool | str = True
    decoder: str = "tensor"  # ImageFolder/packed images: "tensor" (torchvision.io) or "pil" (spos.data)
    # Decay of an exponential moving average of the weights (torch.optim.swa_utils), updated
    # after every step; final.pt then holds the averaged weights with the trained model's BN
    # statistics. None: off. A lever against the end-point noise of a constant lr (issue #12).
    ema: float | None = None
    sampler: str = "uniform"  # supernet: "uniform", "random", "strolling" or "fair" (spos.sampling)
    # Sandwich rule (BigNAS): each step also trains the window's largest and smallest path
    # beside two sampled ones, on their summed gradients.
    sandwich: bool = False
    # The sandwich's two ends: "window", the largest and smallest path of the sampling window
    # (fixed per epoch); "widths", per step the widest and the narrowest channels the epoch
    # allows, each on block types drawn by the sampler (BigNAS's largest and smallest child in a
    # space whose block types have no order: every choice block's full width is trained).
    sandwich_ends: str = "window"
    # In-place distillation (BigNAS), with sandwich: every path but the largest learns from the
    # largest path's soft predictions (KL divergence) instead of the labels.
    distill: bool = False
    window: dict | None = None  # Bounds keys (min/max MACs and params, max_latency_ms) for random/strolling
    latency_table: str | None = None  # a latency-table JSON: lets the window bound max_latency_ms
    warmup_start_epoch: int | None = None  # channel selection starts here (SPEC §4); None: at once
    min_channel_gene: int | None = None
    # Training's "holdout": train images kept OUT of supernet training, so the search can score
    # on them (<1: a fraction, else a count). The search's own ``holdout`` is something else:
    # how many of these held-out images it scores (spos.search.SearchConfig.holdout).
    holdout: float = 0.1
    # BN recalibration images (train images, never the holdout) for the supernet's per-epoch
    # validation paths; the search's ``recal_images`` is the same concept. Was ``bn_images``.
    recal_images: int = 2000
    val_size: int | None = None  # validation images per epoch (None: the whole val split; 0: none)
    eval_batch_size: int = 256
    checkpoint_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    checkpoint_minutes: float = 10.0  # also checkpoint when this much time passed since the last (0: off)
    # A step whose loss or gradient norm is not finite: "stop" (one-line error, the last finite
    # checkpoint kept) or "skip" (no update, BN statistics restored; stop after max_bad_steps).
    on_divergence: str = "stop"
    max_bad_steps: int = 10
    on_error: str = "skip"  # unreadable images: "skip" (warn and count) or "fail"
    workers: int = 4  # DataLoader workers per rank (ImageFolder data only)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    progress: bool = True  # tqdm bar (only on a terminal)
    tensorboard: bool = False  # also log each epoch to OUT/tensorboard (pip install spos[tensorboard])
    out: str = "runs/train"

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> TrainConfig:
        """A checked config from a mapping; old key names are accepted with a one-line note."""
        cfg = dataclass_from_dict(cls, upgrade_keys(d, where), f"{where} keys")
        cfg.check()
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def check(self) -> None:
        """Raise :class:`SposError` for values no run could use."""
        if not isinstance(self.space, dict):
            raise SposError("config key 'space' must be a mapping of search-space options")
        if self.epochs < 1 or self.batch_size < 1 or self.accum_steps < 1:
            raise SposError("epochs, batch_size and accum_steps must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise SposError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.lr <= 0:
            raise SposError(f"lr must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise SposError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "fp16", "none"):
            raise SposError(f"amp must be auto, bf16, fp16 or none, got {self.amp!r}")
        if self.channels_last not in (True, False, "auto"):
            raise SposError(f"channels_last must be true, false or auto, got {self.channels_last!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise SposError(f"ema must be a decay between 0 and 1 (e.g. 0.999), got {self.ema}")
        if self.decoder not in data.DECODERS:
            raise SposError(f"decoder must be one of {', '.join(data.DECODERS)}, got {self.decoder!r}")
        if self.on_divergence not in ("stop", "skip"):
            raise SposError(f"on_divergence must be 'stop' or 'skip', got {self.on_divergence!r}")
        if self.checkpoint_minutes < 0 or self.max_bad_steps < 0:
            raise SposError("checkpoint_minutes and max_bad_steps must be >= 0")
        if self.on_error not in ("skip", "fail"):
            raise SposError(f"on_error must be 'skip' or 'fail', got {self.on_error!r}")
        if self.distill and not self.sandwich:
            raise SposError("distill needs sandwich: true (the largest path is the teacher)")
        if self.sandwich_ends not in ("window", "widths"):
            raise SposError(f"sandwich_ends must be 'window' or 'widths', got {self.sandwich_ends!r}")
        if self.sandwich and self.sampler == "fair":
            raise SposError("sandwich and the fair sampler each pick several paths per step; use one of them")
        if self.tensorboard:
            tblog.require()
        if self.holdout < 0:
            raise SposError(f"holdout must be >= 0, got {self.holdout}")


def build_space(cfg: TrainConfig) -> tuple[SearchSpace, Arch | None]:
    """The run's search space (dataset defaults filled in) and, for a subnet, its arch."""
    space = SearchSpace.from_options(cfg.space, defaults=data.data_info(cfg.data))
    if cfg.arch is None:
        return space, None
    if ":" in cfg.arch:
        # A subnet's genes need not lie in the supernet's searchable channel range.
        space = space.replace(channel_genes=tuple(range(10)))
    arch, space = zoo.resolve(cfg.arch, space)
    return space, arch
