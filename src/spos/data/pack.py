"""Packed shards: an ImageFolder tree as WebDataset-style tar shards of pre-resized JPEGs.

``spos data pack SRC DEST`` (:func:`pack`) writes, for each split of ``SRC/{train,val}/CLASS/IMAGE``::

    DEST/train-000000.tar   KEY.jpg (RGB JPEG, short side at most short_side) + KEY.cls (label)
    DEST/index.json         classes, per-class counts, and each shard's keys and byte offsets

KEY is the image's place in the source split in torchvision ImageFolder's order (8 digits).

A shard is a plain POSIX tar in WebDataset's naming convention (files of one sample share a
key), so multi-node users can stream it as it is, e.g. ``webdataset.WebDataset(urls)
.decode("torchrgb").to_tuple("jpg", "cls")``; samples are shuffled once (seeded) before sharding
so that a streamed shard mixes classes. Plain ``tarfile`` writes them: the ``webdataset``
package would be a dependency for what is a tar file with a naming convention, and its iterable
datasets fit neither the trainer's index-based batches nor its exact resume.

:class:`PackedData` reads a packed folder map-style through the offsets in the index (one
seek and read per image, no tar parsing), in key order, so the trainer's sampler, holdout split
and DDP sharding apply unchanged, and item i is item i of the source tree (as long as no
unreadable image was left out). Pre-resizing is the speed-up: JPEG decoding costs about its pixel
count, and a 500 x 375 ImageNet photo at short side 256 has half of them. The eval transform
(resize to 256, centre crop 224) is unchanged by it; the random-resized crop keeps its area and
aspect distribution, sampled from the smaller image.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random
import tarfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from torch.utils.data import Dataset

from ..errors import SposError
from .imagefolder import SPLITS, UNREADABLE, check_on_error, unreadable

FORMAT, VERSION = "spos-packed", 1
INDEX, SETTINGS = "index.json", ".pack-settings.json"
#: The seed of the one shuffle before sharding; fixed, so that a resumed pack cuts the same shards.
SHUFFLE_SEED = 0


def is_packed(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a folder written by :func:`pack` (it holds ``index.json``)."""
    return (Path(root) / INDEX).is_file()


def pack(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    shard_size: int = 1000,
    short_side: int = 256,
    quality: int = 90,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> dict:
    """Pack the ImageFolder tree ``src`` (``SRC/{train,val}/CLASS/IMAGE``) into ``dest``; return
    the index.

    Images are resized to ``short_side`` pixels on their short side (never enlarged; 0 keeps
    every size) and stored as JPEG of ``quality``; JPEGs already small enough are stored byte
    for byte. Each shard of ``shard_size`` images is written to a temporary file and renamed
    when complete, so an interrupted pack resumes by skipping the shards already there;
    ``workers`` processes write shards in parallel. Unreadable images are left out, with a
    warning.
    """
    if shard_size < 1 or short_side < 0 or not 1 <= quality <= 100:
        raise SposError(f"need shard_size >= 1, short_side >= 0 and 1 <= quality <= 100, got "
                        f"{shard_size}, {short_side}, {quality}")  # fmt: skip
    classes, samples = _scan(Path(src))
    dest = Path(dest)
    _claim(dest, {"short_side": short_side, "quality": quality, "shard_size": shard_size,
                  "seed": SHUFFLE_SEED, "images": {s: len(v) for s, v in samples.items()}})  # fmt: skip
    jobs = [(dest / f"{split}-{i // shard_size:06d}.tar", split, items[i : i + shard_size])
            for split, items in samples.items() for i in range(0, len(items), shard_size)]  # fmt: skip
    todo = [(path, items, short_side, quality) for path, _, items in jobs if not path.exists()]
    _write_shards(todo, workers, log)
    index = _index(jobs, classes, short_side, quality)
    with _atomic(dest / INDEX) as f:
        f.write(json.dumps(index, separators=(",", ":")).encode())
    counts = ", ".join(f"{p['count']} {s}" for s, p in index["splits"].items())
    log(f"packed {counts} images of {len(classes)} classes into {dest} ({len(jobs)} shards, "
        f"{len(jobs) - len(todo)} already there)")  # fmt: skip
    return index


def _write_shards(todo: list[tuple], workers: int, log: Callable[[str], None]) -> None:
    """:func:`_write_shard` on each argument tuple of ``todo``, in ``workers`` processes."""
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(workers, len(todo))) as pool:
            _log_shards(todo, pool.map(_write_shard, *zip(*todo)), log)
    else:
        _log_shards(todo, (_write_shard(*args) for args in todo), log)


