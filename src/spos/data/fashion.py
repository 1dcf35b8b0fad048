"""The built-in dataset: Fashion-MNIST (SPEC §8) from local IDX files, held in memory.

The data stays in memory as one uint8 tensor and is normalised per batch:
:meth:`TensorImages.batch` gathers, flips and normalises a whole batch with tensor ops, so the
trainer needs no DataLoader (and no PIL) for it. `spos data fetch` (:func:`fetch_fashion_mnist`)
puts the files into the per-user data folder.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import SposError

#: Fashion-MNIST statistics (SPEC §8).
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Where Debian's dataset-fashion-mnist package puts the files (inside the .deb, and installed).
PACKAGE_FASHION_DIR = "usr/share/datasets/fashion-mnist"
SYSTEM_FASHION_DIR = Path("/") / PACKAGE_FASHION_DIR


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array of its declared shape.

    Format: 2 zero bytes, a data-type byte (0x08 = uint8), the number of dims, the dims as
    big-endian uint32, then the raw data.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise SposError(f"cannot read {path}: {e}; delete it and run `spos data fetch` again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SposError(f"{path} is not a uint8 IDX file (bad magic); delete it and run `spos data fetch` again")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise SposError(
            f"{path} holds {len(raw) - offset} bytes of data for dims {list(dims)}: truncated or "
            f"corrupt; delete it and run `spos data fetch` again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def user_data_dir() -> Path:
    """The per-user data folder `spos data fetch` fills by default: ``$SPOS_DATA``, else
    ``$XDG_DATA_HOME/spos`` (``~/.local/share/spos``)."""
    env = os.environ.get("SPOS_DATA")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "spos"


def fashion_mnist_dir() -> Path:
    """Where the four Fashion-MNIST IDX files are: ``$SPOS_DATA`` (the folder itself or its
    ``fashion-mnist/`` child), ``./data/fashion-mnist``, the per-user data folder
    (:func:`user_data_dir`), then the Debian package's path."""
    candidates = []
    env = os.environ.get("SPOS_DATA")
    if env:
        candidates += [Path(env), Path(env) / "fashion-mnist"]
    candidates += [Path("data") / "fashion-mnist", user_data_dir() / "fashion-mnist", SYSTEM_FASHION_DIR]
    candidates = list(dict.fromkeys(candidates))
    for d in candidates:
        if _has_fashion(d):
            return d
    looked = ", ".join(str(d) for d in candidates)
    raise SposError(
        f"the built-in dataset (Fashion-MNIST) is not installed (looked in {looked}); run "
        f"`spos data fetch`, or point $SPOS_DATA at a folder holding the four *-ubyte.gz files"
    )


def _has_fashion(folder: Path) -> bool:
    return all((folder / f).is_file() and (folder / f).stat().st_size > 0
               for files in FASHION_FILES.values() for f in files)  # fmt: skip


