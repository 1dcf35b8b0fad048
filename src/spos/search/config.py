"""The options that decide a search's result (:class:`SearchConfig`, SPEC §5 defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..cost.bounds import Bounds
from ..cost.model import ArchCostModel
from ..errors import SposError, dataclass_from_dict
from ..runtime import parse_amount

#: The search's latency model (ms): a :class:`~spos.cost.model.CostModel` such as a
#: :class:`~spos.cost.latency.LatencyTable`; one with only ``predict`` is priced arch by arch.
LatencyModel = ArchCostModel


#: Search methods: SPEC §5's evolution and random search, and NSGA-II (pymoo) over accuracy and costs.
METHODS: tuple[str, ...] = ("evolution", "random", "nsga2")

#: What a search maximises (:func:`spos.search.evolution.fitness_of`).
FITNESS: tuple[str, ...] = ("acc", "acc-score", "loss")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result (SPEC §5 defaults).

    MACs are multiply-accumulates per image; params are counts; latency in milliseconds;
    ``max_score`` bounds the Σ normalized score (MACs / 328M + params / 3.4M). Accuracies are
    fractions in [0, 1]; fitness is ``acc``, ``acc - score_ratio * score`` (``acc-score``) or
    ``loss`` (minus the held-out cross-entropy: smoother than top-1 on a few thousand images).
    """

    method: str = "evolution"  # evolution | random | nsga2 (multi-objective, pymoo)
    genes: str = "joint"  # block | channel | joint
    fix_blocks: str | None = None  # arch string whose block genes stay fixed (searches channels)
    fix_channels: str | None = None  # arch string whose channel genes stay fixed (searches blocks)
    population: int = 50
    parents: int = 10
    p_select: float = 0.1
    mutation_prob: float = 0.1
    generations: int = 20
    candidates: int = 100  # random search: how many archs to evaluate
    max_macs: float | None = None
    min_macs: float | None = None
    max_params: float | None = None
    max_score: float | None = None
    max_latency_ms: float | None = None
    fitness: str = "acc"  # acc | acc-score | loss
    score_ratio: float = 0.1
    recal_images: int = 2000  # BN recalibration images (SPEC: 20,000 on ImageNet)
    holdout: int = 5000  # held-out training images that score candidates
    # Seed of the holdout split; None: the supernet training's (read from its file), else 0.
    holdout_seed: int | None = None
    batch_size: int = 256
    top_k: int = 10
    seed: int = 0
    tries_per_candidate: int = 200  # bound on rejected samples before a constraint is "too tight"
    # Warm start (evolution with a store): when the store holds >= warm_min scores of this
    # supernet with these scoring settings, the first population is the best stored archs inside
    # the bounds plus a warm_random share of random ones, and each later generation draws
    # screen_draws offspring per free slot of which the store's accuracy predictor sends only
    # the best screen_keep share of the free slots to the supernet.
    warm_start: bool = True
    warm_min: int = 100
    warm_random: float = 0.2
    screen_draws: int = 3
    screen_keep: float = 0.4

    def __post_init__(self) -> None:
        # Values from YAML files arrive as whatever YAML made of them ("3e8" is a string there).
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type))
            if kind is None or value is None or isinstance(value, bool):
                continue
            try:
                if isinstance(value, str):
                    value = parse_amount(value)
                object.__setattr__(self, f.name, kind(value))
            except (TypeError, ValueError):
                raise SposError(f"{f.name.replace('_', '-')} must be a number, got {value!r}") from None
        if self.method not in METHODS:
            raise SposError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.genes not in ("block", "channel", "joint"):
            raise SposError(f"genes must be block, channel or joint, got {self.genes!r}")
        if self.fitness not in FITNESS:
            raise SposError(f"fitness must be one of {', '.join(FITNESS)}, got {self.fitness!r}")
        if self.fix_blocks and self.fix_channels:
            raise SposError("--fix-blocks and --fix-channels together leave nothing to search; pass one")
        if self.fix_blocks and self.genes == "block":
            raise SposError("--fix-blocks holds the block genes fixed; search --genes channel (or joint)")
        if self.fix_channels and self.genes == "channel":
            raise SposError("--fix-channels holds the channel genes fixed; search --genes block (or joint)")
        for name in ("population", "generations", "candidates", "recal_images", "holdout", "top_k",
                     "tries_per_candidate", "screen_draws"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise SposError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise SposError(f"batch-size must be at least 2 (BN recalibration), got {self.batch_size}")
        if self.method == "evolution" and not 1 <= self.parents < self.population:
            raise SposError(
                f"parents ({self.parents}) must be at least 1 and below the population ({self.population})"
            )
        for name in ("p_select", "mutation_prob", "warm_random", "screen_keep"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SposError(f"{name.replace('_', '-')} must be a probability in [0, 1]")
        if self.min_macs is not None and self.max_macs is not None and self.min_macs > self.max_macs:
            raise SposError(f"min-macs {self.min_macs:g} is above max-macs {self.max_macs:g}")

    @property
    def bounds(self) -> Bounds:
        """The hard limits of this search as one :class:`~spos.cost.bounds.Bounds`."""
        return Bounds(min_macs=self.min_macs, max_macs=self.max_macs, max_params=self.max_params,
                      max_score=self.max_score, max_latency_ms=self.max_latency_ms)  # fmt: skip

    @property
    def searched_genes(self) -> str:
        """The genes the operators touch: fixing one half searches the other."""
        if self.fix_blocks:
            return "channel"
        if self.fix_channels:
            return "block"
        return self.genes

    @property
    def scoring(self) -> dict:
        """The options that decide a candidate's supernet score (the store's settings key):
        two searches (or a search and a fidelity check) with equal ``scoring`` on one supernet
        file score every arch identically."""
        return {k: getattr(self, k) for k in ("recal_images", "holdout", "holdout_seed", "seed", "batch_size")}

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        return dataclass_from_dict(cls, d, "search options")

    def to_dict(self) -> dict:
        return asdict(self)
