"""The default pipeline (decoder="tensor") against the reference (decoder="pil"): same decode,
same eval output, same augmentation distributions."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from spos.data import IMAGENET_MEAN, IMAGENET_STD, decode, pipeline
from spos.data.transforms import crop_box, jitter_

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
W, H, PERIOD = 256, 192, 16


def _scene(path, size=(W, H), seed=0, **save):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    img.save(path, **save)
    return path


def _marker(path):
    """G flat; R - G a left-to-right ramp (shows a flip); B - G a sine of period 16 px along x
    plus one along y (its zero crossings count the crop's width and height). Channel
    differences only scale under brightness, contrast and saturation, so the jitter hides none
    of it; the levels stay clear of 0 and 1, so no clamp does either."""
    x, y = np.arange(W)[None, :], np.arange(H)[:, None]
    g = np.full((H, W), 0.35)
    r = g + 0.3 * x / W
    b = g + 0.07 * np.sin(2 * np.pi * x / PERIOD) + 0.07 * np.sin(2 * np.pi * y / PERIOD)
    Image.fromarray((np.stack([r, g, b], -1) * 255).round().astype(np.uint8)).save(path)
    return path


def _crossings(v: np.ndarray) -> int:
    s = np.sign(v - v.mean())
    s = s[s != 0]
    return int((s[1:] != s[:-1]).sum())


def _geometry(out: torch.Tensor) -> tuple[float, float, bool]:
    """(crop area fraction, log aspect, flipped) of one output of the marker image."""
    r, g, b = (out * STD + MEAN).numpy()
    n = out.shape[-1]
    rows = cols = (n // 4, n // 2, 3 * n // 4)
    cw = PERIOD / 2 * np.mean([_crossings((b - g)[i]) for i in rows])
    ch = PERIOD / 2 * np.mean([_crossings((b - g)[:, j]) for j in cols])
    return cw * ch / (W * H), math.log(cw / ch), bool((r - g)[:, -1].mean() < (r - g)[:, 0].mean())


def _draws(decoder: str, path, n: int = 300) -> torch.Tensor:
    load, transform = pipeline(decoder, True, 128)
    img = load(path)
    torch.manual_seed(0)
    return torch.stack([transform(img) for _ in range(n)])


def test_training_outputs_match_the_reference_in_shape_crop_flip_and_colour_statistics(tmp_path):
    path = _marker(tmp_path / "marker.png")
    ref, new = _draws("pil", path), _draws("tensor", path)
    assert new.shape == ref.shape == (300, 3, 128, 128) and new.dtype == ref.dtype == torch.float32
    ref_geo, new_geo = np.array([_geometry(x) for x in ref]), np.array([_geometry(x) for x in new])
    assert abs(new_geo[:, 2].mean() - 0.5) < 0.1 and abs(ref_geo[:, 2].mean() - 0.5) < 0.1  # flips
    assert abs(new_geo[:, 0].mean() - ref_geo[:, 0].mean()) < 0.06  # crop area fraction
    assert abs(new_geo[:, 1].mean() - ref_geo[:, 1].mean()) < 0.05  # log aspect ratio
    assert abs(new_geo[:, 1].std() - ref_geo[:, 1].std()) < 0.05
    # Per channel, in normalised units; R varies most (the ramp), so sampling noise is ~0.05.
    dims = (0, 2, 3)
    assert torch.allclose(new.mean(dims), ref.mean(dims), atol=0.12)
    assert torch.allclose(new.std(dims), ref.std(dims), atol=0.1)


def test_with_the_same_draws_the_training_output_is_the_references_within_a_few_grey_levels(tmp_path):
    from torchvision.transforms import functional as TF

    from spos.data import TensorRecipe

    path = _scene(tmp_path / "a.jpg", quality=90)
    load, _ = pipeline("pil", True, 128)
    pil, recipe = load(path), TensorRecipe(True, 128)
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(40, (H, W), endpoint=True))
        box = (int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w)
        flip, factors, order = bool(rng.random() < 0.5), rng.uniform(0.6, 1.4, 3).tolist(), rng.permutation(3).tolist()
        ref = TF.resized_crop(pil, *box, [128, 128])
        ref = TF.hflip(ref) if flip else ref
        for k in order:
            ref = adjust[k](ref, factors[k])
        ref = TF.normalize(TF.to_tensor(ref), IMAGENET_MEAN, IMAGENET_STD)
        new = recipe.apply(decode(path), box, flip, factors, order)
        # PIL truncates to uint8 after each step, and later factors scale what earlier steps
        # lost: ~1.5 grey levels darker on average, up to ~7 where a pixel clamps.
        levels = ((new - ref) * STD).abs() * 255
        assert levels.mean() < 2 and levels.max() < 8


def test_decode_equals_pil_for_jpeg_png_bmp_and_grey_and_rejects_a_damaged_file(tmp_path):
    for name, save in (("a.jpg", {"quality": 90}), ("a.png", {}), ("a.bmp", {})):
        path = _scene(tmp_path / name, **save)
        expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(decode(path), expected) and torch.equal(decode(path.read_bytes()), expected)
    Image.open(tmp_path / "a.jpg").convert("L").save(tmp_path / "grey.jpg")
    grey = decode(tmp_path / "grey.jpg")
    assert grey.shape == (3, H, W) and torch.equal(grey[0], grey[2])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(OSError):
        decode(tmp_path / "bad.jpg")


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (1000, 90)])
def test_eval_output_equals_the_reference_within_one_grey_level(tmp_path, size):
    path = _scene(tmp_path / "a.jpg", size, quality=90)
    outs = []
    for decoder in ("pil", "tensor"):
        load, transform = pipeline(decoder, False, 224)
        outs.append(transform(load(path)))
    ref, new = outs
    assert new.shape == ref.shape == (3, 224, 224) and new.dtype == torch.float32
    assert (new - ref).abs().max() <= 1.01 / 255 / min(IMAGENET_STD)


def test_jitter_is_torchvisions_adjust_kernels_in_the_drawn_order():
    from torchvision.transforms.v2 import functional as F

    kernels = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)
    g = torch.Generator().manual_seed(0)
    for factors, order in (((1.3, 0.7, 1.4), (0, 1, 2)), ((0.6, 1.4, 0.8), (2, 0, 1)), ((1.4, 1.4, 0.6), (1, 2, 0))):
        x = torch.rand(3, 20, 30, generator=g)
        expected = x.clone()
        for k in order:
            expected = kernels[k](expected, factors[k])
        torch.testing.assert_close(jitter_(x.clone(), factors, order), expected, atol=1e-6, rtol=0)


def test_crop_box_falls_back_to_torchvisions_central_crop():
    from torchvision.transforms import RandomResizedCrop

    for h, w in ((10, 1000), (1000, 10)):  # no box of area >= 8 % and aspect 3/4-4/3 fits
        expected = RandomResizedCrop.get_params(torch.empty(3, h, w), [0.08, 1.0], [3 / 4, 4 / 3])
        assert crop_box(h, w, [0.5] * 40) == expected
    top, left, ch, cw = crop_box(300, 400, [0.0, 0.5, 0.999, 0.0] + [0.5] * 36)
    assert (ch, cw) == (98, 98) and top == 300 - 98 and left == 0  # 8 % of the area, square
