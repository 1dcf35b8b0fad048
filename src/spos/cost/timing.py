"""Timing models on a backend (torch eager or onnxruntime): median wall time, interleaved
rounds so that a slow spell of a shared machine hits every model alike.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SposError
from ..nn.fold import fold_bn
from ..nn.onnx import ort_session, write_onnx


def median_ms(fn: Callable[[], object], warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def onnx_latency(
    path: str | os.PathLike | bytes,
    input_shape: Sequence[int],
    threads: int = 2,
    warmup: int = 5,
    repeats: int = 30,
    batch_size: int = 1,
) -> float:
    """Median ms of one onnxruntime run on a (batch_size, *input_shape) random input."""
    return median_ms(ort_runner(path, input_shape, threads, batch_size), warmup, repeats)


def ort_runner(
    model: str | os.PathLike | bytes,
    input_shape: Sequence[int],
    threads: int,
    batch_size: int,
    device: str = "cpu",
) -> Callable[[], object]:
    """A new session on ``model`` and a function running it on a fixed random input."""
    session = ort_session(model, threads, device)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


class Timer:
    """Times modules on one backend/device: torch eager or onnxruntime (exported in memory).

    ``prepare(module, shape)`` does the one-off work (BN folding, export, session) and returns a
    runner; ``time(runner)`` is its median ms. Keeping runners lets a caller measure many
    models in interleaved rounds, so a slow spell of a shared machine hits all of them alike.
    """

    def __init__(
        self, backend: str, device: str, threads: int, warmup: int, repeats: int, batch_size: int
    ) -> None:
        if backend not in ("torch", "onnxruntime"):
            raise SposError(f"unknown backend {backend!r}; choose torch or onnxruntime")
        if device not in ("cpu", "cuda"):
            raise SposError(f"unknown device {device!r}; choose cpu or cuda")
        if device == "cuda" and backend == "torch" and not torch.cuda.is_available():
            raise SposError("--device cuda needs a CUDA GPU visible to torch; use --device cpu")
        self.backend, self.device, self.threads = backend, device, threads
        self.warmup, self.repeats, self.batch_size = warmup, repeats, batch_size

    def prepare(self, module: nn.Module, input_shape: Sequence[int]) -> Callable[[], Callable]:
        """The one-off work for ``module``; returns a factory of runners for :meth:`time`.

        onnxruntime gets a fresh session per timing: an idle session's thread pool would spin
        beside the one being timed.
        """
        module = fold_bn(module)
        if self.backend == "onnxruntime":
            buf = io.BytesIO()
            write_onnx(module, buf, input_shape)
            onnx_bytes = buf.getvalue()
            return lambda: ort_runner(
                onnx_bytes, input_shape, self.threads, self.batch_size, self.device
            )
        dev = torch.device(self.device)
        module = module.to(dev)
        x = torch.randn((self.batch_size, *input_shape), device=dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def run() -> None:
            module(x)
            sync()  # CUDA kernels are asynchronous: time their completion, not their launch

        return lambda: run

    def time(self, runner: Callable[[], Callable]) -> float:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return median_ms(runner(), self.warmup, self.repeats)
        finally:
            torch.set_num_threads(previous)

    def interleaved(self, jobs: dict, rounds: int) -> dict:
        """``{key: (module, shape)}`` -> ``{key: ms}``: the median over ``rounds`` passes
        that each time every job once, with its warm-up."""
        runners = {k: self.prepare(m, shape) for k, (m, shape) in jobs.items()}
        times: dict = {k: [] for k in jobs}
        for _ in range(rounds):
            for k, runner in runners.items():
                times[k].append(self.time(runner))
        return {k: float(statistics.median(v)) for k, v in times.items()}


class Empty(nn.Module):
    """The cheapest model a backend can run: measures its per-call overhead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0  # onnx needs at least one node
