"""One type for every cost constraint: :class:`Bounds`, used by the samplers and by the search.

Units: MACs are multiply-accumulates per image, params a count, latency milliseconds per
forward pass (as the latency table predicts it), ``max_score`` the Σ normalized score
(MACs / 328M + params / 3.4M). A ``None`` bound is open; bounds are inclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import SposError, dataclass_from_dict


def fmt_amount(x: float | None, unit: float = 1e6, suffix: str = "M") -> str:
    return "any" if x is None else f"{x / unit:g}{suffix}"


#: Bound names in the order :meth:`Bounds.violation` checks them, with the quantity they bound.
_LIMITS = (("max_macs", "macs", max), ("min_macs", "macs", min), ("max_params", "params", max),
           ("min_params", "params", min), ("max_score", "score", max),
           ("max_latency_ms", "latency_ms", max))  # fmt: skip


@dataclass(frozen=True)
class Bounds:
    """Inclusive limits on MACs, params, Σ score and latency; ``None`` is open.

    The first four fields keep the order of the sampling window (min/max MACs, min/max
    params), so ``Bounds(190e6, 330e6, 2.8e6, 5e6)`` is SPEC §4's window.
    """

    min_macs: float | None = None
    max_macs: float | None = None
    min_params: float | None = None
    max_params: float | None = None
    max_score: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                try:
                    object.__setattr__(self, f.name, float(v))
                except (TypeError, ValueError):
                    raise SposError(f"bound {f.name} must be a number, got {v!r}") from None
                if getattr(self, f.name) < 0:
                    raise SposError(f"bound {f.name} is negative ({v}); costs are never below 0")
        for lo, hi, what in ((self.min_macs, self.max_macs, "MACs"),
                             (self.min_params, self.max_params, "params")):  # fmt: skip
            if lo is not None and hi is not None and lo > hi:
                raise SposError(
                    f"the {what} window is empty: minimum {fmt_amount(lo)} > maximum {fmt_amount(hi)}; "
                    f"swap the bounds"
                )

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "window") -> Bounds:
        """Bounds from a config mapping; unknown keys are an error naming the allowed ones."""
        return dataclass_from_dict(cls, dict(d or {}), f"{where} keys")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_open(self) -> bool:
        return all(v is None for v in asdict(self).values())

    @property
    def needs_latency(self) -> bool:
        return self.max_latency_ms is not None

    def mask(self, macs: np.ndarray, params: np.ndarray, latency_ms: np.ndarray | None = None,
             score: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Element-wise "inside" over arrays of costs. ``score`` defaults to the Σ score of
        ``macs``/``params``; a latency bound needs ``latency_ms``."""
        ok = np.ones(np.shape(macs), dtype=bool)
        for _, broken in self._broken(macs, params, latency_ms, score):
            ok &= ~broken
        return ok

    def violations(self, macs: np.ndarray, params: np.ndarray, latency_ms: np.ndarray | None = None,
                   score: np.ndarray | None = None) -> list[str | None]:  # fmt: skip
        """Per element, the name of the first bound (in :data:`_LIMITS` order) it breaks, or None."""
        first: list[str | None] = [None] * len(np.atleast_1d(macs))
        for name, broken in self._broken(macs, params, latency_ms, score):
            for i in np.flatnonzero(np.atleast_1d(broken)):
                first[i] = first[i] or name
        return first

    def violation(self, macs: float, params: float, latency_ms: float | None = None) -> str | None:
        """The name of the first bound the costs of one arch break, or None."""
        return self.violations([macs], [params], None if latency_ms is None else [latency_ms])[0]

    def excess(self, costs: dict[str, np.ndarray], scales: dict[str, float]) -> np.ndarray:
        """How far outside the bounds each element lies, summed over the quantities in ``scales``
        (``macs``, ``params``, ``latency_ms``), each in units of its scale; 0 inside. What a
        sampler minimises to climb into a window it rarely hits by chance."""
        v = np.zeros(np.shape(costs["macs"]), dtype=float)
        for name, quantity, kind in _LIMITS:
            limit = getattr(self, name)
            if limit is not None and quantity in scales:
                x = costs[quantity]
                v += np.maximum((x - limit) if kind is max else (limit - x), 0) / scales[quantity]
        return v

    def _broken(self, macs, params, latency_ms, score):
        """``(bound name, which elements break it)`` for each set bound, in :data:`_LIMITS`
        order; an element whose cost is NaN (never priced) breaks every bound on that cost."""
        values = {"macs": np.asarray(macs), "params": np.asarray(params), "score": score,
                  "latency_ms": None if latency_ms is None else np.asarray(latency_ms)}  # fmt: skip
        for name, quantity, kind in _LIMITS:
            limit = getattr(self, name)
            if limit is not None:
                x = self._values(values, quantity)
                yield name, ~((x <= limit) if kind is max else (x >= limit))

    def contains(self, costs, latency_ms: float | None = None) -> bool:
        """Whether ``costs`` (anything with ``.macs`` and ``.params``) lies inside."""
        return self.violation(costs.macs, costs.params, latency_ms) is None

    @staticmethod
    def _values(values: dict, quantity: str) -> np.ndarray:
        if quantity == "score":
            if values["score"] is not None:
                return np.asarray(values["score"])
            from .counting import sigma_score

            return sigma_score(values["macs"], values["params"])
        x = values[quantity]
        if x is None:
            raise SposError("a latency bound needs a latency table; pass --latency-table FILE")
        return np.asarray(x)

    def __str__(self) -> str:
        text = (f"MACs {fmt_amount(self.min_macs)}..{fmt_amount(self.max_macs)}, "
                f"params {fmt_amount(self.min_params)}..{fmt_amount(self.max_params)}")  # fmt: skip
        if self.max_score is not None:
            text += f", Σ score ≤ {self.max_score:g}"
        if self.max_latency_ms is not None:
            text += f", latency ≤ {self.max_latency_ms:g} ms"
        return text
