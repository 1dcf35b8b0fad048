"""Cost models of an architecture: exact MACs / params (counting and the lookup table), the
measured latency table, and the bounds that constrain sampling and search alike."""

from .bounds import Bounds
from .counting import Costs, count, count_micronet, num_params, profile, sigma_score
from .table import CostTable, cost_table

__all__ = ["Bounds", "CostTable", "Costs", "cost_table", "count", "count_micronet", "num_params",
           "profile", "sigma_score"]  # fmt: skip
