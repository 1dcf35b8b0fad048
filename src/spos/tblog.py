"""TensorBoard logging, the optional extra (``pip install spos[tensorboard]``).

``metrics.jsonl``, the search's state and the PNGs stay the dependency-free record of a run;
with ``tensorboard: true`` (``--tensorboard``) the same numbers also go to ``OUT/tensorboard``
for ``tensorboard --logdir runs``. ``torch.utils.tensorboard`` is imported only when something is
logged, so spos never needs the package otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import SposError

#: The sub-folder of a run folder that holds its event files.
FOLDER = "tensorboard"

_writers: dict[Path, object] = {}


def require() -> None:
    """Raise a one-line :class:`SposError` unless the tensorboard package is installed (checked
    when a config asks for it, before any work)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise SposError("TensorBoard logging needs the tensorboard package: pip install 'spos[tensorboard]' "
                        "(or drop --tensorboard / tensorboard: true)")  # fmt: skip


def writer(run_dir: str | os.PathLike):
    """The one ``SummaryWriter`` of ``RUN_DIR/tensorboard`` in this process (kept open: one event
    file per process; a resumed run adds a file that TensorBoard reads with the others)."""
    folder = Path(run_dir) / FOLDER
    if folder not in _writers:
        require()
        from torch.utils.tensorboard import SummaryWriter

        _writers[folder] = SummaryWriter(log_dir=str(folder))
    return _writers[folder]


def log_scalars(run_dir: str | os.PathLike, step: int, scalars: dict[str, float]) -> None:
    """Write ``tag -> value`` at ``step`` and flush, so a killed run keeps what it logged."""
    w = writer(run_dir)
    for tag, value in scalars.items():
        w.add_scalar(tag, float(value), step)
    w.flush()


def log_figure(run_dir: str | os.PathLike, tag: str, figure, step: int = 0) -> None:
    """Write a matplotlib figure as an image (the figure is closed)."""
    w = writer(run_dir)
    w.add_figure(tag, figure, step, close=True)
    w.flush()


def epoch_scalars(record: dict) -> dict[str, float]:
    """The TensorBoard scalars of one ``metrics.jsonl`` epoch record: ``train/loss``,
    ``train/acc``, ``train/lr``, ``train/img_per_s`` and the validation, either ``val/acc`` and
    ``val/loss`` (a subnet) or ``val/PATH/acc`` per recalibrated supernet path (largest,
    smallest, middle)."""
    out = {"train/loss": record["train_loss"], "train/acc": record["train_acc"], "train/lr": record["lr"]}
    if record.get("seconds"):
        out["train/img_per_s"] = record["train_images"] / record["seconds"]
    val = record.get("val")
    if isinstance(val, dict):
        flat = {"": val} if "acc" in val else val
        for path, metrics in flat.items():
            for key in ("acc", "loss"):
                if isinstance(metrics, dict) and key in metrics:
                    out["/".join(p for p in ("val", path, key) if p)] = metrics[key]
    return out


def log_epoch(run_dir: str | os.PathLike, record: dict) -> None:
    """One training epoch's scalars (:func:`epoch_scalars`) at its epoch number."""
    log_scalars(run_dir, int(record["epoch"]), epoch_scalars(record))


def log_generation(run_dir: str | os.PathLike, generation: int, stats: dict) -> None:
    """One search generation: ``search/best_fitness``, ``search/mean_fitness`` (of its
    population) and ``search/best_so_far``."""
    log_scalars(run_dir, generation, {f"search/{k}": stats[k] for k in ("best_fitness", "mean_fitness",
                                                                       "best_so_far") if k in stats})  # fmt: skip
