"""Image decoding and the SPEC §4 augmentation recipe, as two interchangeable pipelines.

A pipeline is ``(load, transform)``: ``load`` turns a file (path or bytes) into an image and
``transform`` that image into a normalised float32 3 x S x S tensor (:func:`pipeline`).

- ``decoder="tensor"`` (the default): libjpeg-turbo / libpng through ``torchvision.io`` straight
  into a uint8 tensor (:func:`decode`), then :class:`TensorRecipe`: torchvision's tensor kernels,
  every random number from one draw, the colour jitter in place on one float buffer. About 1.7x
  the images per core of the reference on ImageNet-sized JPEGs (`benchmarks/input_pipeline.py`).
- ``decoder="pil"``: the reference, PIL decode and torchvision's PIL transforms
  (:func:`recipe_transform`).

Both draw from torch's global RNG (so DataLoader workers' seeding applies) and share the recipe:
random-resized crop (area 0.08-1, aspect 3/4-4/3), horizontal flip p=0.5, colour jitter 0.4
(brightness, contrast, saturation in random order), ImageNet normalisation; eval: resize the short
side to 256/224 of the input size, centre crop.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import SposError

#: The standard ImageNet RGB statistics (SPEC §4).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CROP_SCALE, CROP_RATIO, JITTER = (0.08, 1.0), (3 / 4, 4 / 3), 0.4
DECODERS = ("tensor", "pil")
#: torchvision's RandomResizedCrop tries 10 random boxes before falling back to a central one.
_ATTEMPTS = 10
_DRAWS = 4 * _ATTEMPTS + 1 + 3 + 3  # per attempt (area, aspect, top, left); flip; 3 factors; order


def recipe_transform(train: bool, input_size: int = 224):
    """The reference pipeline's transform on PIL images: SPEC §4 random-resized crop (0.08-1),
    flip, colour jitter 0.4; eval: resize 256, centre crop 224 (both scaled to ``input_size``);
    ImageNet RGB normalisation."""
    from torchvision import transforms as T

    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return T.Compose([
            T.RandomResizedCrop(input_size, scale=CROP_SCALE, ratio=CROP_RATIO),
            T.RandomHorizontalFlip(),
            T.ColorJitter(JITTER, JITTER, JITTER),
            *normalize,
        ])  # fmt: skip
    return T.Compose([T.Resize(round(input_size * 256 / 224)), T.CenterCrop(input_size), *normalize])


def crop_box(height: int, width: int, u: Sequence[float], scale=CROP_SCALE, ratio=CROP_RATIO) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random-resized crop of a ``height`` x ``width`` image.

    torchvision's ``RandomResizedCrop.get_params`` with its random numbers taken from ``u``
    (4 uniforms in [0, 1) per attempt, 10 attempts): area a uniform fraction of ``scale``,
    log-uniform aspect in ``ratio``, uniform position; a central crop if no attempt fits.
    """
    area, lo, hi = height * width, math.log(ratio[0]), math.log(ratio[1])
    for a in range(_ATTEMPTS):
        ua, ur, ut, ul = u[4 * a : 4 * a + 4]
        target = area * (scale[0] + (scale[1] - scale[0]) * ua)
        aspect = math.exp(lo + (hi - lo) * ur)
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(ut * (height - h + 1)), int(ul * (width - w + 1)), h, w
    w, h = width, height
    if width / height < min(ratio):
        h = round(w / min(ratio))
    elif width / height > max(ratio):
        w = round(h * max(ratio))
    return (height - h) // 2, (width - w) // 2, h, w


def _gray(x: torch.Tensor) -> torch.Tensor:
    # torchvision's rgb_to_grayscale weights, so the jitter matches its adjust_* kernels.
    r, g, b = x.unbind(0)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)


def jitter_(x: torch.Tensor, factors: Sequence[float], order: Sequence[int]) -> torch.Tensor:
    """Colour jitter in place on a float 3 x H x W image in [0, 1].

    ``factors`` are (brightness, contrast, saturation), applied in ``order`` (indices into
    ``factors``); each step blends and clamps to [0, 1] exactly as torchvision's ``adjust_*``:
    brightness with black, contrast with the mean grey level, saturation with the grey image.
    """
    for k in order:
        f = float(factors[k])
        if k == 0:
            x.mul_(f)
        elif k == 1:
            mean = _gray(x).mean().item()
            x.mul_(f).add_((1 - f) * mean)
        else:
            grey = _gray(x)
            x.mul_(f).add_(grey.mul_(1 - f))
        x.clamp_(0, 1)
    return x


