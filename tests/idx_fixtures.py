"""Tiny generated datasets for the data and training tests (never the real download)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from spos.data import FASHION_FILES


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: 2 zero bytes, 0x08 (uint8), ndim, big-endian uint32 dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(data)


def fake_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 grey images whose class (0..9) is a bright horizontal band's position, plus noise:
    learnable in a few steps, so training tests can see the loss fall."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, c in enumerate(labels):
        images[i, 2 + 2 * c : 5 + 2 * c, 4:24] += 180
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_fashion(folder: Path, n_train: int = 256, n_val: int = 128) -> Path:
    """The four Fashion-MNIST IDX .gz files with generated records; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        images, labels = fake_images(n, seed)
        write_idx(folder / FASHION_FILES[split][0], images)
        write_idx(folder / FASHION_FILES[split][1], labels)
    return folder


#: A 5-block space small enough for many optimizer steps per second on one core.
TINY_SPACE = {
    "stage_depths": [1, 1, 2, 1],
    "stage_channels": [16, 32, 64, 128],
    "stem_channels": 8,
    "stem_stride": 2,
    "input_size": 16,
    "last_channels": 64,
}


def tiny_pipeline(out, budget_macs: int = 300_000) -> dict:
    """A pipeline config on TINY_SPACE that runs every stage in seconds (on write_fashion data)."""
    common = {"batch_size": 32, "lr": 0.05, "warmup_steps": 2, "schedule": "constant", "workers": 0,
              "eval_batch_size": 64, "progress": False}  # fmt: skip
    return {
        "data": "builtin",
        "out": str(out),
        "budget_macs": budget_macs,
        "space": {**TINY_SPACE, "input_channels": 1, "num_classes": 10},
        "supernet": {**common, "epochs": 2, "max_steps": 6, "holdout": 64, "recal_images": 64, "val_size": 50,
                     "sampler": "strolling", "warmup_start_epoch": 1},
        "search": {"population": 6, "parents": 2, "generations": 2, "recal_images": 64, "holdout": 64,
                   "batch_size": 64},
        "subnet": {**common, "epochs": 1, "max_steps": 4},
        "sampling_plot_samples": 100,
    }  # fmt: skip
