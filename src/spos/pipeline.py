"""The whole lifecycle in one call: supernet -> search -> subnet from scratch -> test -> report.

Each stage writes into its own sub-folder of the run and is skipped when its result exists
(``supernet/final.pt``, ``search/best.json``, ``subnet/final.pt``, ``evaluation.json``), so a
killed pipeline continues where it stopped; a stage that was cut short resumes from its own
checkpoint. ``report.md`` and its figures are rebuilt at the end of every invocation.

Several MACs budgets (``budget_macs: [0.9e6, 1.2e6]``, ``spos pipeline --budget macs=0.9M,1.2M``)
make the search stage one family search (:func:`spos.search.family.run_family`:
``search/family.json``) and train each budget's winner from scratch in turn, each in its own
folder (``subnet-0.9M/`` with its ``evaluation.json``), each skipped when done.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

from . import data as datalib
from .cost.counting import count_micronet
from .cost.table import cost_table
from .errors import Preempted, SposError, check_keys
from .nn.io import load_model, model_from_checkpoint
from .report import write_report
from .runs import RunLock, atomic_write_json, check_writable, load_checkpoint, write_run_info
from .runtime import StopSignals, agree
from .space import Arch

STAGES = ("supernet", "search", "subnet", "evaluate", "report")


@dataclass
class PipelineConfig:
    """A pipeline run: shared settings plus one section per stage.

    ``space`` is shared by every stage (SearchSpace fields, or ``layout``/``width``).
    ``supernet`` and ``subnet`` hold :class:`spos.train.TrainConfig` keys (old names such as
    ``bn_images`` are accepted with one deprecation note), ``search`` holds
    :class:`spos.search.SearchConfig` keys. ``recal_images`` means BN recalibration images in
    both. ``holdout`` does not: in ``supernet`` it is how many train images are kept out of
    supernet training (a fraction below 1), in ``search`` how many of those the search scores. ``budget_macs`` (MACs per image) becomes the search's
    ``max_macs`` and, for a ``random``/``strolling`` supernet sampler without a window, the
    sampling window's upper bound. A list of budgets searches them as one family and trains
    every winner (the window's bound is the largest budget).
    """

    data: str = "builtin"
    out: str = "runs/pipeline"
    device: str = "auto"
    seed: int = 0
    budget_macs: float | list[float] | None = None
    space: dict = field(default_factory=dict)
    supernet: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    subnet: dict = field(default_factory=dict)
    sampling_plot_samples: int = 2000  # paths per sampler in the report's sampling figure
    progress: bool = True
    tensorboard: bool = False  # also log the stages to their tensorboard/ folders (spos[tensorboard])

    @classmethod
    def from_dict(cls, d: dict) -> PipelineConfig:
        check_keys(cls, d, "pipeline config keys")
        for key in ("space", "supernet", "search", "subnet"):
            if not isinstance(d.get(key, {}) or {}, dict):
                raise SposError(f"pipeline config section {key!r} must be a mapping")
        d = {**d, **{key: _train_keys(d[key], key) for key in ("supernet", "subnet") if d.get(key)}}
        if isinstance(d.get("budget_macs"), (list, tuple)):
            d = {**d, "budget_macs": [_amount(b, "budget_macs") for b in d["budget_macs"]]}
            if not d["budget_macs"]:
                raise SposError("budget_macs is an empty list; give a number or a list of numbers")
        cfg = cls(**{k: v for k, v in d.items() if v is not None or k == "budget_macs"})
        for key in ("supernet", "subnet"):
            clash = sorted({"data", "space", "arch", "out"} & set(getattr(cfg, key)))
            if clash:
                raise SposError(f"pipeline section {key!r} may not set {clash}: the pipeline sets them")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def budgets(self) -> list[float]:
        """The MACs budgets: none, one, or several (a family search)."""
        if self.budget_macs is None:
            return []
        return list(self.budget_macs) if isinstance(self.budget_macs, list) else [float(self.budget_macs)]

    @property
    def is_family(self) -> bool:
        return len(self.budgets) > 1

    # ---- the stages' own configs -------------------------------------------------------------
    def supernet_config(self):
        from .train.config import TrainConfig
        opts = {"seed": self.seed, "device": self.device, "progress": self.progress,
                "tensorboard": self.tensorboard, **self.supernet}
        if self.budgets and opts.get("sampler") in ("random", "strolling") and not opts.get("window"):
            opts["window"] = {"max_macs": max(self.budgets)}
        return TrainConfig.from_dict({**opts, "data": self.data, "space": dict(self.space), "arch": None,
                                      "out": str(Path(self.out) / "supernet")}, where="supernet section")  # fmt: skip

    def search_config(self):
        from .search.config import SearchConfig
        opts = {"seed": self.seed, **self.search}
        if len(self.budgets) == 1:  # a family search sets each budget's bound itself
            opts["max_macs"] = self.budgets[0]
        return SearchConfig.from_dict(opts)

    def subnet_config(self, arch: str, folder: str = "subnet"):
        from .train.config import TrainConfig
        opts = {"seed": self.seed, "device": self.device, "progress": self.progress,
                "tensorboard": self.tensorboard, **self.subnet}
        return TrainConfig.from_dict({**opts, "data": self.data, "space": dict(self.space), "arch": arch,
                                      "out": str(Path(self.out) / folder)}, where="subnet section")  # fmt: skip


def _amount(value, key: str) -> float:
    from .runtime import parse_amount

    try:
        return float(parse_amount(value) if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise SposError(f"{key}: {value!r} is not a number (K/M/G allowed)") from None


def subnet_folder(budget_macs: float) -> str:
    """The folder of one budget's subnet in a multi-budget pipeline, e.g. ``subnet-0.9M``."""
    return f"subnet-{budget_macs / 1e6:g}M"


def run_pipeline(
    config: PipelineConfig,
    resume: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or continue, with ``resume``) every stage; returns the summary written to
    ``summary.json``. Raises :class:`SposError` if ``config.out`` holds another run and
    ``resume`` is False. Holds the folder's lock (rank 0); SIGTERM / SIGINT stop the running
    stage at its next step or generation (its state saved) and raise
    :class:`~spos.errors.Preempted`; the same command with ``--resume`` continues.
    """
    main = int(os.environ.get("RANK", "0")) == 0
    lock = RunLock(config.out) if main else contextlib.nullcontext()
    with lock, StopSignals() as signals:
        if main:
            check_writable(config.out)
        return _run_stages(config, resume, command, log, signals)


def _run_stages(config: PipelineConfig, resume: bool, command: str, log: Callable[[str], None],
                signals: StopSignals) -> dict:  # fmt: skip
    """The body of :func:`run_pipeline`.

    Longer than a screen: the stages in order, each one line, read top to bottom.
    """
    out = Path(config.out)
    state_path = out / "pipeline.json"
    # Under torchrun every rank runs the training and search stages; rank 0 alone writes the
    # pipeline's own files, evaluates and reports.
    main = int(os.environ.get("RANK", "0")) == 0
    if not main:
        log = _quiet
    if state_path.is_file() and not resume:
        raise SposError(f"{out} already holds a pipeline run; pass --resume to continue it "
                        f"(finished stages are skipped) or choose another --out")  # fmt: skip
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if _comparable(saved.get("config") or {}) != _comparable(config):
            raise SposError(f"{out} holds a pipeline run with other settings; rerun with the same "
                            f"config or choose another --out")  # fmt: skip
    # Check every stage's settings before spending minutes on the first one.
    sup_cfg, search_cfg = config.supernet_config(), config.search_config()
    config.subnet_config("oneshot")  # validates the section; the arch comes from the search
    times: dict[str, float] = {}
    if main:
        write_run_info(out, config.to_dict(), command)
        _save_state(state_path, config, times)

    def stage(name: str, done: bool, fn: Callable[[], Any]) -> None:
        if done:
            log(f"== {name}: done already, skipped")
            return
        log(f"== {name}")
        t0 = time.perf_counter()
        fn()
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # rank 0 writes the stage's results; the others wait to read them
        times[name] = round(time.perf_counter() - t0, 1)
        if main:
            _save_state(state_path, config, times)
        if agree([signals.requested])[0]:
            raise Preempted(f"{signals.name} after the {name} stage; run the same command with --resume to continue")

    from .search.run import run_search
    from .train.trainer import train
    sup_dir, search_dir, sub_dir = out / "supernet", out / "search", out / "subnet"
    stage("supernet", (sup_dir / "final.pt").is_file(),
          lambda: train(sup_cfg, command, resume=(sup_dir / "checkpoint.pt").is_file()))
    if config.is_family:
        summary = _family_stages(config, stage, sup_cfg, search_cfg, command, log, main)
        if main:
            summary["seconds"] = {**json.loads(state_path.read_text()).get("seconds", {}), **times}
            _finish(config, summary, state_path, times, log)
        return summary
    stage("search", (search_dir / "best.json").is_file(),
          lambda: run_search(sup_dir / "final.pt", config.data, search_cfg, search_dir,
                             resume=(search_dir / "search_state.json").is_file(), device=config.device,
                             command=command, log=log, tensorboard=config.tensorboard))  # fmt: skip
    best = json.loads((search_dir / "best.json").read_text())["best"]
    sub_cfg = config.subnet_config(best["arch"])
    stage("subnet", (sub_dir / "final.pt").is_file(),
          lambda: train(sub_cfg, command, resume=(sub_dir / "checkpoint.pt").is_file()))
    if not main:
        return {}
    stage("evaluate", (out / "evaluation.json").is_file(), lambda: evaluate_stage(config, best, search_cfg))
    summary = build_summary(config, times)
    _finish(config, summary, state_path, times, log)
    return summary


def _finish(config: PipelineConfig, summary: dict, state_path: Path, times: dict, log) -> None:
    """report.md, summary.json, the finished state and the summary on the console."""
    write_report(config, summary)
    atomic_write_json(Path(config.out) / "summary.json", summary)
    _save_state(state_path, config, times, finished=True)
    log(format_summary(summary))


def _family_stages(config: PipelineConfig, stage, sup_cfg, search_cfg, command: str, log, main: bool) -> dict:
    """Several budgets: one family search (``search/family.json``), then per budget its winner
    trained from scratch in ``subnet-<budget>/`` and evaluated there; the family summary."""
    from .cost.bounds import Bounds
    from .search.family import run_family
    from .train.trainer import train

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SposError("a pipeline with several budgets runs in one process; train the supernet under torchrun "
                        "with one budget, then run the pipeline again with the list (the supernet stage is skipped)")  # fmt: skip
    out = Path(config.out)
    search_dir, tables = out / "search", [sup_cfg.latency_table] if sup_cfg.latency_table else []
    stage("search", (search_dir / "family.json").is_file(),
          lambda: run_family(out / "supernet" / "final.pt", [Bounds(max_macs=b) for b in config.budgets],
                             config.data, search_cfg, search_dir, latency_tables=tables, device=config.device,
                             command=command, log=log))  # fmt: skip
    family = json.loads((search_dir / "family.json").read_text())
    trained = {}  # one folder per distinct winner: budgets that share a winner share its training
    for _, row, folder in winner_folders(config, family):
        if folder.name not in trained:
            trained[folder.name] = row
            sub_cfg = config.subnet_config(row["arch"], folder.name)
            stage(f"subnet {folder.name}", (folder / "final.pt").is_file(),
                  lambda c=sub_cfg, f=folder: train(c, command, resume=(f / "checkpoint.pt").is_file()))  # fmt: skip
    if not main:
        return {}
    for name, row in trained.items():
        stage(f"evaluate {name}", (out / name / "evaluation.json").is_file(),
              lambda r=row, f=out / name: evaluate_stage(config, r, search_cfg, f))  # fmt: skip
    return build_family_summary(config, family)


def winner_folders(config: PipelineConfig, family: dict) -> list[tuple[float, dict, Path]]:
    """``(budget, family row, subnet folder)`` per budget; a winner already chosen by a tighter
    budget keeps that budget's folder."""
    first: dict[str, Path] = {}
    out = []
    for budget, row in zip(config.budgets, family["budgets"]):
        folder = first.setdefault(row["arch"], Path(config.out) / subnet_folder(budget))
        out.append((budget, row, folder))
    return out


def _quiet(message: str) -> None:
    pass


def _train_keys(section: dict, name: str, warn: bool = True) -> dict:
    """A ``supernet``/``subnet`` section with renamed TrainConfig keys under their new names."""
    from .train.config import upgrade_keys

    return upgrade_keys(section, f"pipeline section {name!r}", warn=warn)


def _comparable(config: PipelineConfig | dict) -> dict:
    """The settings a continued run must share with the saved one (not device or progress);
    a saved ``pipeline.json`` config (a dict) has its old key names upgraded silently."""
    d = dict(config) if isinstance(config, dict) else config.to_dict()
    for k in ("device", "progress", "tensorboard"):
        d.pop(k, None)
    for key in ("supernet", "subnet"):
        if isinstance(d.get(key), dict):
            d[key] = _train_keys(d[key], key, warn=False)
    return json.loads(json.dumps(d))


def _save_state(path: Path, config: PipelineConfig, times: dict, finished: bool = False) -> None:
    previous = json.loads(path.read_text()).get("seconds", {}) if path.is_file() else {}
    atomic_write_json(path, {"config": _comparable(config), "seconds": {**previous, **times},
                             "finished": finished})  # fmt: skip


def evaluate_stage(config: PipelineConfig, best: dict, search_cfg, sub_dir: Path | None = None) -> dict:
    """Test-split accuracy of the chosen arch twice: as a BN-recalibrated supernet path and as
    the subnet trained from scratch (in ``sub_dir``, default ``subnet/``); plus the supernet's
    held-out estimate from the search. Written to ``evaluation.json`` (beside ``sub_dir`` for
    the one subnet of a single budget, inside it for each budget of a family)."""
    from .nn.bn import recalibrate_bn
    from .runtime import resolve_device
    from .train.evaluate import evaluate
    out = Path(config.out)
    device = resolve_device(config.device)
    dest = out / "evaluation.json" if sub_dir is None else sub_dir / "evaluation.json"
    sub_dir = sub_dir or out / "subnet"
    subnet, space, arch = load_model(sub_dir / "final.pt")
    sup_ckpt = load_checkpoint(out / "supernet" / "final.pt")
    supernet, sup_space, _ = model_from_checkpoint(sup_ckpt, out / "supernet" / "final.pt")
    test = datalib.dataset(config.data, "val", train=False, input_size=space.input_size)
    idx = list(range(len(test)))
    x_test, y_test = datalib.to_tensors(test, idx, batch_size=500)

    def batches():
        return ((x_test[i : i + 500], y_test[i : i + 500]) for i in range(0, len(y_test), 500))

    stand_alone = evaluate(subnet.to(device), batches(), device)
    # The same recalibration images the search used (seeded subset of the supernet's train split).
    from .search.run import search_split
    sup_arch = Arch.parse(best["arch"], sup_space.stage_depths)
    ds, recal_idx, _ = search_split(config.data, sup_space, search_cfg, sup_ckpt.get("config") or {})
    recal, _ = datalib.to_tensors(ds, recal_idx, batch_size=search_cfg.batch_size)
    path_net = supernet.subnet(sup_arch).to(device)
    recalibrate_bn(path_net, recal.to(device), search_cfg.batch_size)
    via_supernet = evaluate(path_net, batches(), device)
    result = {
        "arch": str(arch),
        "test_images": len(y_test),
        "standalone_test_acc": stand_alone["acc"],
        "supernet_test_acc": via_supernet["acc"],
        "supernet_holdout_acc": best["accuracy"],
    }
    atomic_write_json(dest, result)
    return result


def build_summary(config: PipelineConfig, times: dict) -> dict:
    out = Path(config.out)
    _, space, arch = load_model(out / "subnet" / "final.pt")
    costs = cost_table(space)(arch)
    from .nn.supernet import SubNet
    micro = count_micronet(SubNet(space, arch), space.input_size, space.input_channels)
    evaluation = json.loads((out / "evaluation.json").read_text())
    best = json.loads((out / "search" / "best.json").read_text())
    state = json.loads((out / "pipeline.json").read_text())
    return {
        "arch": str(arch),
        "macs": costs.macs,
        "params": costs.params,
        "sigma_score": round(costs.sigma_score, 6),
        "micronet_score": round(micro.score, 6),
        "budget_macs": config.budget_macs,
        **{k: evaluation[k] for k in ("standalone_test_acc", "supernet_test_acc", "supernet_holdout_acc",
                                      "test_images")},  # fmt: skip
        "search_top": best["top"][:10],
        "evaluated_candidates": best["evaluated"],
        "seconds": {**state.get("seconds", {}), **times},
    }


def build_family_summary(config: PipelineConfig, family: dict) -> dict:
    """One row per budget: the family search's winner (arch, MACs, params, latency per device,
    supernet score) with its stand-alone and supernet test accuracy where it was evaluated."""
    rows = []
    for budget, row, folder in winner_folders(config, family):
        done = (folder / "evaluation.json").is_file()
        evaluation = json.loads((folder / "evaluation.json").read_text()) if done else {}
        rows.append({"budget_macs": budget, "folder": folder.name,
                     **{k: row.get(k) for k in ("arch", "macs", "params", "latency_ms", "score", "accuracy")},
                     **{k: evaluation.get(k) for k in ("standalone_test_acc", "supernet_test_acc", "test_images")}})  # fmt: skip
    return {"budget_macs": config.budgets, "family": rows, "pool": family["pool"], "fill": family.get("fill")}


def format_summary(s: dict) -> str:
    if "family" in s:
        return "\n".join(["", "budget     arch                       MACs (M)  supernet  stand-alone"] + [
            f"{r['budget_macs'] / 1e6:<9.3g}  {r['arch']:<25}  {r['macs'] / 1e6:8.3f}  {100 * r['score']:7.2f}%  "
            + (f"{100 * r['standalone_test_acc']:9.2f}%" if r["standalone_test_acc"] is not None else "  not yet")
            for r in s["family"]] + ["stage seconds      " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items())])  # fmt: skip
    lines = [
        "",
        f"chosen arch        {s['arch']}",
        f"MACs / params      {s['macs'] / 1e6:.2f}M / {s['params'] / 1e6:.3f}M"
        + (f"  (budget {s['budget_macs'] / 1e6:.2f}M MACs)" if s.get("budget_macs") else ""),
        f"scores             sigma {s['sigma_score']:.4f}, MicroNet {s['micronet_score']:.4f}",
        f"supernet estimate  {100 * s['supernet_holdout_acc']:.2f}% held-out, "
        f"{100 * s['supernet_test_acc']:.2f}% test (BN recalibrated)",
        f"stand-alone        {100 * s['standalone_test_acc']:.2f}% test ({s['test_images']} images)",
        "stage seconds      " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items()),
    ]
    return "\n".join(lines)
