"""``spos train-supernet`` and ``spos train ARCH``: flags mapped onto :class:`spos.train.TrainConfig`."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..configs import load_config
from ..errors import SposError
from ..sampling.samplers import KINDS
from ..train.config import TrainConfig
from ..train.trainer import train

# (flag, config key, type, help). Flags left unset keep the config file's value (or the default).
_FLAGS = [
    ("--data", "data", str, "'builtin' (Fashion-MNIST) or an ImageFolder root with train/ and val/"),
    ("--epochs", "epochs", int, "training epochs"),
    ("--max-steps", "max_steps", int, "stop after N optimizer steps in total (smoke runs)"),
    ("--batch-size", "batch_size", int, "global batch size (all ranks together)"),
    ("--accum-steps", "accum_steps", int, "micro-batches per rank per step"),
    ("--lr", "lr", float, "peak learning rate for the global batch (no automatic scaling)"),
    ("--weight-decay", "weight_decay", float, "weight decay (not on BN or biases)"),
    ("--warmup-steps", "warmup_steps", int, "linear lr warm-up steps (overrides --warmup-epochs)"),
    ("--warmup-epochs", "warmup_epochs", float, "linear lr warm-up epochs"),
    ("--schedule", "schedule", str, "lr after warm-up: cosine (to 0) or constant"),
    ("--grad-clip", "grad_clip", float, "clip the global gradient norm to this value"),
    ("--amp", "amp", str, "CUDA mixed precision: auto, bf16, fp16 or none"),
    ("--holdout", "holdout", float, "supernet: train images held out for the search (<1: fraction)"),
    ("--recal-images", "recal_images", int, "train images for BN recalibration of validation paths"),
    ("--val-size", "val_size", int, "validation images per epoch (0: no validation)"),
    ("--checkpoint-every", "checkpoint_every", int, "also checkpoint every N steps"),
    ("--on-error", "on_error", str, "unreadable images: skip (warn and count) or fail"),
    ("--out", "out", str, "run folder (checkpoint.pt, final.pt, metrics.jsonl, config.yaml)"),
    ("--device", "device", str, "auto, cpu, cuda or cuda:N"),
    ("--workers", "workers", int, "DataLoader workers per process (ImageFolder data)"),
    ("--seed", "seed", int, "seed for data order, paths and initialisation"),
]
# Flags that take fixed values (the ones TrainConfig.check allows), and what a None default means.
_CHOICES = {"schedule": ("cosine", "constant"), "amp": ("auto", "bf16", "fp16", "none"),
            "on_error": ("skip", "fail"), "sampler": KINDS}  # fmt: skip
_NONE_MEANS = {"max_steps": "all epochs", "warmup_steps": "from --warmup-epochs", "grad_clip": "no clipping",
               "val_size": "the whole val split", "warmup_start_epoch": "channel selection from the start",
               "min_channel_gene": "the space's smallest"}  # fmt: skip
EXAMPLES = {
    "train-supernet": """examples:
  spos train-supernet --config fashion-mnist-supernet --out runs/supernet
  torchrun --nproc_per_node=8 -m spos train-supernet --config imagenet-supernet --data /data/imagenet
""",
    "train": """examples:
  spos train oneshot-s+ --config imagenet-subnet --data /data/imagenet --out runs/subnet
  spos train 3-3-30-3:6-4-44-6 --data builtin --epochs 5 --batch-size 128 --lr 0.1 --tensorboard
""",
}


def _flag_help(key: str, text: str) -> str:
    default = getattr(TrainConfig(), key)
    return f"{text} (default: {_NONE_MEANS.get(key, 'none') if default is None else default})"


_SUPERNET_FLAGS = [
    ("--sampler", "sampler", str, "path sampler: uniform, random, strolling or fair (FairNAS, 4 paths a step)"),
    ("--warmup-start-epoch", "warmup_start_epoch", int, "epoch channel selection starts (SPEC §4)"),
    ("--min-channel-gene", "min_channel_gene", int, "lowest channel gene ever sampled (2 = 0.6)"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-supernet",
        help="train the weight-sharing supernet (one sampled path per step)",
        description="Train a supernet: one path per step from a path sampler, BN-recalibrated "
        "validation of the largest, smallest and a middle path each epoch. Use torchrun for "
        "several processes. Flags override --config values.",
        epilog=EXAMPLES["train-supernet"],
    )
    _add_common(p)
    for flag, key, typ, text in _SUPERNET_FLAGS:
        p.add_argument(flag, dest=key, type=typ, default=None, help=_flag_help(key, text), choices=_CHOICES.get(key))
    p.add_argument("--window", nargs=4, type=float, default=None,
                   metavar=("MIN_MACS", "MAX_MACS", "MIN_PARAMS", "MAX_PARAMS"),
                   help="constraint window for random/strolling sampling (absolute numbers; default: none)")  # fmt: skip
    p.add_argument("--sandwich", action="store_true", default=None,
                   help="sandwich rule: also train the window's largest and smallest path each step")
    p.add_argument("--distill", action="store_true", default=None,
                   help="with --sandwich: in-place distillation from the largest path")
    p.set_defaults(func=run_supernet, arch=None)

    p = sub.add_parser(
        "train",
        help="train one architecture (arch string or zoo name) from scratch",
        description="Train a subnet from scratch with the SPEC §4 recipe. Flags override --config values.",
        epilog=EXAMPLES["train"],
    )
    p.add_argument("arch", metavar="ARCH_OR_ZOO_NAME", help="BLOCKS:CHANNELS or oneshot, oneshot+, oneshot-s+")
    _add_common(p)
    p.set_defaults(func=run_subnet)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="NAME|FILE.yaml",
                   help="a preset (`spos configs`) or a YAML file of spos.train.TrainConfig keys (default: none)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint.pt")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar")  # fmt: skip
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log to OUT/tensorboard (needs `pip install spos[tensorboard]`)")
    for flag, key, typ, text in _FLAGS:
        p.add_argument(flag, dest=key, type=typ, default=None, help=_flag_help(key, text), choices=_CHOICES.get(key))


def config_from_args(args: argparse.Namespace, supernet: bool) -> TrainConfig:
    """The config file's values (if any), overridden by every flag given on the command line."""
    values = load_config(args.config) if args.config else {}
    keys = [key for _, key, _, _ in _FLAGS] + ["progress", "tensorboard"]
    if supernet:
        keys += [key for _, key, _, _ in _SUPERNET_FLAGS] + ["sandwich", "distill"]
    for key in keys:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    if supernet and args.window is not None:
        lo_m, hi_m, lo_p, hi_p = args.window
        values["window"] = {"min_macs": lo_m, "max_macs": hi_m, "min_params": lo_p, "max_params": hi_p}
    if not supernet:
        values["arch"] = args.arch
    elif values.get("arch") is not None:
        raise SposError(f"config sets arch {values['arch']!r}: that trains a subnet; use `spos train ARCH`")
    return TrainConfig.from_dict(values, where=f"config ({args.config})" if args.config else "config")


def run_supernet(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, supernet=True)
    train(cfg, _command(), resume=args.resume)
    return 0


def run_subnet(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, supernet=False)
    train(cfg, _command(), resume=args.resume)
    return 0


def _command() -> str:
    return "spos " + " ".join(shlex.quote(a) for a in sys.argv[1:])
