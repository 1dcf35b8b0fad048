"""The GPU path in one short run: training img/s of the supernet and of a subnet at 224 (fp32,
AMP bf16, AMP bf16 + channels_last, AMP fp16 with GradScaler) on synthetic data, and JPEG decode
img/s (nvjpeg batched ``decode_jpeg(device="cuda")`` against one CPU core).

    python benchmarks/gpu_path.py                       # on a CUDA machine, about 3 minutes
    python benchmarks/gpu_path.py --device cpu --quick  # smoke check of the code paths (no GPU)

Each training variant runs the same optimizer step the trainer runs (SGD with Nesterov, label
smoothing 0.1, autocast around the forward, GradScaler only for fp16): the supernet with a new
uniform path every step (as in supernet training), the subnet as the SPEC's OneShot arch. What
limits a variant is read from the batch-doubling ratio printed beside it: img/s at 2× the batch
over img/s at the batch. Near 2× means the step is bound by per-kernel launch and Python overhead
(small kernels: the GPU waits on the CPU), near 1× means the GPU's arithmetic or memory is the
limit. Decode is timed on generated ImageNet-like JPEGs (500×375, quality 90) read from memory,
so the disk is not in it; the CPU figure is one core, the nvjpeg figure the whole GPU.
"""

from __future__ import annotations

import argparse
import io
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import decode_jpeg

import spos  # noqa: F401  (sets oneDNN's kernel cache size before the first conv)
from spos.nn.supernet import SubNet, SuperNet
from spos.sampling.samplers import build_sampler
from spos.space import SearchSpace
from spos.zoo import get as zoo

#: name -> (autocast dtype or None, channels_last, GradScaler)
VARIANTS = {
    "fp32": (None, False, False),
    "bf16": (torch.bfloat16, False, False),
    "bf16 + channels_last": (torch.bfloat16, True, False),
    "fp16 + GradScaler + channels_last": (torch.float16, True, True),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(model, space, device, batch, steps, warmup, dtype, channels_last, scaled, paths=None) -> float:
    """img/s of ``steps`` training steps after ``warmup`` untimed ones (``paths``: one per step)."""
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True, weight_decay=4e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=scaled)
    x = torch.randn(batch, space.input_channels, space.input_size, space.input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,), device=device)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(x) if paths is None else model(x, paths[i % len(paths)])
            loss = F.cross_entropy(out.float(), y, label_smoothing=0.1)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for i in range(warmup):
        step(i)
    sync(device)
    t = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync(device)
    return batch * steps / (time.perf_counter() - t)


def training(args, device: torch.device) -> None:
    space = SearchSpace(input_size=args.size)
    entry = zoo("oneshot")
    subnet_space = entry.space(input_size=args.size)
    sampler = build_sampler(space, "uniform", seed=0)
    paths = [sampler.sample() for _ in range(args.steps + args.warmup)]
    print(f"training, {args.size}x{args.size}, {args.steps} timed steps after {args.warmup}; "
          f"batch-doubling ratio = img/s at batch {2 * args.batch} / at batch {args.batch}")  # fmt: skip
    for name, (dtype, cl, scaled) in VARIANTS.items():
        if dtype is not None and device.type == "cpu" and dtype == torch.float16:
            continue  # fp16 autocast is a GPU path
        for label, make, sp, p in (("supernet (uniform paths)", lambda: SuperNet(space), space, paths),
                                   ("subnet (OneShot)", lambda: SubNet(subnet_space, entry.arch), subnet_space, None)):  # fmt: skip
            torch.manual_seed(0)
            model = make()
            rates = [train_rate(model, sp, device, b, args.steps, args.warmup, dtype, cl, scaled, p)
                     for b in (args.batch, 2 * args.batch)]  # fmt: skip
            print(f"  {label:<26} {name:<34} {rates[0]:>9.0f} img/s   batch x2: {rates[1] / rates[0]:.2f}x")
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()


def jpegs(n: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """``n`` ImageNet-like JPEGs (smooth colour fields plus texture noise), quality 90."""
    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for _ in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(xx / rng.uniform(20, 80) + c) * np.cos(yy / rng.uniform(20, 80)) for c in range(3)], -1)
        img = (127 + 90 * base + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def decoding(args, device: torch.device) -> None:
    files = jpegs(args.images, (500, 375))
    data = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in files]
    torch.set_num_threads(1)
    t = time.perf_counter()
    for d in data:
        decode_jpeg(d)
    cpu = len(data) / (time.perf_counter() - t)
    print(f"decode, {len(data)} JPEGs 500x375 q90 from memory\n  CPU decode_jpeg, 1 core {cpu:>17.0f} img/s")
    if device.type != "cuda":
        print("  nvjpeg: no CUDA device here (run on a GPU machine)")
        return
    for batch in (1, args.decode_batch):
        decode_jpeg(data[:batch], device=device)  # warm-up: nvjpeg handles and buffers
        sync(device)
        t = time.perf_counter()
        for i in range(0, len(data), batch):
            decode_jpeg(data[i : i + batch], device=device)
        sync(device)
        gpu = len(data) / (time.perf_counter() - t)
        print(f"  nvjpeg decode_jpeg(device='cuda'), batch {batch:<4} {gpu:>8.0f} img/s  ({gpu / cpu:.1f} CPU cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--images", type=int, default=1024, help="JPEGs to decode")
    ap.add_argument("--decode-batch", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check of the code paths")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.size, args.steps, args.warmup, args.images, args.decode_batch = 4, 64, 2, 1, 8, 4
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_path: no CUDA device; run it on a GPU machine, or pass --device cpu --quick")
    random.seed(0)
    torch.backends.cudnn.benchmark = True
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version() if device.type == 'cuda' else '-'}")  # fmt: skip
    training(args, device)
    decoding(args, device)


if __name__ == "__main__":
    main()