def fetch_fashion_mnist(root: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Path:
    """Put Fashion-MNIST into ``ROOT/fashion-mnist`` (default root: :func:`user_data_dir`) and
    return that folder: copied from the Debian package's path if it is installed, else taken
    from Debian's ``dataset-fashion-mnist`` package without root (``apt-get download`` +
    ``dpkg-deb -x``). Files already there are kept."""
    dest = Path(root if root is not None else user_data_dir()) / "fashion-mnist"
    names = [f for files in FASHION_FILES.values() for f in files]
    if _has_fashion(dest):
        log(f"Fashion-MNIST already in {dest}")
        return dest
    if _has_fashion(SYSTEM_FASHION_DIR):
        _install_files(SYSTEM_FASHION_DIR, dest, names)
        log(f"Fashion-MNIST copied from {SYSTEM_FASHION_DIR} to {dest}")
        return dest
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SposError(f"{tool} not found: install Debian's dataset-fashion-mnist package, or put the "
                            f"four *-ubyte.gz files in {dest}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="spos-fetch-") as work:
        deb = _apt_download(Path(work), "dataset-fashion-mnist")
        unpacked = Path(work) / "x"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"cannot unpack {deb.name}")
        _install_files(unpacked / PACKAGE_FASHION_DIR, dest, names)
        licence = unpacked / "usr/share/doc/dataset-fashion-mnist/copyright"
        if licence.is_file():
            shutil.copyfile(licence, dest / "COPYRIGHT")
    log(f"Fashion-MNIST unpacked into {dest}")
    return dest


def _apt_download(work: Path, package: str) -> Path:
    """``apt-get download package`` into ``work``; on a fresh machine without package lists the
    lists are first fetched into a private folder, which needs no root."""
    try:
        _run(["apt-get", "download", package], "", cwd=work)
    except SposError:
        lists = work / "lists"
        (lists / "partial").mkdir(parents=True)
        opts = ["-o", f"Dir::State::Lists={lists}", "-o", "Debug::NoLocking=1"]
        subprocess.run(["apt-get", *opts, "update"], cwd=work, capture_output=True)
        _run(["apt-get", *opts, "download", package], f"could not download {package} with apt-get", cwd=work)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if not debs:
        raise SposError(f"apt-get download left no {package}_*.deb; install the package with apt instead")
    return debs[-1]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise SposError(f"{what or ' '.join(cmd) + ' failed'}: {last}")


def _install_files(src: Path, dest: Path, names: list[str]) -> None:
    """Copy ``names`` from ``src`` to ``dest``, each through a temporary file and a rename, so an
    interrupted fetch never leaves a truncated IDX file under its real name."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (src / name).is_file():
            raise SposError(f"{src} lacks {name}: the package's layout changed; put the four *-ubyte.gz files in {dest}")
        tmp = dest / f".{name}.part"
        shutil.copyfile(src / name, tmp)
        os.replace(tmp, dest / name)


@functools.lru_cache(maxsize=4)
def _load_fashion(folder: str, split: str, mtime: float) -> tuple[torch.Tensor, torch.Tensor]:
    # mtime is part of the cache key so that a re-fetched file is re-read.
    images_file, labels_file = FASHION_FILES[split]
    images = read_idx(Path(folder) / images_file)
    labels = read_idx(Path(folder) / labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SposError(
            f"Fashion-MNIST {split} files in {folder} disagree: images {list(images.shape)}, "
            f"labels {list(labels.shape)}; delete them and run `spos data fetch` again"
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


class TensorImages(Dataset):
    """Grey images held as an N x H x W uint8 tensor; items are normalised 1 x S x S floats.

    ``train=True`` flips horizontally with probability 0.5 (the only augmentation the small
    preset uses). ``input_size`` other than the stored size resizes bilinearly.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        train: bool,
        input_size: int | None = None,
        mean: float = FASHION_MEAN,
        std: float = FASHION_STD,
    ) -> None:
        self.images, self.labels, self.train = images, labels, train
        self.input_size = input_size or int(images.shape[-1])
        self.mean, self.std = mean, std
        self.num_classes = int(labels.max()) + 1 if len(labels) else 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch([i])
        return x[0], int(y[0])

    def batch(
        self, indices: Sequence[int] | torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` as an N x 1 x S x S normalised float batch, and their labels.

        Flips draw from ``generator`` (the global RNG when None), so a seeded generator makes a
        batch's augmentation reproducible, e.g. when a run resumes mid-epoch.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[idx].unsqueeze(1).float().div_(255.0)
        if self.train:
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
        if self.input_size != x.shape[-1]:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False)  # fmt: skip
        x = x.sub_(self.mean).div_(self.std)
        return x, self.labels[idx]


def builtin(split: str, train: bool, input_size: int | None = None) -> TensorImages:
    """Fashion-MNIST ``split`` ("train": 60k, "val": the 10k test split) from local IDX files."""
    folder = fashion_mnist_dir()
    mtime = max((folder / f).stat().st_mtime for f in FASHION_FILES[split])
    images, labels = _load_fashion(str(folder), split, mtime)
    return TensorImages(images, labels, train, input_size)
