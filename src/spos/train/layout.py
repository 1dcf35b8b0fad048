"""The memory format a run trains in, chosen on the host it runs on (``channels_last: auto``).

Which layout is faster depends on the host and the model, not on a rule: on the 2-core AVX-512
host the small preset's sliced supernet step ran 1.4x faster in channels_last, on an AVX2 host
NCHW was ahead before spos's depthwise fast paths, and on a GPU with AMP channels_last usually
wins. :func:`time_layouts` times a few training steps of each on a copy of the model (the run's
own weights, BN statistics and RNG streams are not touched) and returns both rates, so a run
records why it chose what it did.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..space import Arch

#: Formats timed by ``channels_last: auto``, in the order they are tried.
LAYOUTS = ("channels_last", "contiguous")


def time_layouts(
    model: nn.Module,
    shape: tuple[int, int, int, int],
    device: torch.device,
    paths: Sequence[Arch | None] = (None,),
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    steps: int = 3,
    rounds: int = 2,
) -> dict[str, float]:
    """Images per second of a forward + backward pass in each of :data:`LAYOUTS`, on a deep copy
    of ``model`` with random inputs of ``shape`` (one micro-batch), cycling through ``paths``.

    Each layout gets one untimed warm-up step, then ``rounds`` alternating rounds of ``steps``
    timed steps (alternating, so a burst of load on a shared host hits both); the rate is the
    best round's.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device)
    y = torch.randint(0, 2, (shape[0],), generator=gen).to(device)
    nets = {}
    for name in LAYOUTS:
        net = copy.deepcopy(model).train()
        fmt = torch.channels_last if name == "channels_last" else torch.contiguous_format
        nets[name] = (net.to(memory_format=fmt), x.contiguous(memory_format=fmt))

    def step(name: str, i: int) -> None:
        net, xi = nets[name]
        arch = paths[i % len(paths)]
        with autocast():
            out = net(xi, arch) if arch is not None else net(xi)
        nn.functional.cross_entropy(out.float(), y).backward()
        net.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = dict.fromkeys(LAYOUTS, 0.0)
    for name in LAYOUTS:
        step(name, 0)
    for _ in range(rounds):
        for name in LAYOUTS:
            sync()
            t0 = time.perf_counter()
            for i in range(steps):
                step(name, i)
            sync()
            best[name] = max(best[name], steps * shape[0] / (time.perf_counter() - t0))
    return best


def choose_layout(rates: dict[str, float]) -> bool:
    """True (channels_last) unless NCHW was measured faster."""
    return rates["channels_last"] >= rates["contiguous"]
