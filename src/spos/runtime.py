"""Process-level plumbing shared by every long run: the device, the torchrun process group,
RNG states as checkpoint-safe values, seeds derived from several ints, and K/M/G numbers.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

import numpy as np
import torch
import torch.distributed as dist

from .errors import SposError


def parse_amount(text: str) -> float:
    """A number with an optional K/M/G suffix (330M, 3.4e6, 2.5K); ValueError otherwise."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text.strip()[-1:].lower(), 1.0)
    return float(text.strip()[:-1] if scale != 1.0 else text) * scale


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> None:
    """Join the ``torchrun`` process group (gloo on CPU, NCCL on GPU) if there is one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def end_distributed(clean: bool = True) -> None:
    """Leave the ``torchrun`` process group, if this process is in one.

    After a clean run every rank first meets the others at a barrier, so that no rank closes its
    connections while another still sends on them or tears its own down (gloo aborts a process
    whose peer vanished mid-teardown). After an error there is no one to wait for."""
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def start_process(device: str = "auto") -> tuple[torch.device, int, int]:
    """``(device, rank, world size)`` of this process: :func:`resolve_device`, then
    :func:`init_distributed`. Every long run starts with this call.

    Rank and world size come from the torchrun environment (RANK, WORLD_SIZE), not from an
    existing process group: a caller that hides that environment (``spos fidelity``'s
    stand-alone runs, each trained on one rank) gets a single-process run inside a group."""
    dev = resolve_device(device)
    init_distributed(dev)
    return dev, int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def random_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def random_state_from_json(obj: list) -> tuple:
    return (obj[0], tuple(obj[1]), obj[2])


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: this rank's GPU under torchrun (LOCAL_RANK) or the only one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SposError(f"device {device} requested but no GPU is available; pass --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return dev


def seed_of(*parts: int) -> int:
    """One 63-bit seed from several ints (seed, epoch, step, ...), stable across runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def global_rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator_state(rng: np.random.Generator) -> dict:
    s = rng.bit_generator.state
    # PCG64's 128-bit integers go in as decimal strings: plain, exact, weights_only-safe.
    return {"bit_generator": s["bit_generator"], "state": str(s["state"]["state"]),
            "inc": str(s["state"]["inc"]), "has_uint32": int(s["has_uint32"]),
            "uinteger": int(s["uinteger"])}  # fmt: skip


def set_generator_state(rng: np.random.Generator, d: Mapping) -> None:
    rng.bit_generator.state = {
        "bit_generator": str(d["bit_generator"]),
        "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]),
        "uinteger": int(d["uinteger"]),
    }


class StopSignals:
    """Turns SIGTERM and SIGINT into a flag that training and search loops poll between steps
    (cluster preemption sends SIGTERM, then SIGKILL after a grace period). A second SIGINT
    interrupts at once (KeyboardInterrupt), for a user at a terminal. Outside the main thread
    (where handlers cannot be installed) it is a flag nobody sets. Re-entrant: nested uses share
    the outermost handlers."""

    _depth = 0
    _signal: int | None = None
    _saved: dict = {}

    def __enter__(self) -> StopSignals:
        import signal
        import threading

        cls = type(self)
        if cls._depth == 0 and threading.current_thread() is threading.main_thread():
            cls._signal = None
            cls._saved = {s: signal.signal(s, cls._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        cls._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        import signal

        cls = type(self)
        cls._depth -= 1
        if cls._depth == 0:
            for s, handler in cls._saved.items():
                signal.signal(s, handler)
            cls._saved = {}

    @classmethod
    def _handle(cls, signum, frame) -> None:
        import signal

        if cls._signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cls._signal = signum

    @property
    def requested(self) -> bool:
        return type(self)._signal is not None

    @property
    def name(self) -> str:
        import signal

        # A rank stopped by agreement (another rank got the signal) says so.
        return "a stop signal on another rank" if self._signal is None else signal.Signals(self._signal).name


def agree(flags: list[bool], device: torch.device | str | None = None) -> list[bool]:
    """Each flag true on any rank, on every rank (one MAX all-reduce); the flags themselves
    without a process group. Every rank must call it at the same point. ``device`` defaults to
    the backend's (CUDA for NCCL)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(flags)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
