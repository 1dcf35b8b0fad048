"""ImageNet input pipeline speed: img/s per CPU core of the training transform, per decode path.

Writes ``--images`` ImageNet-like JPEGs (``--size``, default 500x375, quality 90, ~100 kB: a
smooth random scene plus grain) into a temporary ImageFolder of ``--classes`` class folders,
then times the SPEC §4 training transform at ``--input-size`` (random-resized crop, flip,
colour jitter, normalise) one image at a time in this process, with 1 torch thread and no
DataLoader workers, for each path:

- ``pil``          today's reference: PIL decode + torchvision's PIL transforms (``decoder="pil"``)
- ``pil-draft``    the same with JPEG draft-mode (DCT) downscaling before the crop: the crop box
                   is sampled on the full-size image, then the largest draft reduction (1/2, 1/4,
                   1/8) that keeps the box >= input size on its short side is used, and the box
                   mapped onto the smaller image
- ``v2``           torchvision.io.decode_jpeg + a stock torchvision.transforms.v2 Compose
- ``pil+tensor``   PIL decode + spos's tensor recipe (what ``decoder="tensor"`` falls back to
                   without torchvision.io's decoders)
- ``tensor``       spos's default ``decoder="tensor"``: torchvision.io.decode_image + TensorRecipe
- ``packed/...``   the same two decoders reading the folder `spos data pack` wrote from the tree
                   (short side ``--short-side``), through ``spos.data.dataset``

Speeds are images per second of this process's CPU time (one core), so that other jobs on a
shared machine inflate them less than wall time would; the wall-time rate is shown beside them.
The images are split into ``--rounds`` chunks and the paths take turns on each chunk, so load
changes hit every path alike. "Cores per GPU" is the number of such cores one GPU training at
``--gpu-img-s`` images per second would need (assumed supernet training rates, not measured).

    python benchmarks/input_pipeline.py                    # 2,000 images, ~2 min on one core
    python benchmarks/input_pipeline.py --images 300       # quick look
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision  # noqa: F401  (imported before the clocks start: ~5 s on a busy machine)
from PIL import Image

from spos.data import IMAGENET_MEAN, IMAGENET_STD, dataset, pack
from spos.data.transforms import CROP_RATIO, CROP_SCALE, JITTER, TensorRecipe


def write_images(root: Path, n: int, classes: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` JPEGs (quality 90) of ``size`` (W, H) spread over ``classes`` folders under ``root``."""
    rng = np.random.default_rng(seed)
    w, h = size
    grain = rng.normal(0, 16, (2 * h, 2 * w, 3)).astype(np.float32)  # a random window of it per image
    paths = []
    for i in range(n):
        d = root / f"class{i % classes:03d}"
        d.mkdir(parents=True, exist_ok=True)
        scene = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        y, x = rng.integers(0, h), rng.integers(0, w)
        pixels = np.asarray(scene, dtype=np.float32) + grain[y : y + h, x : x + w]
        path = d / f"{i:06d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def pil_draft(size: int):
    """The reference training transform with JPEG draft-mode downscaling before the crop."""
    from torchvision import transforms as T

    tail = T.Compose([T.RandomHorizontalFlip(), T.ColorJitter(JITTER, JITTER, JITTER), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])  # fmt: skip

    def load(path):
        im = Image.open(path)  # reads the header only: the full size, no pixels yet
        full_w, full_h = im.size
        top, left, h, w = T.RandomResizedCrop.get_params(im, list(CROP_SCALE), list(CROP_RATIO))
        k = next((k for k in (8, 4, 2) if min(h, w) / k >= size), 1)
        if k > 1:
            im.draft("RGB", (math.ceil(full_w / k), math.ceil(full_h / k)))  # scales by 1/k or less
        sx, sy = im.size[0] / full_w, im.size[1] / full_h
        assert k == 1 or min(h * sy, w * sx) >= size, "the draft must keep the crop >= the output size"
        box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        img = im.convert("RGB").resize((size, size), Image.BILINEAR, box=box)
        return tail(img)

    return load


