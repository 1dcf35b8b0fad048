"""A search's result, its resumable state (``search_state.json``) and its output files."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SposError
from ..plots import plot_search
from ..runs import atomic_write_json, atomic_write_text
from ..space import SearchSpace
from .config import SearchConfig

STATE_FILE = "search_state.json"


@dataclass
class SearchResult:
    """Every evaluated candidate (dicts: arch, generation, accuracy, fitness, macs, params,
    score, latency_ms), the best first ``top``, the Pareto fronts and per-generation history."""

    candidates: list[dict]
    top: list[dict]
    pareto_macs: list[dict]
    pareto_params: list[dict]
    history: list[dict] = field(default_factory=list)
    #: NSGA-II: the candidates no other beats on accuracy and every cost at once (MACs, params,
    #: latency per table), best accuracy first; empty for the single-objective searches.
    front: list[dict] = field(default_factory=list)

    @property
    def best(self) -> dict:
        return self.top[0]



STATE_VERSION = 1


# Options that may change between a search and its resumption: they only extend it.
EXTENDABLE = ("generations", "candidates")


def save_state(path: Path, state: dict, config: SearchConfig, space: SearchSpace) -> None:
    atomic_write_json(path, {"version": STATE_VERSION, "config": config.to_dict(), "space": space.to_dict(),
                             **state})  # fmt: skip


def load_state(path: Path, config: SearchConfig, space: SearchSpace) -> dict:
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SposError(f"cannot read search state {path}: {e}; delete it to start over") from None
    if saved.get("version") != STATE_VERSION:
        raise SposError(f"{path} was written by another spos version; start a new search with another --out")
    if saved["space"] != space.to_dict():
        raise SposError(f"{path} belongs to a search of another supernet space; use another --out")
    now, default = config.to_dict(), SearchConfig().to_dict()
    # Options added after a state was saved count as their defaults.
    changed = sorted(k for k in now if k not in EXTENDABLE and saved["config"].get(k, default[k]) != now[k])
    if changed:
        was = ", ".join(f"{k}={saved['config'].get(k)!r}" for k in changed)
        raise SposError(f"cannot resume with changed options ({was} when saved); pass the same options "
                        f"or choose another --out")  # fmt: skip
    state = {k: saved[k] for k in ("generation", "population", "candidates", "history", "rng")}
    # The supernet file's hash, store reuse, warm start and pre-screened archs (older states: none).
    for key in ("supernet", "reused", "warm", "screened"):
        if key in saved:
            state[key] = saved[key]
    return state


CSV_FIELDS = ("generation", "arch", "accuracy", "loss", "fitness", "macs", "params", "score", "latency_ms")


def write_candidates(path: Path, cands: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(cands)
    atomic_write_text(path, buf.getvalue())


def write_outputs(out: str | os.PathLike, result: SearchResult, config: SearchConfig) -> None:
    """candidates.csv, best.json (top-k), pareto.json (accuracy vs MACs and vs params) and the
    plots fitness.png (best/mean fitness per generation) and pareto.png."""
    out = Path(out)
    write_candidates(out / "candidates.csv", result.candidates)
    atomic_write_json(out / "best.json", {"best": result.best, "top": result.top, "method": config.method,
                                          "evaluated": len(result.candidates),
                                          "generations": len(result.history)})  # fmt: skip
    fronts = {"accuracy_vs_macs": result.pareto_macs, "accuracy_vs_params": result.pareto_params}
    if result.front:
        fronts["front"] = result.front
    atomic_write_json(out / "pareto.json", fronts)
    plot_search(out, result, config)