class TensorRecipe:
    """The recipe on a uint8 RGB 3 x H x W tensor (:func:`decode`); items are normalised float32
    3 x S x S tensors, as from :func:`recipe_transform`.

    Same distributions as the reference, fewer operations: the crop box, flip, jitter factors
    and jitter order come from one ``torch.rand`` call (the reference makes ~30), crop and resize
    run on uint8 with torchvision's antialiased kernel (PIL's bilinear filter), and one float
    buffer takes the jitter and the normalisation in place.
    """

    def __init__(self, train: bool, input_size: int = 224) -> None:
        self.train, self.size = train, input_size
        self.resize = round(input_size * 256 / 224)
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not self.train:
            from torchvision.transforms.v2 import functional as F

            img = F.center_crop(F.resize(img, [self.resize], antialias=True), [self.size, self.size])
            return _unit(img).sub_(self.mean).div_(self.std)
        u = torch.rand(_DRAWS).tolist()
        lo, hi = max(0.0, 1 - JITTER), 1 + JITTER
        order = sorted(range(3), key=u[-3:].__getitem__)  # a uniform random permutation
        box = crop_box(img.shape[-2], img.shape[-1], u)
        return self.apply(img, box, u[-7] < 0.5, [lo + (hi - lo) * v for v in u[-6:-3]], order)

    def apply(self, img: torch.Tensor, box: tuple[int, int, int, int], flip: bool,
              factors: Sequence[float], order: Sequence[int]) -> torch.Tensor:  # fmt: skip
        """The training transform with its random draws given: the crop ``box`` (top, left,
        h, w) resized to S x S, a horizontal ``flip``, then :func:`jitter_`, then normalisation."""
        from torchvision.transforms.v2 import functional as F

        img = F.resized_crop(img, *box, [self.size, self.size], antialias=True)
        if flip:
            img = img.flip(-1)
        return jitter_(_unit(img), factors, order).sub_(self.mean).div_(self.std)


def _unit(img: torch.Tensor) -> torch.Tensor:
    """uint8 C x H x W (any strides) to a new contiguous float32 tensor in [0, 1]."""
    return img.to(torch.float32, memory_format=torch.contiguous_format).div_(255)


def decode(source: str | os.PathLike | bytes) -> torch.Tensor:
    """An image file (path or bytes) as a uint8 RGB 3 x H x W tensor.

    JPEG, PNG, WebP and GIF (first frame) go through ``torchvision.io`` (libjpeg-turbo, libpng),
    the rest (BMP, TIFF, CMYK JPEGs, 16-bit PNGs) through PIL, as does everything once
    torchvision drops the decoders it deprecated in 0.29. A damaged file raises PIL's error (an
    ``OSError``), as the reference pipeline does.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = torch.frombuffer(bytearray(source), dtype=torch.uint8)
    else:
        with open(source, "rb") as f:
            raw = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    img = _torchvision_decode(raw)
    if img is None or img.dtype != torch.uint8:
        return _pil_tensor(pil_image(raw.numpy().tobytes()))
    return img[0] if img.ndim == 4 else img


def _torchvision_decode(raw: torch.Tensor) -> torch.Tensor | None:
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None
    with warnings.catch_warnings():  # the deprecation is handled: PIL takes over when they go
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_image(raw, mode=ImageReadMode.RGB)
        except RuntimeError:  # a format or variant libjpeg/libpng do not take, or a damaged file
            return None


def pil_image(source: str | os.PathLike | bytes):
    """An image file (path or bytes) as an RGB PIL image (torchvision ImageFolder's loader)."""
    from PIL import Image

    with open(source, "rb") if not isinstance(source, (bytes, bytearray)) else io.BytesIO(source) as f:
        return Image.open(f).convert("RGB")


def _pil_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def pipeline(decoder: str, train: bool, input_size: int) -> tuple[Callable, Callable]:
    """``(load, transform)`` of ``decoder`` ("tensor" or "pil"), for the training augmentation
    (``train=True``) or the eval transform."""
    if decoder == "tensor":
        return decode, TensorRecipe(train, input_size)
    if decoder == "pil":
        return pil_image, recipe_transform(train, input_size)
    raise SposError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