def _log_shards(todo: list[tuple], skipped: Iterable[int], log: Callable[[str], None]) -> None:
    for (path, items, _, _), bad in zip(todo, skipped):
        log(f"{path.name}: {len(items) - bad} images" + (f", {bad} unreadable left out" if bad else ""))


def _index(jobs: list[tuple], classes: list[str], short_side: int, quality: int) -> dict:
    """The index of the finished shards of ``jobs`` (``(path, split, items)``)."""
    index = {"format": FORMAT, "version": VERSION, "short_side": short_side, "quality": quality,
             "classes": classes, "splits": {}}  # fmt: skip
    for path, split, items in jobs:
        part = index["splits"].setdefault(split, {"count": 0, "class_counts": dict.fromkeys(classes, 0), "shards": []})
        shard = _shard_entry(path, {key: label for _, label, key in items})
        part["shards"].append(shard)
        part["count"] += shard["count"]
        for label in shard["labels"]:
            part["class_counts"][classes[label]] += 1
    return index


def _scan(src: Path) -> tuple[list[str], dict[str, list[tuple[str, int, int]]]]:
    """The class names (over all splits) and each split's ``(path, label, key)`` list, shuffled;
    the key is the image's place in torchvision ImageFolder's order of the split."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    if not src.is_dir():
        raise SposError(f"source folder {src} does not exist; expected {src}/train/CLASS/IMAGE files")
    splits = [s for s in SPLITS if (src / s).is_dir()]
    if not splits:
        raise SposError(f"source folder {src} has no train/ or val/ folder; expected {src}/train/CLASS/IMAGE files")
    classes = sorted({d.name for s in splits for d in (src / s).iterdir() if d.is_dir() and not d.name.startswith(".")})
    if not classes:
        raise SposError(f"source folder {src} holds no class folders; expected {src}/train/CLASS/IMAGE files")
    samples = {}
    for split in splits:
        found = make_dataset(str(src / split), dict(zip(classes, range(len(classes)))), IMG_EXTENSIONS, allow_empty=True)
        if found:
            samples[split] = [(path, label, key) for key, (path, label) in enumerate(found)]
            random.Random(SHUFFLE_SEED).shuffle(samples[split])
    if not samples:
        raise SposError(f"source folder {src} holds no images; expected {src}/train/CLASS/IMAGE files")
    return classes, samples


def _claim(dest: Path, settings: dict) -> None:
    """Make ``dest`` (or find it writable) and record ``settings``; a folder packed with other
    settings is refused, since its finished shards would not match the new ones."""
    old = dest / SETTINGS
    try:
        was = json.loads(old.read_text()) if old.is_file() else settings
    except (OSError, ValueError):
        was = settings  # unreadable: rewritten below, or the write says why
    if was != settings:
        diff = ", ".join(f"{k} {was.get(k)} (now {v})" for k, v in settings.items() if was.get(k) != v)
        raise SposError(f"{dest} holds shards packed with {diff}; pass the same options, or an empty DEST")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with _atomic(old) as f:
            f.write(json.dumps(settings).encode())
    except OSError as e:
        raise SposError(f"cannot write to {dest} ({type(e).__name__}: {e}); pick a writable DEST") from None


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: a temporary file, renamed to ``path`` once complete,
    so that a killed run never leaves a truncated file under the real name."""
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_shard(path: Path, items: list[tuple[str, int, int]], short_side: int, quality: int) -> int:
    """Write ``items`` (image path, label, key) as the tar ``path`` through a temporary file and
    a rename; return how many were unreadable and left out."""
    skipped = 0
    with _atomic(path) as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for image, label, key in items:
                try:
                    jpeg = _jpeg(image, short_side, quality)
                except UNREADABLE as e:
                    warnings.warn(f"leaving out unreadable image {image} ({type(e).__name__}: {e})", stacklevel=2)
                    skipped += 1
                    continue
                for name, blob in ((f"{key:08d}.jpg", jpeg), (f"{key:08d}.cls", str(label).encode())):
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = len(blob), 0o444
                    tar.addfile(info, io.BytesIO(blob))
    return skipped


