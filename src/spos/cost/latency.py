"""The latency lookup table (SPEC §6): measured ms of every (position, block, channel gene),
stem and head on one device and backend, fitted to whole networks; a cost model like the
exact table.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ..errors import SposError
from ..space import Arch, SearchSpace
from .model import PartCost, part_array, parts
from .timing import Empty, Timer


@dataclass
class LatencyTable:
    """Measured latency (ms) of every (position, block, channel gene), the stem and the head.

    ``predict(arch)`` is the runtime's fixed per-call ``overhead_ms`` plus ``scale`` times the
    sum of the stem, the head and the arch's 20 block entries. Each entry is measured as a
    separate model, so the per-call overhead of a model with the same input is subtracted from
    each entry and the network's is added back once. Parts measured alone run with warm caches
    and no layout hand-over between them, so their sum under-predicts a whole network by a
    steady fraction (about 17% for onnxruntime on a 2-core CPU): ``scale`` is fitted on a few
    whole random subnets measured at build time (median ratio). Channel genes the space does not
    allow are not measured (None).
    """

    space: SearchSpace
    device: str
    backend: str
    threads: int
    batch_size: int
    overhead_ms: float
    stem_ms: float
    head_ms: float
    blocks: list[list[list[float | None]]]  # [position][block gene][channel gene]
    scale: float = 1.0  # whole network / sum of parts, fitted on calibration subnets
    #: Held-out whole subnets timed in the build's own rounds: {"arch", "measured_ms", "predicted_ms"}.
    checks: list[dict] = field(default_factory=list)
    _model: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (key, PartCost)

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        device: str = "cpu",
        backend: str = "torch",
        threads: int = 2,
        warmup: int = 3,
        repeats: int = 10,
        batch_size: int = 1,
        progress: Callable[[str], None] | None = None,
        calibration_archs: int = 5,
        rounds: int = 3,
        check_archs: int = 0,
    ) -> LatencyTable:
        """Measure every part of ``space`` (positions after the first in a stage are alike) and
        ``calibration_archs`` whole random subnets, which fit :attr:`scale` (0: no fit), in
        ``rounds`` interleaved passes; each figure is the median over the passes.

        ``check_archs`` more random subnets, not used for the fit, are timed in the same rounds
        and kept in :attr:`checks` with their predictions: the table's own test of accuracy,
        which a later measurement could not give if the machine's speed changed in between.

        Longer than a screen: one measurement plan read top to bottom (jobs, rounds, fit, checks).
        """
        from ..genes import sample
        from ..nn.supernet import SubNet

        timer = Timer(backend, device, threads, warmup, repeats, batch_size)
        image = (space.input_channels, space.input_size, space.input_size)
        jobs: dict[tuple, tuple[nn.Module, tuple]] = {
            key: (module, shape) for key, module, shape in parts(space, space.channel_genes)
        }
        # Each part runs as its own model: the per-call cost of a model with the same input
        # (feeding and returning tensors of that size) is taken off, and added back once.
        shapes = {shape for _, shape in jobs.values()}
        jobs.update({("empty", shape): (Empty(), shape) for shape in shapes})
        rng = random.Random(0x5EED)  # its own stream: benchmarks test on other archs
        calib = [sample(space, rng) for _ in range(calibration_archs)]
        jobs.update({("whole", i): (SubNet(space, a), image) for i, a in enumerate(calib)})
        check_rng = random.Random(0xC4EC)  # a third stream: neither calibration nor benchmarks
        held_out = [sample(space, check_rng) for _ in range(check_archs)]
        jobs.update({("check", i): (SubNet(space, a), image) for i, a in enumerate(held_out)})
        if progress:
            progress(f"measuring {len(jobs)} models x {rounds} interleaved rounds")
        ms = timer.interleaved(jobs, rounds)
        part = {k: max(v - ms[("empty", jobs[k][1])], 0.0) for k, v in ms.items()}
        entries = part_array(space, part.get, float, np.nan)  # NaN: channel genes not measured
        blocks = [[[None if math.isnan(v) else v for v in row] for row in pos] for pos in entries.tolist()]
        overhead = ms[("empty", image)]
        table = cls(space, device, backend, threads, batch_size, overhead, part[("stem",)],
                    part[("head",)], blocks)  # fmt: skip
        table._calibrate(calib, [part[("whole", i)] for i in range(len(calib))], progress)
        table.checks = [
            {"arch": str(a), "measured_ms": ms[("check", i)], "predicted_ms": table.predict(a)}
            for i, a in enumerate(held_out)
        ]
        return table

    def _calibrate(self, archs: list[Arch], measured: list[float], progress=None) -> None:
        """Fit :attr:`scale`: the median ratio of whole subnets' measured time (overhead taken
        off) to the sum of their parts."""
        if not archs:
            return
        ratios = [m / max(self.predict(a) - self.overhead_ms, 1e-9) for a, m in zip(archs, measured)]
        self.scale = float(statistics.median(ratios))
        if progress:
            progress(f"calibrated on {len(archs)} whole subnets: scale {self.scale:.3f}")

    def check_errors(self) -> list[float]:
        """Relative error (predicted - measured) / measured of each held-out check subnet."""
        return [(c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"] for c in self.checks]

    @property
    def model(self) -> PartCost:
        """This table as a :class:`~spos.cost.model.PartCost` (ms; NaN for unmeasured parts),
        rebuilt when a field it reads is replaced (edit :attr:`blocks` by replacing the list)."""
        key = (self.overhead_ms, self.scale, self.stem_ms, self.head_ms, id(self.blocks))
        if self._model is None or self._model[0] != key:
            blocks = np.asarray([[[np.nan if v is None else v for v in row] for row in pos] for pos in self.blocks],
                                dtype=float)  # fmt: skip
            base = self.overhead_ms + self.scale * (self.stem_ms + self.head_ms)
            self._model = (key, PartCost(base, self.scale * blocks, "ms", "latency"))
        return self._model[1]

    def predict_batch(self, genes: np.ndarray) -> np.ndarray:
        """Predicted ms of each candidate in an int array of shape (B, 2N); an unmeasured part
        (a channel gene outside the table's space) is an error naming it, as in :meth:`predict`."""
        genes = np.asarray(genes)
        if genes.ndim != 2 or genes.shape[1] != 2 * self.space.num_blocks:
            raise SposError(f"the latency table prices {self.space.num_blocks}-block archs (genes of shape "
                            f"(B, {2 * self.space.num_blocks})), got shape {genes.shape}; use a table "
                            f"built for this search space")  # fmt: skip
        return self.model.predict_batch(genes)

    def predict(self, arch: Arch) -> float:
        """Predicted latency of ``arch`` in milliseconds: ``overhead_ms + scale * (stem_ms +
        head_ms + the arch's block entries)``."""
        arch.validate(self.space)
        return self.model.predict(arch)

    def to_dict(self) -> dict:
        return {
            "kind": "spos-latency-table",
            "unit": "ms",
            "space": self.space.to_dict(),
            "device": self.device,
            "backend": self.backend,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "overhead_ms": self.overhead_ms,
            "stem_ms": self.stem_ms,
            "head_ms": self.head_ms,
            "blocks": self.blocks,
            "scale": self.scale,
            "checks": self.checks,
        }

    def save(self, path: str | os.PathLike) -> None:
        from ..runs import atomic_write_json
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        p = Path(path)
        if not p.is_file():
            raise SposError(
                f"latency table {p} does not exist; build one with `spos latency-table --out {p}`"
            )
        try:
            d = json.loads(p.read_text())
            if d.get("kind") != "spos-latency-table":
                raise ValueError("not a spos latency table")
            space = SearchSpace.from_dict(d["space"])
            blocks = [
                [
                    [
                        None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                        for v in row
                    ]
                    for row in pos
                ]
                for pos in d["blocks"]
            ]
            if len(blocks) != space.num_blocks:
                raise ValueError(f"{len(blocks)} positions for a {space.num_blocks}-block space")
            return cls(
                space,
                d["device"],
                d["backend"],
                int(d["threads"]),
                int(d["batch_size"]),
                float(d["overhead_ms"]),
                float(d["stem_ms"]),
                float(d["head_ms"]),
                blocks,
                float(d.get("scale", 1.0)),
                [
                    {"arch": str(c["arch"]), "measured_ms": float(c["measured_ms"]),
                     "predicted_ms": float(c["predicted_ms"])}
                    for c in d.get("checks", [])
                ],  # fmt: skip
            )
        except (ValueError, KeyError, TypeError) as e:
            raise SposError(
                f"{p} is not a spos latency table ({e}); build one with `spos latency-table`"
            ) from None


def measure_models_ms(
    models: Sequence[nn.Module],
    input_shape: Sequence[int],
    backend: str = "torch",
    device: str = "cpu",
    threads: int = 2,
    warmup: int = 3,
    repeats: int = 10,
    rounds: int = 3,
    batch_size: int = 1,
) -> list[float]:
    """Median ms of each whole (BN-folded) model, measured like the latency table's entries:
    in ``rounds`` interleaved passes, each figure the median over them."""
    timer = Timer(backend, device, threads, warmup, repeats, batch_size)
    ms = timer.interleaved({i: (m, tuple(input_shape)) for i, m in enumerate(models)}, rounds)
    return [ms[i] for i in range(len(models))]
