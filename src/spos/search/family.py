"""One call, many budgets: a winner per budget (and device) from one pool of supernet scores.

``spos search --budget macs=0.9M,1.0M,1.2M [--latency-table a.json --latency-table b.json]``
calls :func:`run_family`. The pool is the candidate store (:mod:`spos.store`) of this supernet
file and these scoring settings. When it holds fewer than ``min_store`` candidates, one
evolutionary search (SPEC §5) under the loosest of the budgets fills it first. Then:

- ``predictor=True`` (default): each budget is answered by
  :func:`spos.search.predictor.answer_budget`, which evaluates only the predictor's ``top_k``
  in-budget candidates on the supernet: seconds per budget;
- ``predictor=False``: a full evolutionary search per budget, all sharing the store, so a
  candidate scored for one budget is never evaluated again for another.

Writes ``family.json`` and ``family.csv`` (budget -> arch, MACs, params, latency per device,
supernet score, evaluations, seconds), the Pareto front over (score, MACs, params, latency per
device) of the whole pool, and ``family.png`` (the pool, its MACs front and every winner).
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..cost.bounds import Bounds
from ..cost.model import arch_genes
from ..cost.table import cost_table
from ..errors import SposError
from ..runs import atomic_write_json, atomic_write_text, write_run_info
from ..runtime import parse_amount
from ..space import Arch
from .config import SearchConfig

#: ``--budget`` keys and the Bounds field each one caps.
BUDGET_KEYS = {"macs": "max_macs", "params": "max_params", "latency": "max_latency_ms"}


def parse_budgets(specs: Sequence[str]) -> list[Bounds]:
    """``["macs=0.9M,1.0M", "latency=5"]`` -> one :class:`Bounds` per value (numbers take K/M/G)."""
    budgets = []
    for spec in specs:
        key, _, values = spec.partition("=")
        if key not in BUDGET_KEYS or not values:
            raise SposError(f"--budget {spec!r}: write KEY=V1,V2,... with KEY one of {', '.join(BUDGET_KEYS)}")
        for text in values.split(","):
            try:
                value = parse_amount(text.strip())
            except (TypeError, ValueError):
                raise SposError(f"--budget {spec!r}: {text!r} is not a number (K/M/G allowed)") from None
            budgets.append(Bounds(**{BUDGET_KEYS[key]: value}))
    if not budgets:
        raise SposError("--budget needs at least one value, e.g. --budget macs=0.9M,1.2M")
    return budgets


def loosest(budgets: Sequence[Bounds]) -> Bounds:
    """The union window: each field's loosest cap (None when some budget leaves it open)."""
    def cap(field: str):
        values = [getattr(b, field) for b in budgets]
        return None if any(v is None for v in values) else max(values)

    return Bounds(max_macs=cap("max_macs"), max_params=cap("max_params"), max_latency_ms=cap("max_latency_ms"))


