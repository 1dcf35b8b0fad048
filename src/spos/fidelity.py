"""Does the supernet rank architectures the way training them would? (``spos fidelity``)

:func:`run_fidelity` picks K archs uniformly inside a budget window, stratified by MACs (plus
the search's winner), trains each from scratch for R seeds, scores each through the supernet
the way the search does, and measures how well the two rankings agree:

- Kendall τ_b and Spearman ρ between supernet score and mean stand-alone accuracy, each with a
  bootstrap 95% interval (``scipy.stats.bootstrap`` over archs, paired);
- the **noise ceiling** (τ between the stand-alone seeds), the **cost-only baselines** (τ of
  MACs and of params against accuracy), the top-k overlap and the **regret** (best stand-alone
  accuracy minus that of the supernet's top pick);
- the supernet estimate's own noise: every arch is re-scored with other BN-recalibration
  subsets (τ between those scorings, and the per-arch spread);
- **search vs random**: the winner's stand-alone accuracy against the K random archs, as its
  percentile and its gap to their median and best, with bootstrap intervals;
- whether the ground truth can rank these archs at all (:func:`truth_signal`): a two-way
  ANOVA (archs, seeds as blocks), the share of the seed means' variance that is the archs' own,
  and the τ a perfect ranker would reach against those means;
- what the supernet misses (:func:`blind_spots`): the block choices that move stand-alone
  accuracy with MACs held fixed, each beside what the same choice does to the supernet score.

Nothing is computed twice: stand-alone results and supernet scores go into the SQLite store
(:mod:`spos.store`). Every (arch, seed) is its own resumable training run under
``OUT/runs/``; under ``torchrun`` the ranks train disjoint shares (each run on one process).
Accuracies are fractions in [0, 1]; MACs are per image.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import tblog
from .cost.bounds import Bounds
from .cost.table import BatchPricer, cost_table
from .errors import SposError, dataclass_from_dict
from .genes import to_arch, uniform_genes
from .runs import (
    RunLock,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    load_yaml_config,
    write_run_info,
)
from .runtime import rank_world
from .space import BLOCK_NAMES, Arch, SearchSpace
from .store import Store, beside, config_hash, file_hash

FIDELITY_FILES = ("fidelity.json", "fidelity.csv", "fidelity.png")


@dataclass(frozen=True)
class FidelityConfig:
    """What a fidelity check measures, and how.

    ``recipe`` holds :class:`spos.train.TrainConfig` keys for the stand-alone runs (default: the
    pipeline's ``subnet`` section); ``scoring`` holds the search's scoring keys
    (``recal_images``, ``holdout``, ``batch_size``, ``seed``); ``window`` is a
    :class:`~spos.cost.bounds.Bounds` mapping (default: the supernet's sampling window).
    """

    archs: int = 16  # K random archs inside the window
    seeds: int = 2  # R stand-alone seeds per arch
    recipe: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)
    window: dict | None = None
    rescore: int = 2  # extra BN-recalibration subsets per arch (the estimate's own noise)
    fitness: str = "acc"  # the supernet score ranked: held-out top-1 ("acc") or minus its cross-entropy ("loss")
    bootstrap: int = 2000  # bootstrap resamples for every interval
    top_k: int = 3
    pool: int = 20000  # uniform draws from which the K in-window archs are stratified
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("archs", "seeds", "bootstrap", "top_k", "pool"):
            if int(getattr(self, name)) < 1:
                raise SposError(f"fidelity option {name} must be at least 1, got {getattr(self, name)}")
        if self.archs < 3:
            raise SposError(f"a rank correlation needs at least 3 archs; got archs={self.archs}")
        if self.rescore < 0:
            raise SposError(f"fidelity option rescore must be >= 0, got {self.rescore}")
        if self.fitness not in ("acc", "loss"):
            raise SposError(f"fidelity option fitness must be acc or loss, got {self.fitness!r}")

    @classmethod
    def from_dict(cls, d: dict) -> FidelityConfig:
        return dataclass_from_dict(cls, d, "fidelity options")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- picking the archs -----------------------------------------------------------------------


def pick_archs(space: SearchSpace, window: Bounds, k: int, seed: int = 0, pool: int = 20000) -> list[Arch]:
    """K archs drawn uniformly inside ``window``, stratified by MACs: the in-window part of
    ``pool`` uniform draws is sorted by MACs and cut into K strata of equal count, and one arch
    is drawn from each. Raises :class:`SposError` if fewer than K distinct archs fall inside."""
    rng = np.random.default_rng(seed)
    genes = uniform_genes(rng, space.num_blocks, np.asarray(space.channel_genes), pool)
    genes = np.unique(genes, axis=0)
    rng.shuffle(genes)
    pricer = BatchPricer(space)
    macs, _ = pricer(genes)
    inside = np.flatnonzero(pricer.inside(window, genes))
    if len(inside) < k:
        raise SposError(f"only {len(inside)} of {pool} uniform archs fall inside the window ({window}); "
                        f"widen the window or pass fewer --archs")  # fmt: skip
    order = inside[np.argsort(macs[inside], kind="stable")]
    return [to_arch(genes[rng.choice(stratum)], space) for stratum in np.array_split(order, k)]


# ---- stand-alone training --------------------------------------------------------------------


@contextlib.contextmanager
def _single_process() -> Iterator[None]:
    """Hide torchrun's world from a stand-alone run: each one trains on this process alone."""
    keys = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    saved = {k: os.environ.pop(k) for k in keys if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def standalone_keys(space: SearchSpace, recipe: dict, data: str, store: Store | None = None) -> tuple[str, str]:
    """The store's keys of a stand-alone result, (space hash, recipe hash); with ``store`` the
    recipe is also remembered there (``spos store show`` prints it)."""
    body = {"recipe": recipe, "data": data}
    return config_hash(space.to_dict()), store.remember_config(body) if store else config_hash(body)


def _run_dir(out: Path, arch: Arch, seed: int) -> Path:
    return out / "runs" / f"{str(arch).replace(':', '_')}-seed{seed}"


def train_standalone(
    jobs: Sequence[tuple[Arch, int]],
    space: SearchSpace,
    data: str,
    recipe: dict,
    out: Path,
    store: Store,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[tuple[str, int], dict]:
    """Stand-alone test accuracy of every (arch, seed) in ``jobs``: read from ``store`` where
    it is known, else trained (resuming a killed run from its checkpoint) and stored. Under
    torchrun each rank trains every world-th job not yet stored, then all read the store."""
    from .train.config import TrainConfig
    from .train.trainer import train

    rank, world = rank_world()
    space_hash, recipe_hash = standalone_keys(space, recipe, data, store)
    todo = [(a, s) for a, s in jobs if store.standalone(space_hash, str(a), recipe_hash, s) is None]
    for i, (arch, seed) in enumerate(todo):
        if i % world != rank:
            continue
        run_dir = _run_dir(out, arch, seed)
        log(f"stand-alone {i + 1}/{len(todo)}: {arch} seed {seed}")
        cfg = TrainConfig.from_dict({**recipe, "data": data, "space": space.to_dict(), "arch": str(arch),
                                     "seed": seed, "out": str(run_dir), "progress": False})  # fmt: skip
        with _single_process():
            record = train(cfg, command, resume=(run_dir / "checkpoint.pt").is_file())
        val = record.get("val") or {}
        if "acc" not in val:
            raise SposError("the stand-alone recipe evaluates nothing; drop val_size: 0 from it")
        store.put_standalone(space_hash, str(arch), recipe_hash, seed, val["acc"], val.get("loss"),
                             val.get("images"), sum(r.get("seconds", 0) for r in _history(run_dir)))  # fmt: skip
    _barrier()
    results = {}
    for arch, seed in jobs:
        row = store.standalone(space_hash, str(arch), recipe_hash, seed, count=False)
        if row is None:
            raise SposError(f"stand-alone result of {arch} seed {seed} is missing from {store.path}")
        results[(str(arch), seed)] = row
    return results


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---- supernet scores -------------------------------------------------------------------------


def score_archs(
    supernet,
    supernet_hash: str,
    train_config: dict,
    archs: Sequence[Arch],
    data: str,
    scoring: dict,
    rescore: int,
    store: Store,
) -> dict[str, list[tuple[float, float]]]:
    """Supernet score of each arch, as the search computes it (``spos.search.Evaluator``), with
    the search's recalibration subset first and ``rescore`` other subsets after it:
    ``{arch: [(top-1, loss) with seed s, s + 1, ...]}``. Known scores come from ``store`` (a
    row written before losses were stored is scored again); the held-out images are decoded
    once for all subsets. ``train_config`` is the supernet file's config (it fixes the holdout
    split)."""
    from .search.config import SearchConfig
    from .search.evaluator import Evaluator
    from .search.run import load_search_data

    base = SearchConfig.from_dict(scoring)
    out: dict[str, list[tuple[float, float]]] = {str(a): [] for a in archs}
    decoded = None
    for r in range(rescore + 1):
        cfg = SearchConfig.from_dict({**scoring, "seed": base.seed + r})
        settings = store.remember_config(cfg.scoring)
        missing = [a for a in archs if (store.score(supernet_hash, str(a), settings) or {}).get("loss") is None]
        if missing:
            decoded = load_search_data(data, supernet.space, cfg, train_config, holdout_from=decoded)
            evaluator = Evaluator(supernet, decoded, cfg.batch_size)
            for arch in missing:
                acc, loss = evaluator.score(arch)
                store.put_score(supernet_hash, str(arch), settings, acc, loss, images=cfg.holdout)
        for arch in archs:
            row = store.score(supernet_hash, str(arch), settings, count=False)
            out[str(arch)].append((row["accuracy"], row["loss"]))
    return out


# ---- the statistics --------------------------------------------------------------------------


def _tau(x, y) -> float:
    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs give NaN, reported as such
        return float(kendalltau(x, y).statistic)


def _rho(x, y) -> float:
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def _interval(samples: tuple, statistic: Callable, resamples: int, seed: int, paired: bool = True) -> list[float]:
    """Percentile bootstrap 95% interval of ``statistic`` (scipy.stats.bootstrap); NaNs where
    the resamples are degenerate (e.g. constant data)."""
    from scipy.stats import bootstrap

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate resamples: NaN bounds, reported as such
            res = bootstrap(samples, statistic, paired=paired, vectorized=False, n_resamples=resamples,
                            method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
        ci = res.confidence_interval
        return [float(ci.low), float(ci.high)]
    except (ValueError, FloatingPointError):
        return [float("nan"), float("nan")]


def ranking_stats(
    score: Sequence[float],
    accuracy: np.ndarray,
    macs: Sequence[float],
    params: Sequence[float],
    top_k: int = 3,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """How well ``score`` ranks archs by mean stand-alone ``accuracy`` (archs × seeds).

    τ is Kendall's τ_b (ties counted as scipy does), ρ Spearman's; intervals are paired
    percentile bootstraps over archs. ``noise_ceiling`` is the mean τ over pairs of seeds
    (None with one seed); ``regret`` is the best mean accuracy minus that of the arch the
    score ranks first.
    """
    score, acc = np.asarray(score, float), np.asarray(accuracy, float)
    mean = acc.mean(axis=1)
    k = min(top_k, len(score))
    top_score = set(np.argsort(-score, kind="stable")[:k].tolist())
    top_acc = set(np.argsort(-mean, kind="stable")[:k].tolist())
    pairs = [(i, j) for i in range(acc.shape[1]) for j in range(i + 1, acc.shape[1])]
    return {
        "tau": _tau(score, mean),
        "tau_ci": _interval((score, mean), _tau, resamples, seed),
        "rho": _rho(score, mean),
        "rho_ci": _interval((score, mean), _rho, resamples, seed),
        "noise_ceiling": float(np.mean([_tau(acc[:, i], acc[:, j]) for i, j in pairs])) if pairs else None,
        "tau_macs": _tau(macs, mean),
        "tau_macs_ci": _interval((np.asarray(macs, float), mean), _tau, resamples, seed),
        "tau_params": _tau(params, mean),
        "top_k": k,
        "top_k_overlap": len(top_score & top_acc) / k,
        "regret": float(mean.max() - mean[int(np.argmax(score))]),
        "seed_spread": float(acc.std(axis=1, ddof=1).mean()) if acc.shape[1] > 1 else None,
    }


def truth_signal(accuracy: np.ndarray) -> dict:
    """Can the stand-alone results (archs × seeds) rank these archs at all?

    Every arch is trained with the same seeds, and a seed moves every arch's accuracy together
    (its init and data order), which shifts all means alike and leaves their ranking as it is.
    So the seeds are blocks of a two-way ANOVA without interaction: ``anova_f`` / ``anova_p``
    test "the archs' true accuracies are all equal" (``scipy.stats.f`` tail, k − 1 and
    (k − 1)(r − 1) degrees of freedom); ``seed_sd`` is the residual sd of one run once the seed's
    shift is removed, ``true_spread`` the sd of the archs' true accuracies, from
    (MS_archs − MS_residual) / r floored at 0, and ``signal_share`` the part of the r-seed means'
    variance that is the archs' own. Under the normal model behind them a ranker that knew the
    true accuracies would reach ``perfect_tau`` = (2/π)·arcsin(√signal_share) against the means
    (Greiner's relation between Kendall's τ and Pearson's r): the τ any supernet can hope for on
    this ground truth. None with one seed or one arch.
    """
    from scipy.stats import f as f_dist

    acc = np.asarray(accuracy, float)
    k, r = acc.shape
    if r < 2 or k < 2:
        return {"anova_f": None, "anova_p": None, "true_spread": None, "seed_sd": None,
                "signal_share": None, "perfect_tau": None}  # fmt: skip
    arch_mean, seed_mean = acc.mean(axis=1), acc.mean(axis=0)
    resid = acc - arch_mean[:, None] - seed_mean[None, :] + acc.mean()
    ms_resid = float((resid**2).sum() / ((k - 1) * (r - 1)))
    ms_arch = float(r * arch_mean.var(ddof=1))
    f = ms_arch / ms_resid if ms_resid > 0 else float("inf") if ms_arch > 0 else float("nan")
    p = float(f_dist.sf(f, k - 1, (k - 1) * (r - 1))) if np.isfinite(f) else (0.0 if f == np.inf else float("nan"))
    true_var = max(ms_arch - ms_resid, 0.0) / r
    total = true_var + ms_resid / r
    share = true_var / total if total > 0 else 0.0
    return {"anova_f": float(f), "anova_p": p, "true_spread": float(np.sqrt(true_var)),
            "seed_sd": float(np.sqrt(ms_resid)), "signal_share": share,
            "perfect_tau": float(2 / np.pi * np.arcsin(np.sqrt(share)))}  # fmt: skip


def choice_effects(archs: Sequence[Arch], values: Sequence[float], macs: Sequence[float], min_count: int = 3) -> list[dict]:
    """What a block choice at one position does to ``values`` (one per arch), MACs held fixed.

    For every (block, block gene) that at least ``min_count`` archs have and at least
    ``min_count`` lack: the least-squares coefficient ``effect`` of its indicator in
    values ~ 1 + MACs + indicator (in the units of ``values``), its standard error and the
    two-sided p of Student's t with n − 3 degrees of freedom (``scipy.stats.t``). One regression
    per choice: with K = 16 to 48 archs a joint fit of every choice would have as many unknowns
    as archs. MACs are a covariate because the block types differ in cost.
    """
    from scipy.stats import t as t_dist

    y, m = np.asarray(values, float), np.asarray(macs, float)
    n = len(y)
    out = []
    if n < 4:
        return out
    m = (m - m.mean()) / (m.std() or 1.0)
    for pos in range(len(archs[0].blocks)):
        for gene in range(len(BLOCK_NAMES)):
            ind = np.array([float(a.blocks[pos] == gene) for a in archs])
            have = int(ind.sum())
            if have < min_count or n - have < min_count:
                continue
            x = np.column_stack([np.ones(n), m, ind])
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            resid = y - x @ coef
            var = float(resid @ resid) / (n - 3)
            cov = var * np.linalg.pinv(x.T @ x)
            se = float(np.sqrt(max(cov[2, 2], 0.0)))
            effect = float(coef[2])
            p = float(2 * t_dist.sf(abs(effect) / se, n - 3)) if se > 0 else (0.0 if effect else 1.0)
            out.append({"block": pos, "choice": gene, "name": BLOCK_NAMES[gene], "archs": have,
                        "effect": effect, "se": se, "p": p})  # fmt: skip
    return out


def blind_spots(archs: Sequence[Arch], standalone: Sequence[float], score: Sequence[float], macs: Sequence[float],
                alpha: float = 0.05) -> list[dict]:  # fmt: skip
    """The block choices that move stand-alone accuracy (:func:`choice_effects`, p < ``alpha``),
    each with what the same choice does to the supernet score: where the supernet's effect has
    the other sign or is not significant, the supernet does not see what training sees. Sorted
    by the stand-alone p."""
    truth = choice_effects(archs, standalone, macs)
    seen = {(e["block"], e["choice"]): e for e in choice_effects(archs, score, macs)}
    rows = []
    for e in sorted(truth, key=lambda e: e["p"]):
        if e["p"] >= alpha:
            continue
        s = seen[(e["block"], e["choice"])]
        rows.append({"block": e["block"], "choice": e["choice"], "name": e["name"], "archs": e["archs"],
                     "standalone": e["effect"], "standalone_p": e["p"], "supernet": s["effect"],
                     "supernet_p": s["p"], "seen": bool(s["p"] < alpha and np.sign(s["effect"]) == np.sign(e["effect"]))})  # fmt: skip
    return rows


def winner_vs_random(winner: Sequence[float], random: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """The winner's mean stand-alone accuracy against the random archs' means (archs × seeds).

    ``percentile`` is the share of random archs the winner matches or beats (``kind="weak"``
    of ``scipy.stats.percentileofscore``, in %); gaps are accuracy differences (fractions),
    each with a bootstrap 95% interval over the random archs.
    """
    from scipy.stats import percentileofscore

    w = float(np.mean(winner))
    means = np.asarray(random, float).mean(axis=1)
    pct = lambda r: float(percentileofscore(r, w, kind="weak"))
    gap_median = lambda r: w - float(np.median(r))
    gap_best = lambda r: w - float(np.max(r))
    return {
        "winner_mean": w,
        "winner_seeds": [float(x) for x in winner],
        "random_median": float(np.median(means)),
        "random_best": float(means.max()),
        "percentile": pct(means),
        "percentile_ci": _interval((means,), pct, resamples, seed),
        "gap_to_median": gap_median(means),
        "gap_to_median_ci": _interval((means,), gap_median, resamples, seed),
        "gap_to_best": gap_best(means),
        "gap_to_best_ci": _interval((means,), gap_best, resamples, seed),
        "winner_seed_spread": float(np.std(winner, ddof=1)) if len(winner) > 1 else None,
    }


def grade_goals(ranking: dict, search: dict | None, random: np.ndarray) -> dict:
    """The fidelity issue's two bars, graded on a check's own numbers.

    ``tau``: τ ≥ 0.5 with the lower end of its interval above τ(MACs); where the noise ceiling
    is below 0.5 the bar is 0.8 × the ceiling instead; ``truth_resolves`` is whether the ground
    truth's ANOVA (``ranking["truth"]``) tells the archs apart at p ≤ 0.05 (None if not known). ``winner``: the winner's mean at or above
    the 80th percentile of the random archs' means (archs × seeds), by more than their seed spread
    (a run's sd, averaged over the archs). ``winner.reach`` asks whether any search could pass
    on this ground truth: under the truth signal's normal model an arch passes on average when
    its true accuracy is ``z`` of the archs' true sds above the window's mean, and ``share`` =
    1 − Φ(z) of the window's archs are that good (``z`` None and ``share`` 0 when the archs do
    not differ at all).
    """
    from scipy.stats import norm

    ceiling = ranking.get("noise_ceiling")
    low = ceiling is not None and ceiling < 0.5
    bar = 0.8 * max(ceiling, 0.0) if low else 0.5
    met = ranking["tau"] >= bar and (low or ranking["tau_ci"][0] > ranking["tau_macs"])
    p = (ranking.get("truth") or {}).get("anova_p")
    goals = {"tau": {"value": ranking["tau"], "bar": bar, "bar_is_ceiling": low, "met": bool(met),
                     "truth_resolves": None if p is None else bool(p <= 0.05)}}  # fmt: skip
    if search is None:
        return goals
    random = np.asarray(random, float)
    means = random.mean(axis=1)
    p80, spread = float(np.percentile(means, 80)), float(random.std(axis=1, ddof=1).mean()) if random.shape[1] > 1 else 0.0
    margin = search["winner_mean"] - p80
    true_sd = truth_signal(random)["true_spread"]
    need = p80 + spread - float(means.mean())
    z = need / true_sd if true_sd else None  # archs that do not differ: none is better than another
    goals["winner"] = {"percentile": search["percentile"], "margin_over_p80": margin, "bar": spread,
                       "met": bool(search["percentile"] >= 80 and margin > spread),
                       "reach": None if true_sd is None else {"z": z, "share": 0.0 if z is None else float(norm.sf(z))}}  # fmt: skip
    return goals


def estimate_noise(scores: np.ndarray) -> dict:
    """The supernet estimate's own noise from re-scoring (archs × recalibration subsets)."""
    scores = np.asarray(scores, float)
    if scores.shape[1] < 2:
        return {"rescore_tau": None, "score_spread": None}
    pairs = [(i, j) for i in range(scores.shape[1]) for j in range(i + 1, scores.shape[1])]
    return {"rescore_tau": float(np.mean([_tau(scores[:, i], scores[:, j]) for i, j in pairs])),
            "score_spread": float(scores.std(axis=1, ddof=1).mean())}  # fmt: skip


# ---- the library call behind `spos fidelity` -------------------------------------------------


@dataclass
class FidelityInputs:
    """What a fidelity check runs on: a supernet file, its data, and optionally the search
    folder whose winner is checked and the pipeline folder whose report gets a section."""

    supernet: Path
    data: str = "builtin"
    search_dir: Path | None = None
    pipeline_dir: Path | None = None


def from_pipeline(
    pipeline_dir: str | os.PathLike,
    overrides: dict | None = None,
    *,
    supernet: str | os.PathLike | None = None,
    search: str | os.PathLike | None = None,
) -> tuple[FidelityInputs, FidelityConfig]:
    """Inputs and config of a fidelity check on a ``spos pipeline`` folder: its supernet, its
    search's winner, its ``subnet`` section as the recipe, its search's scoring settings, and as
    the window the search's own bounds (every arch it could have picked, so that the winner is
    compared with random archs under the same budget), else the supernet's sampling window.
    ``supernet`` and ``search`` check another supernet file or search folder (the window is
    then that search's bounds); ``overrides`` replace any config key."""
    folder = Path(pipeline_dir)
    net = Path(supernet) if supernet is not None else folder / "supernet" / "final.pt"
    if not net.is_file():
        hint = "pass an existing file" if supernet is not None else \
            f"run `spos pipeline --out {folder}` first or pass --supernet FILE"
        raise SposError(f"no supernet file {net}; {hint}")
    cfg = load_yaml_config(folder / "config.yaml")
    search_dir = Path(search) if search is not None else folder / "search"
    if search is not None and not (search_dir / "best.json").is_file():
        raise SposError(f"{search_dir} holds no finished search (best.json); pass a `spos search` output folder")
    search_cfg = dict(cfg.get("search") or {})
    scoring = {k: search_cfg[k] for k in ("recal_images", "holdout", "batch_size") if k in search_cfg}
    scoring["seed"] = int(cfg.get("seed", 0))
    window = _search_window(search_dir) or (cfg.get("supernet") or {}).get("window")
    if not window and isinstance(cfg.get("budget_macs"), (int, float)):
        window = {"max_macs": float(cfg["budget_macs"])}
    base = {"recipe": dict(cfg.get("subnet") or {}), "scoring": scoring, "window": window,
            "fitness": "loss" if search_cfg.get("fitness") == "loss" else "acc"}
    opts = {**base, **(overrides or {})}
    opts["recipe"] = {**base["recipe"], **((overrides or {}).get("recipe") or {})}
    inputs = FidelityInputs(net, str(cfg.get("data", "builtin")),
                            search_dir if (search_dir / "best.json").is_file() else None, folder)
    return inputs, FidelityConfig.from_dict(opts)


def run_fidelity(
    inputs: FidelityInputs,
    config: FidelityConfig,
    out_dir: str | os.PathLike,
    store_path: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    command: str = "",
    log: Callable[[str], None] = print,
    tensorboard: bool = False,
) -> dict:
    """Run the fidelity check (see the module docstring); writes ``fidelity.json``,
    ``fidelity.csv`` and ``fidelity.png`` into ``out_dir`` (and a section of the pipeline's
    ``report.md``) and returns the summary. The store defaults to ``OUT/../spos-store.sqlite``
    so that variants of one run share their stand-alone ground truth. ``tensorboard``: also log
    the scatter figure to OUT/tensorboard."""
    from .runtime import init_distributed, resolve_device

    out = Path(out_dir)
    dev = resolve_device(device)
    init_distributed(dev)
    rank, _ = rank_world()
    if tensorboard:
        tblog.require()
    with RunLock(out) if rank == 0 else contextlib.nullcontext():
        summary = _run_fidelity(inputs, config, out, store_path, dev, rank, command, log)
    if tensorboard and summary:  # rank 0: the other ranks return {}
        from .plots import fidelity_figure
        tblog.log_figure(out, "fidelity/scatter", fidelity_figure(summary))
    return summary


def _run_fidelity(inputs, config, out: Path, store_path, dev, rank: int, command: str, log) -> dict:
    """The body of :func:`run_fidelity`, under the output folder's lock."""
    from .nn.io import model_from_checkpoint

    ckpt = load_checkpoint(inputs.supernet)
    supernet, space, arch = model_from_checkpoint(ckpt, inputs.supernet)
    if arch is not None:
        raise SposError(f"{inputs.supernet} holds a subnet; fidelity needs a supernet file")
    window = Bounds.from_dict(config.window or (ckpt.get("config") or {}).get("window"))
    if rank == 0:
        write_run_info(out, {"supernet": str(inputs.supernet), "data": inputs.data,
                             "search": None if inputs.search_dir is None else str(inputs.search_dir),
                             **config.to_dict()}, command)  # fmt: skip
    archs = pick_archs(space, window, config.archs, config.seed, config.pool)
    winner = _winner(inputs.search_dir, space)
    every = archs + ([winner] if winner is not None and winner not in archs else [])
    store = Store(store_path or beside(out))
    jobs = [(a, s) for a in every for s in range(config.seeds)]
    standalone = train_standalone(jobs, space, inputs.data, config.recipe, out, store, command, log)
    scores = {}
    if rank == 0:
        scores = score_archs(supernet.to(dev).eval(), file_hash(inputs.supernet), ckpt.get("config") or {}, every,
                             inputs.data, config.scoring, config.rescore, store)  # fmt: skip
    if rank != 0:
        _barrier()
        return {}
    summary = _summarise(space, every, archs, winner, standalone, scores, config, store)
    summary.update(window=str(window), supernet=str(inputs.supernet), search=str(inputs.search_dir))
    write_outputs(out, summary)
    if inputs.pipeline_dir is not None:
        add_report_section(inputs.pipeline_dir / "report.md", out, summary)
    log(format_summary(summary))
    _barrier()
    return summary


#: The search bounds a fidelity window keeps (a latency bound needs the search's latency tables).
WINDOW_KEYS = ("min_macs", "max_macs", "min_params", "max_params", "max_score")


def _search_window(search_dir: Path) -> dict | None:
    """The cost bounds of a finished search (its config.yaml), or None if it set none."""
    path = search_dir / "config.yaml"
    if not (search_dir / "best.json").is_file() or not path.is_file():
        return None
    cfg = load_yaml_config(path)
    return {k: float(cfg[k]) for k in WINDOW_KEYS if cfg.get(k) is not None} or None


def _winner(search_dir: Path | None, space: SearchSpace) -> Arch | None:
    if search_dir is None:
        return None
    path = Path(search_dir) / "best.json"
    try:
        best = json.loads(path.read_text())["best"]["arch"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise SposError(f"cannot read the search's winner from {path} ({e}); pass a finished search folder") from None
    return Arch.parse(best, space.stage_depths)


def _summarise(space, every, archs, winner, standalone, scores, config, store) -> dict:
    table = cost_table(space)
    rows = []
    for a in every:
        key, c = str(a), table(a)
        seeds = [standalone[(key, s)]["accuracy"] for s in range(config.seeds)]
        fit = [acc if config.fitness == "acc" else -loss for acc, loss in scores[key]]
        rows.append({"arch": key, "role": "winner" if winner is not None and a == winner else "random",
                     "macs": c.macs, "params": c.params, "supernet_score": fit[0], "rescores": fit[1:],
                     "supernet_acc": scores[key][0][0], "supernet_loss": scores[key][0][1],
                     "standalone": seeds, "standalone_mean": float(np.mean(seeds))})  # fmt: skip
    acc = np.asarray([r["standalone"] for r in rows])
    stats = ranking_stats([r["supernet_score"] for r in rows], acc, [r["macs"] for r in rows],
                          [r["params"] for r in rows], config.top_k, config.bootstrap, config.seed)  # fmt: skip
    stats.update(estimate_noise(np.asarray([[r["supernet_score"], *r["rescores"]] for r in rows])))
    stats["truth"] = truth_signal(acc)
    # Both fitnesses side by side, whichever one ranks: top-1 and minus the cross-entropy.
    stats["fitness"] = config.fitness
    stats["tau_acc"] = _tau([r["supernet_acc"] for r in rows], acc.mean(axis=1))
    stats["tau_loss"] = _tau([-r["supernet_loss"] for r in rows], acc.mean(axis=1))
    stats["blind_spots"] = blind_spots(every, acc.mean(axis=1), [r["supernet_score"] for r in rows],
                                       [r["macs"] for r in rows])  # fmt: skip
    summary = {"archs": len(archs), "seeds": config.seeds, "ranking": stats, "rows": rows,
               "store": {"path": str(store.path), "hits": store.hits, "misses": store.misses}}  # fmt: skip
    rand = np.asarray([r["standalone"] for r in rows if r["role"] == "random"])
    if winner is not None:
        win = next(r for r in rows if r["role"] == "winner")
        summary["search_vs_random"] = {"winner": str(winner),
                                       **winner_vs_random(win["standalone"], rand, config.bootstrap, config.seed)}
    summary["goals"] = grade_goals(stats, summary.get("search_vs_random"), rand)
    return summary


CSV_FIELDS = ("arch", "role", "macs", "params", "supernet_score", "supernet_acc", "supernet_loss",
              "standalone_mean", "standalone", "rescores")


def write_outputs(out: Path, summary: dict) -> None:
    """``fidelity.json`` (everything), ``fidelity.csv`` (one row per arch), ``fidelity.png``."""
    from .plots import plot_fidelity

    atomic_write_json(out / "fidelity.json", summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in summary["rows"]:
        writer.writerow({**r, "standalone": " ".join(f"{x:.4f}" for x in r["standalone"]),
                         "rescores": " ".join(f"{x:.4f}" for x in r["rescores"])})  # fmt: skip
    atomic_write_text(out / "fidelity.csv", buf.getvalue())
    plot_fidelity(summary, out / "fidelity.png")


def _ci(v: list[float]) -> str:
    return f"[{v[0]:.2f}, {v[1]:.2f}]"


def format_summary(s: dict) -> str:
    """The summary lines ``spos fidelity`` prints (and the report shows)."""
    r = s["ranking"]
    lines = [
        f"archs {s['archs']} random + {'1 winner' if 'search_vs_random' in s else 'no winner'}, "
        f"{s['seeds']} seeds each",
        f"Kendall tau_b    {r['tau']:+.3f} {_ci(r['tau_ci'])}   Spearman rho {r['rho']:+.3f} {_ci(r['rho_ci'])}",
        f"noise ceiling    {_fmt(r['noise_ceiling'])} (tau between stand-alone seeds; seed spread "
        f"{_fmt(r['seed_spread'], 100, '%')})",
        f"cost baselines   tau(MACs) {r['tau_macs']:+.3f} {_ci(r['tau_macs_ci'])}   tau(params) {r['tau_params']:+.3f}",
        f"estimate noise   tau between recalibration subsets {_fmt(r['rescore_tau'])}, per-arch score "
        f"spread {_fmt(r['score_spread'], 100, '%')}",
        f"top-{r['top_k']} overlap    {r['top_k_overlap']:.2f}   regret {100 * r['regret']:.2f} points",
    ]
    t = r.get("truth") or {}
    if t.get("anova_p") is not None:
        lines.insert(3, f"truth signal     archs differ by sd {100 * t['true_spread']:.2f} points against a run's sd "
                        f"{100 * t['seed_sd']:.2f} (ANOVA F {t['anova_f']:.2f}, p {t['anova_p']:.3f}); "
                        f"a perfect ranker would reach tau {t['perfect_tau']:+.2f}")  # fmt: skip
        if t["anova_p"] > 0.05:
            lines.insert(4, "warning          the stand-alone results cannot tell these archs apart (p > 0.05): "
                            "tau here measures noise; add seeds, widen the window or lengthen the recipe")  # fmt: skip
    if "tau_acc" in r:
        lines.insert(2, f"fitness          {r['fitness']} (tau of held-out top-1 {r['tau_acc']:+.3f}, of minus "
                        f"held-out loss {r['tau_loss']:+.3f})")
    if "blind_spots" in r:
        lines.append(_choice_line(r["blind_spots"], r["fitness"]))
    w = s.get("search_vs_random")
    if w:
        lines.append(f"search vs random winner {100 * w['winner_mean']:.2f}% at percentile {w['percentile']:.0f} "
                     f"{_ci(w['percentile_ci'])}; vs median {100 * w['gap_to_median']:+.2f} points, vs best "
                     f"{100 * w['gap_to_best']:+.2f} points (winner seed spread "
                     f"{_fmt(w['winner_seed_spread'], 100, '%')})")  # fmt: skip
    lines += _goal_lines(s.get("goals"))
    st = s["store"]
    lines.append(f"store            {st['path']}: stand-alone hits {st['hits']['standalone']} / misses "
                 f"{st['misses']['standalone']}, score hits {st['hits']['supernet_score']}")  # fmt: skip
    return "\n".join(lines)


def _choice_line(spots: list[dict], fitness: str) -> str:
    if not spots:
        return "choice effects   no block choice moves stand-alone accuracy at p < 0.05 (MACs held fixed)"
    unit = "points" if fitness == "acc" else "x 0.01 of minus the loss"
    parts = [f"block {e['block']} {e['name']} ({e['archs']} archs): stand-alone {100 * e['standalone']:+.2f} points "
             f"(p {e['standalone_p']:.2g}), supernet score {100 * e['supernet']:+.2f} {unit} (p {e['supernet_p']:.2g}), "
             f"{'seen' if e['seen'] else 'NOT seen'}" for e in spots[:3]]  # fmt: skip
    more = f"; {len(spots) - 3} more in fidelity.json" if len(spots) > 3 else ""
    return "choice effects   " + "; ".join(parts) + more


def _goal_lines(g: dict | None) -> list[str]:
    if not g:
        return []
    t, verdict = g["tau"], lambda ok: "met" if ok else "not met"
    why = "0.8 x the noise ceiling, which is below 0.5" if t["bar_is_ceiling"] else "interval above tau(MACs)"
    lines = [f"goal tau         {t['value']:+.3f} against a bar of {t['bar']:.3f} ({why}): {verdict(t['met'])}"
             + ("; but the ground truth cannot rank these archs (see the warning)" if t.get("truth_resolves") is False
                else "")]  # fmt: skip
    w = g.get("winner")
    if w:
        line = (f"goal winner      percentile {w['percentile']:.0f} (bar 80), {100 * w['margin_over_p80']:+.2f} points over "
                f"the 80th percentile (bar: the seed spread {100 * w['bar']:.2f}): {verdict(w['met'])}")  # fmt: skip
        reach = w["reach"]
        if reach is not None and reach["z"] is None:
            line += "; on this ground truth no arch passes on average (the archs do not differ)"
        elif reach is not None:
            line += (f"; on this ground truth an arch passes on average only if it is among the window's best "
                     f"{100 * reach['share']:.2g}% ({reach['z']:.1f} true sds above its mean)")  # fmt: skip
        lines.append(line)
    return lines


def _fmt(x: float | None, scale: float = 1.0, unit: str = "") -> str:
    return "n/a" if x is None else f"{scale * x:.3f}{unit}" if not unit else f"{scale * x:.2f}{unit}"


def add_report_section(report: Path, out: Path, summary: dict) -> None:
    """Put (or replace) the ``## Fidelity`` section of a pipeline's ``report.md``."""
    if not report.is_file():
        return
    text = report.read_text()
    head = "## Fidelity: does the supernet rank archs like training them?"
    rel = os.path.relpath(out, report.parent)
    rows = "\n".join(f"| `{r['arch']}` | {r['role']} | {r['macs'] / 1e6:.3f}M | {100 * r['supernet_score']:.2f} | "
                     f"{' / '.join(f'{100 * x:.2f}' for x in r['standalone'])} |" for r in summary["rows"])  # fmt: skip
    section = (f"{head}\n\n```\n{format_summary(summary)}\n```\n\n![fidelity]({rel}/fidelity.png)\n\n"
               f"| arch | role | MACs | supernet score (%) | stand-alone per seed (%) |\n|---|---|---|---|---|\n"
               f"{rows}\n")  # fmt: skip
    if head in text:
        text = text[: text.index(head)].rstrip() + "\n\n"
    atomic_write_text(report, text.rstrip() + "\n\n" + section)