def v2_stock(size: int):
    """torchvision.io.decode_jpeg + a stock torchvision.transforms.v2 pipeline."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    tf = v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.ColorJitter(JITTER, JITTER, JITTER),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])  # fmt: skip
    return lambda path: tf(decode_jpeg(read_file(str(path))))


def pil_then_tensor(size: int):
    """PIL decode, then spos's tensor recipe."""
    recipe = TensorRecipe(True, size)
    return lambda path: recipe(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))


def by_index(ds):
    return lambda i: ds[i][0]


def by_path(transform, files: list[Path]):
    return lambda i: transform(files[i])


def time_paths(paths: dict, n: int, rounds: int) -> dict[str, tuple[float, float]]:
    """``{name: (cpu s, wall s)}`` of running each path on items 0..n-1, in turns per chunk."""
    spent = {name: [0.0, 0.0] for name in paths}
    for fn in paths.values():  # warm-up: imports, allocator, first-call set-up
        for i in range(min(5, n)):
            fn(i)
    bounds = np.linspace(0, n, rounds + 1).astype(int)
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, cpu, wall = paths[name], time.process_time(), time.perf_counter()
            for i in range(bounds[r], bounds[r + 1]):
                out = fn(i)
            spent[name][0] += time.process_time() - cpu
            spent[name][1] += time.perf_counter() - wall
            assert out.shape == (3, out.shape[-1], out.shape[-1]) and out.dtype == torch.float32
    return {k: (v[0], v[1]) for k, v in spent.items()}


def report(spent: dict, n: int, gpu_rates: list[int]) -> None:
    base = n / spent["pil"][0]
    print(f"{'path':14s} {'img/s/core':>10s} {'(wall)':>8s} {'vs pil':>7s}   cores per GPU at "
          + "  ".join(f"{r:>6d}" for r in gpu_rates) + " img/s")  # fmt: skip
    for name, (cpu, wall) in spent.items():
        rate = n / cpu
        cores = "  ".join(f"{r / rate:6.1f}" for r in gpu_rates)
        print(f"{name:14s} {rate:10.0f} {n / wall:8.0f} {rate / base:6.2f}x   {' ' * 17}{cores}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="JPEGs to generate and time")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--size", default="500x375", help="W x H of the generated JPEGs")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--short-side", type=int, default=256, help="of the packed images")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--gpu-img-s", type=int, nargs="+", default=[2000, 5000, 10000],
                   help="assumed supernet training rates of one GPU")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    w, h = (int(v) for v in args.size.lower().split("x"))
    s = args.input_size
    with tempfile.TemporaryDirectory(prefix="spos-input-") as tmp:
        t = time.perf_counter()
        files = write_images(Path(tmp) / "tree" / "train", args.images, args.classes, (w, h))
        kb = sum(f.stat().st_size for f in files) / len(files) / 1000
        print(f"torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}, "
              f"{torch.get_num_threads()} torch thread, no DataLoader workers")  # fmt: skip
        print(f"{len(files)} JPEGs {w}x{h} q90 (mean {kb:.0f} kB) in {args.classes} classes, "
              f"written in {time.perf_counter() - t:.0f} s; output {s}x{s}")  # fmt: skip
        cpu = time.process_time()
        pack(Path(tmp) / "tree", Path(tmp) / "packed", shard_size=500, short_side=args.short_side, log=lambda m: None)
        print(f"spos data pack (short side {args.short_side}): {len(files) / (time.process_time() - cpu):.0f} img/s/core")
        tree = str(Path(tmp) / "tree")
        packed = str(Path(tmp) / "packed")
        # Item i is the same image on every path (a packed folder reads in its tree's order).
        paths = {
            "pil": by_index(dataset(tree, "train", True, s, decoder="pil")),
            "pil-draft": by_path(pil_draft(s), files),
            "v2": by_path(v2_stock(s), files),
            "pil+tensor": by_path(pil_then_tensor(s), files),
            "tensor": by_index(dataset(tree, "train", True, s, decoder="tensor")),
            "packed/pil": by_index(dataset(packed, "train", True, s, decoder="pil")),
            "packed/tensor": by_index(dataset(packed, "train", True, s, decoder="tensor")),
        }
        spent = time_paths(paths, len(files), args.rounds)
    report(spent, len(files), args.gpu_img_s)


if __name__ == "__main__":
    main()
