"""Datasets: the built-in Fashion-MNIST (SPEC §8), ImageFolder trees and packed shards with the
SPEC §4 recipe.

``dataset(data, split, train)`` is the one entry point. ``data`` is ``"builtin"``, the root of an
ImageNet-style tree (``ROOT/train/CLASS/*.jpg``, ``ROOT/val/CLASS/*.jpg``), or a folder that
``spos data pack`` wrote from one (WebDataset-style tar shards of pre-resized JPEGs).

- :mod:`.fashion`: Fashion-MNIST in memory; :meth:`TensorImages.batch` augments and normalises a
  whole batch with tensor ops, so the trainer needs no DataLoader (and no PIL) for it.
- :mod:`.transforms`: decoding and the augmentation recipe: the default ``decoder="tensor"``
  (torchvision.io + tensor kernels) and the reference ``decoder="pil"``.
- :mod:`.imagefolder`: ImageFolder trees; a DataLoader with :func:`collate_skipping` drops
  unreadable images (``on_error="skip"``) and counts them.
- :mod:`.pack`: the packed format: :func:`pack` writes it, :class:`PackedData` reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import SposError
from .fashion import (
    FASHION_FILES,
    FASHION_MEAN,
    FASHION_STD,
    PACKAGE_FASHION_DIR,
    SYSTEM_FASHION_DIR,
    TensorImages,
    builtin,
    fashion_mnist_dir,
    fetch_fashion_mnist,
    read_idx,
    user_data_dir,
)
from .imagefolder import SPLITS, ImageFolderData, collate_skipping
from .pack import PackedData, is_packed, pack, read_index
from .transforms import (
    DECODERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TensorRecipe,
    decode,
    pipeline,
    recipe_transform,
)

__all__ = [
    "DECODERS", "FASHION_FILES", "FASHION_MEAN", "FASHION_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "PACKAGE_FASHION_DIR", "SPLITS", "SYSTEM_FASHION_DIR", "ImageFolderData", "PackedData",
    "TensorImages", "TensorRecipe", "builtin", "collate_skipping", "data_info", "dataset", "decode",
    "fashion_mnist_dir", "fetch_fashion_mnist", "holdout_split", "is_packed", "iter_batches", "pack",
    "pipeline", "read_idx", "read_index", "recipe_transform", "to_tensors", "user_data_dir",
]  # fmt: skip


def dataset(
    data: str,
    split: str,
    train: bool,
    input_size: int | None = None,
    on_error: str = "skip",
    decoder: str = "tensor",
) -> Dataset:
    """The ``split`` ("train" or "val") of ``data`` ("builtin", an ImageFolder root or a packed
    folder).

    ``train=True`` applies the training augmentation (builtin: flip only), ``False`` the eval
    transform. Items are ``(normalised float C x H x W tensor, int label)``; ``input_size`` is in
    pixels (default: the dataset's own, :func:`data_info`). ``decoder`` picks the image pipeline
    of folder data: "tensor" (fast) or "pil" (the reference); see :mod:`spos.data.transforms`.
    """
    if split not in SPLITS:
        raise SposError(f"split must be one of {SPLITS}, got {split!r}")
    if data == "builtin":
        return builtin(split, train, input_size)
    root = Path(data)
    if not root.is_dir():
        raise SposError(f"data folder {root} does not exist; pass --data builtin or an ImageFolder root")
    load, transform = pipeline(decoder, train, input_size or data_info(data)["input_size"])
    if is_packed(root):
        return PackedData(root, split, transform, on_error, load)
    return ImageFolderData(root / split, transform, on_error, load)


def data_info(data: str) -> dict:
    """Defaults a space needs for ``data``: ``num_classes``, ``input_channels``, ``input_size``."""
    if data == "builtin":
        return {"num_classes": 10, "input_channels": 1, "input_size": 28}
    if is_packed(data):
        return {"num_classes": len(read_index(data)["classes"]), "input_channels": 3, "input_size": 224}
    train = Path(data) / "train"
    if not train.is_dir():
        raise SposError(f"{data} has no train/ folder; expected {data}/train/CLASS/IMAGE files")
    classes = [d for d in train.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if not classes:
        raise SposError(f"{train} holds no class folders; expected {train}/CLASS/IMAGE files")
    return {"num_classes": len(classes), "input_channels": 3, "input_size": 224}


def holdout_split(n: int, size: int, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (train indices, ``size`` holdout indices): seeded, disjoint, sorted."""
    if not 0 <= size < n:
        raise SposError(f"holdout size {size} must be between 0 and {n - 1} (the split has {n} images)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[size:]), sorted(perm[:size])


def iter_batches(
    ds: Dataset,
    indices: Sequence[int],
    batch_size: int = 256,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` batches of ``ds[indices]`` in order; unreadable images dropped."""
    indices = list(indices)
    if isinstance(ds, TensorImages):
        for i in range(0, len(indices), batch_size):
            yield ds.batch(indices[i : i + batch_size])
        return
    loader = DataLoader(Subset(ds, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate_skipping)  # fmt: skip
    for x, y, _ in loader:
        if len(y):
            yield x, y


def to_tensors(
    ds: Dataset,
    indices: Sequence[int],
    batch_size: int = 256,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``ds[indices]`` once into ``(images N x C x H x W, labels N)`` on the CPU."""
    xs, ys = [], []
    for x, y in iter_batches(ds, indices, batch_size, num_workers):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise SposError("no readable images among the requested indices")
    return torch.cat(xs), torch.cat(ys)