def _jpeg(image: str, short_side: int, quality: int) -> bytes:
    """``image`` as RGB JPEG bytes with its short side at most ``short_side`` (0: any size)."""
    from PIL import Image

    with Image.open(image) as im:
        w, h = im.size
        small = short_side == 0 or min(w, h) <= short_side
        if small and im.format == "JPEG" and im.mode == "RGB":
            return Path(image).read_bytes()  # no second compression
        if not small:  # torchvision's Resize(short_side) output size, so the eval resize is a no-op
            s, long = short_side, int(short_side * max(w, h) / min(w, h))
            size = (s, long) if w <= h else (long, s)
            im.draft("RGB", size)  # JPEG DCT scaling to no less than size: big photos decode faster
            img = im.convert("RGB").resize(size, Image.BILINEAR)
        else:
            img = im.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _shard_entry(path: Path, labels: dict[int, int]) -> dict:
    """The index entry of shard ``path``: image offsets and sizes read from its tar headers,
    keys, and labels by key from ``labels``."""
    entry = {"name": path.name, "count": 0, "keys": [], "offsets": [], "sizes": [], "labels": []}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if m.name.endswith(".jpg"):
                    entry["offsets"].append(m.offset_data)
                    entry["sizes"].append(m.size)
                    entry["keys"].append(int(m.name[:-4]))
                    entry["labels"].append(labels[entry["keys"][-1]])
    except (OSError, tarfile.TarError, ValueError, KeyError) as e:
        raise SposError(f"shard {path} is damaged ({e}); delete it and pack again") from None
    entry["count"] = len(entry["offsets"])
    return entry


def read_index(root: str | os.PathLike) -> dict:
    """The index of the packed folder ``root``."""
    path = Path(root) / INDEX
    return _load_index(str(path), path.stat().st_mtime)


@functools.lru_cache(maxsize=2)
def _load_index(path: str, mtime: float) -> dict:
    # mtime is part of the cache key so that a re-packed folder is re-read.
    try:
        index = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SposError(f"cannot read {path} ({e}); pack the folder again with `spos data pack`") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise SposError(f"{path} is not a {FORMAT} v{VERSION} index; pack the folder again with `spos data pack`")
    return index


class PackedData(Dataset):
    """The ``split`` of a packed folder as a map-style dataset of ``(transform(load(bytes)), label)``.

    ``load`` turns an image's bytes into an image for ``transform``
    (:func:`spos.data.transforms.pipeline`); ``on_error`` as for
    :class:`spos.data.imagefolder.ImageFolderData`.
    """

    def __init__(self, root: Path, split: str, transform, on_error: str = "skip", load: Callable | None = None) -> None:
        from .transforms import decode

        check_on_error(on_error)
        index = read_index(root)
        if split not in index["splits"]:
            raise SposError(f"packed folder {root} has no {split} split; pack a source with a {split}/ folder")
        shards = index["splits"][split]["shards"]
        self.paths = [Path(root) / s["name"] for s in shards]
        missing = [p.name for p in self.paths if not p.is_file()]
        if missing:
            raise SposError(f"packed folder {root} lacks {len(missing)} shard(s), e.g. {missing[0]}; run `spos data pack` again")
        # Items in key order, i.e. the source ImageFolder's: index i is the same image in the tree
        # and in its packed copy, so a holdout split by index holds out the same images in both.
        # numpy arrays, not lists: DataLoader workers then share them without copy-on-write.
        order = np.argsort(np.array([k for s in shards for k in s["keys"]], dtype=np.int64), kind="stable")
        self.shard = np.repeat(np.arange(len(shards), dtype=np.int32), [s["count"] for s in shards])[order]
        self.offsets = np.array([o for s in shards for o in s["offsets"]], dtype=np.int64)[order]
        self.sizes = np.array([n for s in shards for n in s["sizes"]], dtype=np.int64)[order]
        self.labels = np.array([y for s in shards for y in s["labels"]], dtype=np.int64)[order]
        self.transform, self.load, self.on_error = transform, load or decode, on_error
        self.classes = index["classes"]
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        path = self.paths[self.shard[i]]
        try:
            with open(path, "rb") as f:
                f.seek(int(self.offsets[i]))
                raw = f.read(int(self.sizes[i]))
            return self.transform(self.load(raw)), int(self.labels[i])
        except UNREADABLE as e:
            return unreadable(f"{path.name} item {i}", e, self.on_error)
