"""Searching a trained supernet (SPEC §5): scoring candidates, evolution / random search, state."""

from .config import SearchConfig
from .evaluator import Evaluator, SearchData
from .evolution import SearchResult, pareto_front, search
from .run import load_search_data, run_search

__all__ = ["Evaluator", "SearchConfig", "SearchData", "SearchResult", "load_search_data",
           "pareto_front", "run_search", "search"]  # fmt: skip
