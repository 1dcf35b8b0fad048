"""What an architecture costs, given as an arch string or zoo name: its totals (what ``spos
count`` prints) and its op-by-op table (what ``spos profile`` prints; see docs/profiling.md).

Units: MACs and multiplies/adds per forward pass of one image; params are weights (and biases)
counted one each. The Σ normalized score is MACs/328M + params/3.4M, the MicroNet score
params/6.9M + (mults + adds)/1170M (SPEC §3).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import zoo
from ..cost.counting import OpRow, count_micronet, micronet_score, profile
from ..cost.table import cost_table
from ..nn.supernet import SubNet
from ..space import BLOCK_NAMES, SCALES, SearchSpace

#: The columns of a profile row, in table and CSV order.
COLUMNS = ("name", "op", "input_shape", "kernel", "cin", "cout", "params", "mults", "adds", "macs",
           "quantizable")  # fmt: skip


def count_arch(text: str, space: SearchSpace | None = None) -> dict:
    """MACs, params and scores of an arch string or zoo name, as one JSON-ready dict.

    ``macs`` and ``params`` follow SPEC §3 (BN unfolded, per image at ``space.input_size``);
    ``micronet_*`` count with BN folded into the convs. ``space`` is the space an arch string is
    parsed against (zoo names carry their own; see :func:`spos.zoo.resolve`).
    """
    arch, space = zoo.resolve(text, space)
    costs = cost_table(space)(arch)
    micro = count_micronet(SubNet(space, arch), space.input_size, space.input_channels)
    return {
        "arch": str(arch),
        "macs": costs.macs,
        "params": costs.params,
        "sigma_score": round(costs.sigma_score, 6),
        "micronet_params": micro.params,
        "micronet_mults": micro.mults,
        "micronet_adds": micro.adds,
        "micronet_score": round(micro.score, 6),
        "use_se": space.use_se,
        "last_conv_after_pooling": space.last_conv_after_pooling,
        "input_size": space.input_size,
        "num_classes": space.num_classes,
        "blocks": [BLOCK_NAMES[b] for b in arch.blocks],
        "scales": [SCALES[c] for c in arch.channels],
    }


@dataclass(frozen=True)
class Profile:
    """The op-by-op costs of one forward pass of one image, and their totals."""

    rows: list[OpRow]
    micronet: bool  # BN folded into the convs first (MicroNet counting)

    @property
    def totals(self) -> dict[str, int]:
        """Sums of ``params``, ``mults``, ``adds`` and ``macs`` over all rows."""
        return {k: sum(getattr(r, k) for r in self.rows) for k in ("params", "mults", "adds", "macs")}

    @property
    def quantizable(self) -> list[OpRow]:
        """The rows int8 quantisation applies to (conv, depthwise conv, linear)."""
        return [r for r in self.rows if r.quantizable]

    @property
    def micronet_score(self) -> float:
        """params/6.9M + (mults + adds)/1170M of the totals (meaningful with ``micronet``)."""
        t = self.totals
        return micronet_score(t["params"], t["mults"], t["adds"])

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write one line per row in :data:`COLUMNS` order, then a ``TOTAL`` line; returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS))
            w.writeheader()
            for r in self.rows:
                w.writerow(r.as_dict())
            w.writerow({"name": "TOTAL", **self.totals})
        return out


def profile_arch(text: str, space: SearchSpace | None = None, micronet: bool = False) -> Profile:
    """The op-by-op :class:`Profile` of an arch string or zoo name (see :func:`count_arch` for
    ``space``). Without ``micronet`` the model is built on the meta device: no weights, no compute."""
    arch, space = zoo.resolve(text, space)
    if micronet:  # folding needs real BN statistics to compute, though only shapes matter
        model = SubNet(space, arch)
    else:
        with torch.device("meta"):
            model = SubNet(space, arch)
    return Profile(profile(model, space.input_size, space.input_channels, micronet=micronet), micronet)