def run_family(
    supernet_path: str | os.PathLike,
    budgets: Sequence[Bounds],
    data: str = "builtin",
    config: SearchConfig | None = None,
    out_dir: str | os.PathLike = "runs/family",
    *,
    latency_tables: Sequence[str | os.PathLike] = (),
    store: str | os.PathLike | None = None,
    predictor: bool = True,
    min_store: int = 200,
    top_k: int = 10,
    device: str = "auto",
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """Winners for every budget from one pool (see the module docstring); returns the family
    summary written to ``family.json``. Latency budgets are priced with the first table."""
    from ..cost.latency import LatencyTable
    from ..store import beside
    from .run import run_search

    config = config or SearchConfig()
    out = Path(out_dir)
    tables = {str(p): LatencyTable.load(p) for p in latency_tables}
    latency = next(iter(tables.values()), None)
    if any(b.needs_latency for b in budgets) and latency is None:
        raise SposError("a latency budget needs --latency-table FILE")
    store_path = Path(store) if store is not None else beside(out)
    write_run_info(out, {"supernet": str(supernet_path), "data": data, "budgets": [str(b) for b in budgets],
                         "latency_tables": list(tables), "predictor": predictor, "min_store": min_store,
                         "top_k": top_k, **config.to_dict()}, command)  # fmt: skip
    t0 = time.perf_counter()
    pool = _Pool(supernet_path, data, config, store_path, device)
    fill = None
    if predictor and len(pool.known) < min_store:
        union = loosest(budgets)
        fill_cfg = replace(config, max_macs=union.max_macs, max_params=union.max_params,
                           max_latency_ms=union.max_latency_ms)  # fmt: skip
        log(f"store holds {len(pool.known)} candidates of this supernet: a full search under {union} first")
        res = run_search(supernet_path, data, fill_cfg, out / "pool-search", resume=(out / "pool-search" / "search_state.json").is_file(),
                         device=device, latency_table=latency_tables[0] if latency_tables else None,
                         command=command, log=log, store=store_path)  # fmt: skip
        fill = {"evaluated": len(res.candidates) - sum(h.get("reused", 0) for h in res.history),
                "seconds": round(time.perf_counter() - t0, 1)}
        pool.reload()
    rows = []
    for bounds in budgets:
        rows.append(_answer(bounds, pool, config, predictor, top_k, latency, tables, out, supernet_path, data,
                            device, command, log, store_path))  # fmt: skip
        log(f"budget {bounds}: {rows[-1]['arch']} score {100 * rows[-1]['score']:.2f}% "
            f"({rows[-1]['evaluated']} evaluated, {rows[-1]['seconds']:.1f} s)")
    pool.reload()
    summary = {"supernet": str(supernet_path), "store": str(store_path), "fill": fill, "budgets": rows,
               "pool": len(pool.known), "seconds": round(time.perf_counter() - t0, 1),
               "pareto": pareto(pool.space, pool.known, tables)}  # fmt: skip
    write_family(out, summary, pool)
    return summary


class _Pool:
    """The supernet, its scoring data and every score the store holds for it (arch -> fitness)."""

    def __init__(self, supernet_path, data: str, config: SearchConfig, store_path: Path, device: str) -> None:
        from ..nn.io import model_from_checkpoint
        from ..runs import load_checkpoint
        from ..runtime import resolve_device
        from ..store import Store, file_hash
        from .evaluator import Evaluator
        from .run import load_search_data

        ckpt = load_checkpoint(supernet_path)
        model, self.space, arch = model_from_checkpoint(ckpt, supernet_path)
        if arch is not None:
            raise SposError(f"{supernet_path} holds a subnet; a family search needs a supernet file")
        self.config, self.dev = config, resolve_device(device)
        self.store, self.supernet_id = Store(store_path), file_hash(supernet_path)
        self.settings = self.store.remember_config(config.scoring)
        self._load = lambda: Evaluator(model.to(self.dev).eval(),
                                       load_search_data(data, self.space, config, ckpt.get("config") or {}).to(self.dev),
                                       config.batch_size)  # fmt: skip
        self._evaluator = None  # decoded on the first evaluation: the predictor often needs none
        self.reload()

    def reload(self) -> None:
        rows = [r for r in self.store.candidates(self.supernet_id)
                if r["settings_hash"] == self.settings and r["loss"] is not None]  # fmt: skip
        self.known = {r["arch"]: (-r["loss"] if self.config.fitness == "loss" else r["accuracy"]) for r in rows}

    def evaluate(self, archs: list[Arch]) -> dict[str, float]:
        from .evolution import fitness_of

        if self._evaluator is None:
            self._evaluator = self._load()
        table, out, rows = cost_table(self.space), {}, []
        for arch in archs:
            acc, loss = self._evaluator.score(arch)
            c = table(arch)
            out[str(arch)] = fitness_of(self.config, acc, c.sigma_score, loss)
            rows.append({"arch": str(arch), "accuracy": acc, "loss": loss, "images": self.config.holdout,
                         "macs": c.macs, "params": c.params})  # fmt: skip
        self.store.put_scores(self.supernet_id, self.settings, rows)
        self.known.update(out)
        return out


def _answer(bounds, pool: _Pool, config, predictor, top_k, latency, tables, out, supernet_path, data, device,
            command, log, store_path) -> dict:  # fmt: skip
    """One budget's winner, by the predictor or by a full search sharing the store."""
    t0 = time.perf_counter()
    if predictor:
        from .predictor import answer_budget

        ans = answer_budget(bounds, pool.space, pool.known, pool.evaluate, latency, top_k, seed=config.seed)
        arch, score, evaluated = ans.arch, ans.score, ans.evaluated
    else:
        from .run import run_search

        cfg = replace(config, max_macs=bounds.max_macs, max_params=bounds.max_params,
                      max_latency_ms=bounds.max_latency_ms)  # fmt: skip
        name = str(bounds).replace(" ", "").replace("<=", "-")
        folder = out / f"search-{name}"
        res = run_search(supernet_path, data, cfg, folder, resume=(folder / "search_state.json").is_file(),
                         device=device, latency_table=next(iter(tables), None), command=command, log=None,
                         store=store_path)  # fmt: skip
        best = res.top[0]
        arch, score = Arch.parse(best["arch"], pool.space.stage_depths), best["fitness"]
        evaluated = len(res.candidates) - sum(h.get("reused", 0) for h in res.history)
        pool.reload()
    c = cost_table(pool.space)(arch)
    return {"budget": str(bounds), "arch": str(arch), "macs": c.macs, "params": c.params,
            "latency_ms": {name: float(t.predict(arch)) for name, t in tables.items()},
            "score": float(score), "evaluated": int(evaluated), "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


def pareto(space, known: dict[str, float], tables: dict) -> list[dict]:
    """The candidates no other beats on score and every cost at once (MACs, params, latency per
    device), best score first."""
    if not known:
        return []
    archs = [Arch.parse(a, space.stage_depths) for a in known]
    genes = arch_genes(archs)
    table = cost_table(space)
    costs = [table.macs_model.predict_batch(genes), table.params_model.predict_batch(genes)]
    costs += [np.asarray(t.model.predict_batch(genes), dtype=float) for t in tables.values()]
    score = np.asarray(list(known.values()), dtype=float)
    c = np.stack([-score, *costs], axis=1).astype(float)
    front = [i for i in range(len(c)) if not np.any(np.all(c <= c[i], axis=1) & np.any(c < c[i], axis=1))]
    front.sort(key=lambda i: -score[i])
    return [{"arch": str(archs[i]), "score": float(score[i]), "macs": int(costs[0][i]), "params": int(costs[1][i]),
             "latency_ms": {name: float(costs[2 + j][i]) for j, name in enumerate(tables)}} for i in front]  # fmt: skip


FAMILY_FIELDS = ("budget", "arch", "macs", "params", "latency_ms", "score", "evaluated", "seconds")


def write_family(out: Path, summary: dict, pool: _Pool) -> None:
    """``family.json``, ``family.csv`` and ``family.png``."""
    atomic_write_json(out / "family.json", summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FAMILY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in summary["budgets"]:
        writer.writerow({**r, "latency_ms": ";".join(f"{Path(k).name}={v:.4f}" for k, v in r["latency_ms"].items())})
    atomic_write_text(out / "family.csv", buf.getvalue())
    from ..plots import plot_family

    table = cost_table(pool.space)
    points = [(table(Arch.parse(a, pool.space.stage_depths)).macs, s) for a, s in pool.known.items()]
    plot_family(points, summary, out / "family.png")
