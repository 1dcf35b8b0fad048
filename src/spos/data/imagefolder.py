"""ImageFolder trees (``ROOT/CLASS/IMAGE``) whose unreadable images are reported by path, and
the collate function that drops them from a batch."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import SposError

#: What PIL raises for a damaged or unknown image file.
UNREADABLE = (OSError, ValueError, SyntaxError)
ON_ERROR = ("skip", "fail")
#: The splits of a tree: ``ROOT/train/CLASS/IMAGE`` and ``ROOT/val/CLASS/IMAGE``.
SPLITS = ("train", "val")


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise SposError(f"on_error must be 'skip' or 'fail', got {on_error!r}")


def unreadable(name: str, e: Exception, on_error: str) -> None:
    """The item for an image that failed to load: raise :class:`SposError` naming it
    (``on_error="fail"``), else warn and return None, which :func:`collate_skipping` drops."""
    if on_error == "fail":
        raise SposError(
            f"unreadable image {name} ({type(e).__name__}: {e}); delete or replace it, or use on_error: skip"
        ) from None
    warnings.warn(f"skipping unreadable image {name} ({type(e).__name__}: {e})", stacklevel=3)
    return None


class ImageFolderData(Dataset):
    """A torchvision ImageFolder whose unreadable images are reported by path.

    ``loader`` turns a path into an image for ``transform`` (default: PIL, RGB; see
    :func:`spos.data.transforms.pipeline`). ``on_error="fail"`` raises :class:`SposError`
    naming the file; ``"skip"`` warns and yields None, which :func:`collate_skipping` drops and
    counts.
    """

    def __init__(self, root: Path, transform, on_error: str = "skip", loader: Callable | None = None) -> None:
        from torchvision.datasets import ImageFolder
        from torchvision.datasets.folder import default_loader

        check_on_error(on_error)
        if not root.is_dir():
            raise SposError(f"image folder {root} does not exist; expected {root}/CLASS/IMAGE files")
        try:
            self.folder = ImageFolder(str(root), transform=transform, loader=loader or default_loader)
        except (FileNotFoundError, RuntimeError) as e:
            raise SposError(
                f"image folder {root} holds no images ({str(e).splitlines()[0]}); expected "
                f"{root}/CLASS/IMAGE files"
            ) from None
        self.on_error = on_error
        self.classes = self.folder.classes
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        try:
            return self.folder[i]
        except UNREADABLE as e:
            return unreadable(self.folder.samples[i][0], e, self.on_error)


def collate_skipping(items: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the readable items of a batch; also return how many were skipped."""
    good = [it for it in items if it is not None]
    skipped = len(items) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    x = torch.stack([it[0] for it in good])
    y = torch.as_tensor([it[1] for it in good], dtype=torch.long)
    return x, y, skipped
