"""One call, many budgets: a winner per budget (and device) from one pool of supernet scores.

``spos search --budget macs=0.9M,1.0M,1.2M [--budget latency@phone=5,6] [--latency-table
phone.json --latency-table server.json]`` calls :func:`run_family`. A latency budget names its
device (the latency table's file stem); a plain ``latency=`` budget applies to every table. The
pool is the candidate store (:mod:`spos.store`) of this supernet file and these scoring
settings. When it holds fewer than ``min_store`` candidates, one evolutionary search (SPEC §5)
under the loosest of the budgets fills it first; with ``method: nsga2`` the pool is always
filled (or replayed from the store) by NSGA-II over accuracy, MACs, params and the latency on
every table. Then:

- ``predictor=True`` (default): each budget is answered by
  :func:`spos.search.predictor.answer_budget`, which evaluates only the predictor's ``top_k``
  in-budget candidates on the supernet: seconds per budget;
- ``predictor=False``: a full evolutionary search per budget, all sharing the store, so a
  candidate scored for one budget is never evaluated again for another (no warm start either:
  the winners equal separate cold searches'); with ``method: nsga2`` the best of the pool
  inside the budget, with no further evaluation.

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
from dataclasses import dataclass, replace
from pathlib import Path

from ..cost.bounds import Bounds, fmt_amount
from ..cost.table import cost_table
from ..errors import SposError
from ..runs import atomic_write_json, atomic_write_text, write_run_info
from ..runtime import parse_amount
from ..space import Arch
from .config import SearchConfig

#: ``--budget`` keys and the Bounds field each one caps.
BUDGET_KEYS = {"macs": "max_macs", "params": "max_params", "latency": "max_latency_ms"}


@dataclass(frozen=True)
class Budget:
    """One budget of a family: its bounds and, for a latency bound, the device whose latency
    table prices it (the table file's stem; None: the first table)."""

    bounds: Bounds
    device: str | None = None

    def __str__(self) -> str:
        return f"{self.bounds} on {self.device}" if self.device else str(self.bounds)

    @property
    def label(self) -> str:
        """Short form for figures and tables, e.g. ``<=0.9M MACs`` or ``<=3 ms on phone``."""
        b, parts = self.bounds, []
        if b.max_macs is not None:
            parts.append(f"<={fmt_amount(b.max_macs)} MACs")
        if b.max_params is not None:
            parts.append(f"<={fmt_amount(b.max_params)} params")
        if b.max_latency_ms is not None:
            parts.append(f"<={b.max_latency_ms:.4g} ms" + (f" on {self.device}" if self.device else ""))
        return ", ".join(parts) or "no budget"


def parse_budgets(specs: Sequence[str], latency_tables: Sequence[str | os.PathLike] = ()) -> list[Budget]:
    """``["macs=0.9M,1.0M", "latency@phone=5,6"]`` -> one :class:`Budget` per value (numbers
    take K/M/G). ``latency@NAME`` caps the latency on the table whose file stem is NAME; a plain
    ``latency`` caps it on every table in ``latency_tables`` (one budget per table and value)."""
    devices = [Path(t).stem for t in latency_tables]
    budgets = []
    for spec in specs:
        key, _, values = spec.partition("=")
        key, _, device = key.partition("@")
        if key not in BUDGET_KEYS or not values or (device and key != "latency"):
            raise SposError(f"--budget {spec!r}: write KEY=V1,V2,... with KEY one of {', '.join(BUDGET_KEYS)} "
                            f"(latency@TABLE for one latency table)")  # fmt: skip
        if device and device not in devices:
            raise SposError(f"--budget {spec!r}: no --latency-table named {device} (have: {', '.join(devices) or 'none'})")
        on = [device] if device else (devices or [None]) if key == "latency" else [None]
        for text in values.split(","):
            try:
                value = parse_amount(text.strip())
            except (TypeError, ValueError):
                raise SposError(f"--budget {spec!r}: {text!r} is not a number (K/M/G allowed)") from None
            budgets += [Budget(Bounds(**{BUDGET_KEYS[key]: value}), d) for d in on]
    if not budgets:
        raise SposError("--budget needs at least one value, e.g. --budget macs=0.9M,1.2M")
    return budgets


def loosest(budgets: Sequence[Budget]) -> Budget:
    """The union window: each field's loosest cap (None when some budget leaves it open; a
    latency cap only when every budget caps the latency of one device)."""
    def cap(field: str):
        values = [getattr(b.bounds, field) for b in budgets]
        return None if any(v is None for v in values) else max(values)

    devices = {b.device for b in budgets}
    latency = cap("max_latency_ms") if len(devices) == 1 else None
    return Budget(Bounds(max_macs=cap("max_macs"), max_params=cap("max_params"), max_latency_ms=latency),
                  next(iter(devices)) if latency is not None else None)  # fmt: skip


def budget_config(config: SearchConfig, budget: Budget) -> SearchConfig:
    """``config`` searching under ``budget``'s bounds."""
    b = budget.bounds
    return replace(config, max_macs=b.max_macs, max_params=b.max_params, max_latency_ms=b.max_latency_ms)


def run_family(
    supernet_path: str | os.PathLike,
    budgets: Sequence[Budget | Bounds],
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
    summary written to ``family.json``. A latency budget is priced with its device's table."""
    from ..cost.latency import LatencyTable
    from ..store import beside
    from .nsga2 import pareto

    config = config or SearchConfig()
    if not predictor:  # no predictor anywhere: every search starts cold, as separate searches would
        config = replace(config, warm_start=False)
    budgets = [b if isinstance(b, Budget) else Budget(b) for b in budgets]
    out = Path(out_dir)
    tables = {str(p): LatencyTable.load(p) for p in latency_tables}
    if any(b.bounds.needs_latency for b in budgets) and not tables:
        raise SposError("a latency budget needs --latency-table FILE")
    store_path = Path(store) if store is not None else beside(out)
    write_run_info(out, {"supernet": str(supernet_path), "data": data, "budgets": [str(b) for b in budgets],
                         "latency_tables": list(tables), "predictor": predictor, "min_store": min_store,
                         "top_k": top_k, **config.to_dict()}, command)  # fmt: skip
    t0 = time.perf_counter()
    family = _Family(supernet_path, data, config, out, store_path, device, command, log, tables)
    fill = family.fill(budgets, predictor, min_store)
    rows = []
    for budget in budgets:
        rows.append(family.answer(budget, predictor, top_k))
        log(f"budget {budget}: {rows[-1]['arch']} score {100 * rows[-1]['score']:.2f}% "
            f"({rows[-1]['evaluated']} evaluated, {rows[-1]['seconds']:.1f} s)")
    pool = family.pool
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
        self.accuracy = {r["arch"]: r["accuracy"] for r in rows}

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
        self.accuracy.update({r["arch"]: r["accuracy"] for r in rows})
        return out


class _Family:
    """The searches behind one family: the pool, the search that fills it, each budget's answer."""

    def __init__(self, supernet_path, data, config, out: Path, store_path: Path, device, command, log, tables) -> None:
        self.supernet_path, self.data, self.config, self.out = supernet_path, data, config, out
        self.store_path, self.device, self.command, self.log, self.tables = store_path, device, command, log, tables
        self.devices = {Path(p).stem: p for p in tables}
        self.pool = _Pool(supernet_path, data, config, store_path, device)

    def table(self, budget: Budget) -> str | None:
        """The latency table file that prices ``budget`` (its device's, else the first)."""
        return self.devices[budget.device] if budget.device else next(iter(self.tables), None)

    def search(self, config: SearchConfig, folder: Path, tables, log=None):
        """A search of this family's supernet into ``folder`` (resumed when it holds one) and
        the supernet evaluations it made."""
        from .run import run_search

        res = run_search(self.supernet_path, self.data, config, folder, device=self.device, latency_table=tables,
                         resume=(folder / "search_state.json").is_file() or (folder / "candidates.csv").is_file(),
                         command=self.command, log=log, store=self.store_path)  # fmt: skip
        self.pool.reload()
        return res, len(res.candidates) - sum(h.get("reused", 0) for h in res.history)

    def fill(self, budgets: Sequence[Budget], predictor: bool, min_store: int) -> dict | None:
        """The search that fills the pool under the union of the budgets: NSGA-II over every
        cost (``method: nsga2``, always: a rerun is answered by the store), or SPEC §5's
        evolution when the predictor needs more than the store holds; None when none ran."""
        nsga2 = self.config.method == "nsga2"
        if not nsga2 and (not predictor or len(self.pool.known) >= min_store):
            return None
        t0 = time.perf_counter()
        union = loosest(budgets)
        self.log(f"store holds {len(self.pool.known)} candidates of this supernet: a {self.config.method} search "
                 f"under {union} first")  # fmt: skip
        tables = list(self.tables) if nsga2 else self.table(union)
        _, evaluated = self.search(budget_config(self.config, union), self.out / "pool-search", tables, self.log)
        return {"method": self.config.method, "evaluated": evaluated, "seconds": round(time.perf_counter() - t0, 1)}

    def answer(self, budget: Budget, predictor: bool, top_k: int) -> dict:
        """One budget's winner: the predictor's pre-screen (``top_k`` evaluations), the best of
        an NSGA-II pool (no predictor: no evaluation), or a full evolution sharing the store."""
        from ..cost.latency import LatencyTable

        t0 = time.perf_counter()
        pool, path = self.pool, self.table(budget)
        if predictor or self.config.method == "nsga2":
            from .predictor import answer_budget

            latency = LatencyTable.load(path) if path is not None else None
            ans = answer_budget(budget.bounds, pool.space, pool.known, pool.evaluate, latency,
                                top_k if predictor else 0, seed=self.config.seed)  # fmt: skip
            arch, score, evaluated = ans.arch, ans.score, ans.evaluated
        else:
            name = str(budget).replace(" ", "").replace("<=", "-")
            res, evaluated = self.search(budget_config(self.config, budget), self.out / f"search-{name}", path)
            arch, score = Arch.parse(res.best["arch"], pool.space.stage_depths), res.best["fitness"]
        c = cost_table(pool.space)(arch)
        return {"budget": str(budget), "label": budget.label, "device": budget.device, "arch": str(arch), "macs": c.macs, "params": c.params,
                "latency_ms": {name: float(t.predict(arch)) for name, t in self.tables.items()},
                "score": float(score), "accuracy": pool.accuracy.get(str(arch)), "evaluated": int(evaluated),
                "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


FAMILY_FIELDS = ("budget", "arch", "macs", "params", "latency_ms", "score", "accuracy", "evaluated", "seconds")


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
