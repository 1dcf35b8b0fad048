"""Cost models of an architecture: exact MACs / params (counting and the lookup table), the
measured latency table, and the bounds that constrain sampling and search alike. Every table is
a :class:`CostModel` (``predict(arch)``, ``predict_batch(genes)``); :class:`BatchPricer` checks a
batch against :class:`Bounds` with all of them."""

from .bounds import Bounds
from .counting import Costs, count, count_micronet, num_params, profile, sigma_score
from .model import CostModel, PartCost
from .table import BatchPricer, CostTable, cost_table

__all__ = ["BatchPricer", "Bounds", "CostModel", "CostTable", "Costs", "PartCost", "cost_table", "count",
           "count_micronet", "num_params", "profile", "sigma_score"]  # fmt: skip
