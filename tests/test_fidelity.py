"""spos fidelity: stand-alone ground truth vs supernet scores, resumable, stored once, shared by ranks."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from idx_fixtures import TINY_SPACE, write_fashion
from scipy.stats import kendalltau, linregress, norm, spearmanr, ttest_rel

from spos.cli import main
from spos.cost.bounds import Bounds
from spos.cost.table import cost_table
from spos.errors import SposError
from spos.fidelity import (
    blind_spots,
    choice_effects,
    format_summary,
    grade_goals,
    pick_archs,
    ranking_stats,
    truth_signal,
    winner_vs_random,
)
from spos.space import Arch, SearchSpace

COMMON = {"batch_size": 32, "lr": 0.05, "warmup_steps": 2, "schedule": "constant", "workers": 0,
          "eval_batch_size": 64, "progress": False}  # fmt: skip


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """A finished tiny pipeline run (supernet, search, subnet) on tiny Fashion-MNIST files."""
    root = tmp_path_factory.mktemp("fid")
    data = write_fashion(root / "fashion", n_train=320, n_val=100)
    os.environ["SPOS_DATA"] = str(data)
    cfg = {
        "data": "builtin", "out": str(root / "run"), "budget_macs": 300_000,
        "space": {**TINY_SPACE, "input_channels": 1, "num_classes": 10},
        "supernet": {**COMMON, "epochs": 2, "max_steps": 6, "holdout": 64, "val_size": 50,
                     "sampler": "strolling", "warmup_start_epoch": 1},
        "search": {"population": 6, "parents": 2, "generations": 2, "recal_images": 64, "holdout": 64,
                   "batch_size": 64},
        "subnet": {**COMMON, "epochs": 2},
        "sampling_plot_samples": 100,
    }  # fmt: skip
    (root / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", "--config", str(root / "pipeline.yaml"), "--no-progress"]) == 0
    yield root / "run", data
    os.environ.pop("SPOS_DATA", None)


def _args(run, out, store, *extra):
    return ["fidelity", "--pipeline", str(run), "--out", str(out), "--store", str(store), "--archs", "4",
            "--seeds", "2", "--rescore", "1", *extra]  # fmt: skip


def _standalone_rows(store) -> int:
    if not store.is_file():
        return 0
    try:
        with sqlite3.connect(store, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM standalone").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_fidelity_resumes_after_sigkill_without_retraining_a_finished_sub_run(pipeline_run, tmp_path):
    run, data = pipeline_run
    out, store = tmp_path / "fid", tmp_path / "store.sqlite"
    env = {**os.environ, "SPOS_DATA": str(data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "spos", *_args(run, out, store)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 300
    while _standalone_rows(store) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _standalone_rows(store)
    assert done_before >= 2, proc.stderr.read().decode()[-2000:]
    finished = sorted(p for p in (out / "runs").iterdir() if (p / "final.pt").is_file())
    stamps = {p: (p / "final.pt").stat().st_mtime_ns for p in finished}

    assert main(_args(run, out, store)) == 0
    summary = json.loads((out / "fidelity.json").read_text())
    jobs = 2 * len(summary["rows"])
    # The finished sub-runs were read from the store, never trained again.
    assert summary["store"]["hits"]["standalone"] == done_before
    assert summary["store"]["misses"]["standalone"] == jobs - done_before
    for p, stamp in stamps.items():
        assert (p / "final.pt").stat().st_mtime_ns == stamp, p
    assert _standalone_rows(store) == jobs
    for f in ("fidelity.json", "fidelity.csv", "fidelity.png", "config.yaml", "run.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    report = (run / "report.md").read_text()
    assert "## Fidelity" in report and "Kendall tau_b" in report
    # What the ground truth can resolve, from the same rows, in the json and the report.
    truth = truth_signal(np.array([r["standalone"] for r in summary["rows"]]))
    assert summary["ranking"]["truth"] == pytest.approx(truth, nan_ok=True)
    assert "truth signal" in report and ("cannot tell these archs apart" in report) == (truth["anova_p"] > 0.05)
    goals = summary["goals"]
    assert goals["tau"]["value"] == summary["ranking"]["tau"] and "goal tau" in report
    assert ("goal winner" in report) == ("winner" in goals) == ("search_vs_random" in summary)
    assert "choice effects" in report and summary["ranking"]["blind_spots"] == blind_spots(
        [Arch.parse(r["arch"], TINY_SPACE["stage_depths"]) for r in summary["rows"]], [r["standalone_mean"] for r in summary["rows"]],
        [r["supernet_score"] for r in summary["rows"]], [r["macs"] for r in summary["rows"]])  # fmt: skip
    assert format_summary(summary).count("\n") == report.split("```")[1].strip().count("\n")


def test_a_second_supernet_reuses_every_stand_alone_result(pipeline_run, tmp_path):
    run, _ = pipeline_run
    out, store = tmp_path / "fid", tmp_path / "store.sqlite"
    assert main(_args(run, out, store)) == 0
    first = json.loads((out / "fidelity.json").read_text())
    other = tmp_path / "other.pt"  # the training checkpoint: another file holding a supernet
    shutil.copy(run / "supernet" / "checkpoint.pt", other)
    assert main(_args(run, tmp_path / "fid2", store, "--supernet", str(other))) == 0
    second = json.loads((tmp_path / "fid2" / "fidelity.json").read_text())
    assert second["store"]["misses"]["standalone"] == 0
    assert second["store"]["hits"]["standalone"] == 2 * len(second["rows"])
    assert [r["standalone"] for r in second["rows"]] == [r["standalone"] for r in first["rows"]]
    assert not (tmp_path / "fid2" / "runs").exists()  # nothing was trained


def test_two_gloo_ranks_split_the_sub_runs_and_give_the_same_table_as_one_process(pipeline_run, tmp_path):
    run, data = pipeline_run
    # One thread in both: float summation order (and so training) depends on the thread count.
    env = {**os.environ, "SPOS_DATA": str(data), "OMP_NUM_THREADS": "1"}
    one = [sys.executable, "-m", "spos", *_args(run, tmp_path / "one", tmp_path / "one.sqlite")]
    assert subprocess.run(one, env=env, capture_output=True, timeout=600).returncode == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "spos",
           *_args(run, tmp_path / "two", tmp_path / "two.sqlite")]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "fidelity.json").read_text())
    two = json.loads((tmp_path / "two" / "fidelity.json").read_text())
    same = lambda key: json.dumps(two[key], sort_keys=True) == json.dumps(one[key], sort_keys=True)
    assert same("rows") and same("ranking") and same("search_vs_random")
    # Both ranks trained: each wrote its share of the sub-run folders' logs.
    runs = sorted((tmp_path / "two" / "runs").iterdir())
    assert len(runs) == 2 * len(two["rows"])


def test_rank_statistics_agree_with_scipy_and_intervals_cover_them():
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.6, 0.9, size=(12, 1)) + rng.normal(0, 0.01, size=(12, 2))
    score = acc.mean(1) + rng.normal(0, 0.03, 12)
    macs, params = rng.uniform(1, 2, 12), rng.uniform(1, 2, 12)
    s = ranking_stats(score, acc, macs, params, top_k=3, resamples=500)
    mean = acc.mean(1)
    assert s["tau"] == pytest.approx(kendalltau(score, mean).statistic)
    assert s["rho"] == pytest.approx(spearmanr(score, mean).statistic)
    assert s["tau_macs"] == pytest.approx(kendalltau(macs, mean).statistic)
    assert s["noise_ceiling"] == pytest.approx(kendalltau(acc[:, 0], acc[:, 1]).statistic)
    assert s["tau_ci"][0] <= s["tau"] <= s["tau_ci"][1] and s["tau_ci"][0] < s["tau_ci"][1]
    # A score that is the accuracy itself ranks perfectly: tau 1, full overlap, no regret.
    perfect = ranking_stats(mean, acc, macs, params, top_k=3, resamples=200)
    assert perfect["tau"] == pytest.approx(1.0) and perfect["top_k_overlap"] == 1.0 and perfect["regret"] == 0
    # The reversed score ranks worst: tau -1 and the regret is the whole spread.
    worst = ranking_stats(-mean, acc, macs, params, top_k=3, resamples=200)
    assert worst["tau"] == pytest.approx(-1.0) and worst["regret"] == pytest.approx(mean.max() - mean.min())


def test_truth_signal_blocks_the_seeds_and_its_perfect_ranker_tau_matches_a_simulation():
    rng = np.random.default_rng(1)
    # True accuracies with sd 1 and two seeds with noise sd sqrt(2): the two-seed means are half
    # signal, half noise, so a ranker knowing the truth reaches (2/pi) asin(sqrt(0.5)) = 0.5.
    true = rng.normal(0, 1, 3000)
    acc = true[:, None] + rng.normal(0, np.sqrt(2), size=(3000, 2))
    t = truth_signal(acc)
    assert t["anova_p"] < 1e-6 and t["signal_share"] == pytest.approx(0.5, abs=0.05)
    assert t["true_spread"] == pytest.approx(1.0, abs=0.05) and t["seed_sd"] == pytest.approx(np.sqrt(2), abs=0.05)
    assert t["perfect_tau"] == pytest.approx(kendalltau(true, acc.mean(1)).statistic, abs=0.03)
    # A seed that shifts every arch alike changes no ranking, and nothing here.
    shifted = truth_signal(acc[:50] + np.array([0.0, 3.0]))
    assert shifted == pytest.approx(truth_signal(acc[:50]))
    # With two archs the blocked F test is scipy's paired t-test over the seeds (F = t^2).
    pair = rng.normal(0.9, 0.01, size=(2, 5)) + rng.normal(0, 0.02, size=5)
    paired = ttest_rel(pair[0], pair[1])
    two = truth_signal(pair)
    assert two["anova_f"] == pytest.approx(paired.statistic**2) and two["anova_p"] == pytest.approx(paired.pvalue)
    # Archs whose seed means are equal: no signal, p = 1, and a perfect ranker gets tau 0.
    flat = truth_signal(np.array([[0.90, 0.92], [0.92, 0.90], [0.89, 0.93]]))
    assert flat["anova_p"] == pytest.approx(1.0) and flat["signal_share"] == 0 and flat["perfect_tau"] == 0
    assert flat["seed_sd"] == pytest.approx(np.sqrt(np.var([-0.02, 0.02, -0.04], ddof=1) / 2))
    assert truth_signal(acc[:, :1])["perfect_tau"] is None  # one seed: no noise estimate


def test_choice_effects_hold_macs_fixed_and_blind_spots_name_what_the_supernet_misses():
    rng = np.random.default_rng(3)
    archs = [Arch(tuple(int(g) for g in rng.integers(0, 4, 3)), (5, 5, 5), (1, 1, 1)) for _ in range(60)]
    xcept = np.array([float(a.blocks[0] == 3) for a in archs])
    # SXB-3 blocks cost more, so MACs and the choice go together: a fit without MACs would mix them.
    macs = 1e6 + 2e5 * xcept + rng.normal(0, 5e4, 60)
    noise = rng.normal(0, 0.001, 60)
    acc = 0.90 + 0.01 * (macs - 1e6) / 1e5 - 0.004 * xcept + noise
    e = next(x for x in choice_effects(archs, acc, macs) if (x["block"], x["choice"]) == (0, 3))
    assert e["effect"] == pytest.approx(-0.004, abs=0.001) and e["p"] < 1e-6 and e["archs"] == int(xcept.sum())
    # The coefficient and its standard error are scipy's slope once MACs are partialled out of
    # both sides (Frisch-Waugh), with one degree of freedom fewer for the MACs slope.
    basis = np.column_stack([np.ones(60), macs])
    part = lambda v: v - basis @ np.linalg.lstsq(basis, v, rcond=None)[0]
    fwl = linregress(part(xcept), part(acc))
    assert e["effect"] == pytest.approx(fwl.slope) and e["se"] == pytest.approx(fwl.stderr * np.sqrt(58 / 57))
    # A supernet that sees the penalty (and ranks nothing else) versus one that sees only MACs.
    seeing = blind_spots(archs, acc, 0.8 - 0.004 * xcept + rng.normal(0, 0.001, 60), macs)
    blind = blind_spots(archs, acc, 0.8 + 0.01 * (macs - 1e6) / 1e5 + rng.normal(0, 0.001, 60), macs)
    assert [(x["block"], x["choice"], x["seen"]) for x in seeing if x["block"] == 0 and x["choice"] == 3] == [(0, 3, True)]
    assert [(x["block"], x["choice"], x["seen"]) for x in blind if x["block"] == 0 and x["choice"] == 3] == [(0, 3, False)]
    assert all(x["standalone_p"] < 0.05 for x in blind)
    # A choice fewer than three archs have (or lack) is not fitted.
    rare = [Arch((3 if i < 2 else 0, 0, 0), (5, 5, 5), (1, 1, 1)) for i in range(10)]
    assert all(x["choice"] != 3 for x in choice_effects(rare, rng.normal(size=10), rng.normal(size=10)))


def test_winner_percentile_and_gaps_against_random_archs_on_a_constructed_case():
    random = np.repeat(np.linspace(0.80, 0.89, 10)[:, None], 2, axis=1)  # 0.80, 0.81, ..., 0.89
    w = winner_vs_random([0.875, 0.875], random, resamples=300)
    assert w["percentile"] == pytest.approx(80.0)  # beats 0.80 ... 0.87: 8 of 10
    assert w["gap_to_median"] == pytest.approx(0.875 - 0.845)
    assert w["gap_to_best"] == pytest.approx(0.875 - 0.89)
    top = winner_vs_random([0.95, 0.93], random, resamples=300)
    assert top["percentile"] == 100.0 and top["winner_seed_spread"] == pytest.approx(np.std([0.95, 0.93], ddof=1))


def test_goals_are_graded_on_the_checks_own_numbers_and_the_winner_bar_is_passed_half_the_time_at_its_reach():
    ranking = {"tau": 0.30, "tau_ci": [0.10, 0.50], "tau_macs": 0.20, "noise_ceiling": 0.35}
    low = grade_goals(ranking, None, np.zeros((4, 2)))["tau"]
    assert low == {"value": 0.30, "bar": pytest.approx(0.28), "bar_is_ceiling": True, "met": True,
                   "truth_resolves": None}
    noisy = grade_goals({**ranking, "truth": {"anova_p": 0.2}}, None, np.zeros((4, 2)))["tau"]
    assert noisy["met"] and noisy["truth_resolves"] is False
    # A ceiling of 0.5 or more: tau must reach 0.5 and its interval must start above tau(MACs).
    high = {**ranking, "noise_ceiling": 0.7, "tau": 0.6}
    assert not grade_goals(high, None, np.zeros((4, 2)))["tau"]["met"]  # 0.10 < tau(MACs) 0.20
    assert grade_goals({**high, "tau_ci": [0.25, 0.8]}, None, np.zeros((4, 2)))["tau"]["met"]
    assert not grade_goals({**high, "tau": 0.45, "tau_ci": [0.25, 0.8]}, None, np.zeros((4, 2)))["tau"]["met"]
    # Random archs 0.80 ... 0.89, each run 0.005 off its mean (a run's sd 0.0071): the 80th percentile of
    # the means is 0.872, so 0.880 passes (percentile 90, margin 0.008) and 0.875 does not (margin 0.003).
    random = np.linspace(0.80, 0.89, 10)[:, None] + np.array([[0.005, -0.005], [-0.005, 0.005]] * 5)
    for mean, met in ((0.880, True), (0.875, False), (0.86, False)):
        g = grade_goals(ranking, winner_vs_random([mean, mean], random, resamples=100), random)["winner"]
        assert g["met"] == met and g["margin_over_p80"] == pytest.approx(mean - 0.872)
        assert g["bar"] == pytest.approx(np.sqrt(2 * 0.005**2))
    # The reach: archs with true sd 1 and runs with sd 1, two seeds. A winner whose true accuracy is
    # `z` true sds above the window's mean passes in about half of its measurements.
    rng = np.random.default_rng(3)
    window = rng.normal(0, 1, 4000)[:, None] + rng.normal(0, 1, (4000, 2))
    reach = grade_goals(ranking, winner_vs_random([0, 0], window, resamples=10), window)["winner"]["reach"]
    assert reach["z"] == pytest.approx(0.8416 * np.sqrt(1.5) + np.sqrt(2 / np.pi), abs=0.1)
    assert reach["share"] == pytest.approx(1 - norm.cdf(reach["z"]))
    p80, spread = np.percentile(window.mean(1), 80), window.std(axis=1, ddof=1).mean()
    runs = reach["z"] + rng.normal(0, 1, (2000, 2))
    assert np.mean(runs.mean(1) - p80 > spread) == pytest.approx(0.5, abs=0.04)
    # Archs that do not differ at all: nothing in the window passes on average.
    flat = np.array([[0.90, 0.92], [0.92, 0.90], [0.89, 0.93]])
    assert grade_goals(ranking, winner_vs_random([0.9, 0.9], flat, resamples=10), flat)["winner"]["reach"] == {
        "z": None, "share": 0.0}


def test_picked_archs_lie_in_the_window_one_per_macs_stratum(tiny_space):
    table = cost_table(tiny_space)
    macs = sorted(table(a).macs for a in pick_archs(tiny_space, Bounds(), 50, seed=1, pool=5000))
    lo, hi = macs[0], macs[-1]
    window = Bounds(min_macs=lo + (hi - lo) * 0.25, max_macs=lo + (hi - lo) * 0.75)
    archs = pick_archs(tiny_space, window, 8, seed=3, pool=5000)
    got = [table(a).macs for a in archs]
    assert len(set(map(str, archs))) == 8
    assert all(window.min_macs <= m <= window.max_macs for m in got)
    assert got == sorted(got)  # strata are taken in MACs order, one arch each
    assert got[-1] - got[0] > 0.6 * (window.max_macs - window.min_macs)  # they span the window
    assert pick_archs(tiny_space, window, 8, seed=3, pool=5000) == archs  # seeded
    with pytest.raises(Exception, match="widen the window"):
        pick_archs(tiny_space, Bounds(max_macs=1), 4)


def test_space_hash_keys_are_stable_for_equal_spaces():
    from spos.store import config_hash

    assert config_hash(SearchSpace().to_dict()) == config_hash(SearchSpace().to_dict())
    assert config_hash(SearchSpace().to_dict()) != config_hash(SearchSpace(use_se=True).to_dict())


def test_window_flags_replace_the_supernets_window_and_bad_ones_fail_before_training(pipeline_run, tmp_path, capsys):
    run, _ = pipeline_run
    space = SearchSpace.from_options({**TINY_SPACE, "input_channels": 1, "num_classes": 10})
    table = cost_table(space)
    macs = sorted(table(a).macs for a in pick_archs(space, Bounds(max_macs=300_000), 40, pool=5000))
    lo, hi = macs[len(macs) // 4], macs[3 * len(macs) // 4]  # the middle half of the pipeline's window
    out, store = tmp_path / "fid", tmp_path / "store.sqlite"
    args = _args(run, out, store, "--min-macs", f"{lo / 1e3}k", "--max-macs", str(hi), "--seeds", "1")
    assert main(args) == 0
    summary = json.loads((out / "fidelity.json").read_text())
    random = [r for r in summary["rows"] if r["role"] == "random"]
    assert len(random) == 4 and all(lo <= r["macs"] <= hi for r in random)
    assert summary["window"] == str(Bounds(min_macs=lo, max_macs=hi))
    capsys.readouterr()
    # Bounds the wrong way round: one line naming them, and nothing trained.
    bad = tmp_path / "bad"
    assert main(_args(run, bad, tmp_path / "bad.sqlite", "--min-macs", "2M", "--max-macs", "1M")) != 0
    err = capsys.readouterr().err
    assert "MACs" in err and "Traceback" not in err
    assert not (bad / "runs").exists()


def test_the_default_window_is_the_searchs_own_bounds_else_the_supernets_window(tmp_path):
    from spos.fidelity import from_pipeline

    run = tmp_path / "run"
    (run / "supernet").mkdir(parents=True)
    (run / "supernet" / "final.pt").write_bytes(b"")  # from_pipeline only reads the configs
    cfg = {"data": "builtin", "budget_macs": 1.2e6, "search": {"holdout": 300},
           "supernet": {"window": {"min_macs": 0.9e6, "max_macs": 1.2e6}}, "subnet": {"epochs": 5}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    # No finished search: the supernet's sampling window.
    inputs, config = from_pipeline(run)
    assert config.window == {"min_macs": 0.9e6, "max_macs": 1.2e6} and inputs.search_dir is None
    # A finished search: every arch it could pick (its bounds; unset ones and latency dropped).
    (run / "search").mkdir()
    (run / "search" / "best.json").write_text('{"best": {"arch": "x"}}')
    (run / "search" / "config.yaml").write_text(yaml.safe_dump(
        {"max_macs": 1.2e6, "min_macs": None, "max_params": 6e5, "max_latency_ms": 3.0, "recal_images": 10}))
    inputs, config = from_pipeline(run)
    assert config.window == {"max_macs": 1.2e6, "max_params": 6e5} and inputs.search_dir == run / "search"
    assert config.recipe == {"epochs": 5} and config.scoring["holdout"] == 300
    # An explicit window (the CLI's --min-macs ...) wins over both.
    _, config = from_pipeline(run, {"window": {"min_macs": 1e6}})
    assert config.window == {"min_macs": 1e6}
    # A search with no cost bound, and no supernet window: the pipeline's budget.
    (run / "search" / "config.yaml").write_text(yaml.safe_dump({"max_macs": None}))
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "supernet": {}}))
    assert from_pipeline(run)[1].window == {"max_macs": 1.2e6}


def test_another_search_brings_its_own_window_and_another_supernet_needs_no_pipeline_supernet(tmp_path):
    from spos.fidelity import from_pipeline

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": "builtin", "budget_macs": 1.2e6, "subnet": {"epochs": 5}}))
    with pytest.raises(SposError, match="run `spos pipeline --out .*` first or pass --supernet FILE"):
        from_pipeline(run)
    net = tmp_path / "lever.pt"
    with pytest.raises(SposError, match="no supernet file .*lever.pt; pass an existing file"):
        from_pipeline(run, supernet=net)
    net.write_bytes(b"")  # from_pipeline only reads the configs
    for name, bound in (("search", 1.2e6), ("other", 0.8e6)):
        (run / name).mkdir()
        (run / name / "best.json").write_text('{"best": {"arch": "x"}}')
        (run / name / "config.yaml").write_text(yaml.safe_dump({"max_macs": bound}))
    inputs, config = from_pipeline(run, supernet=net)
    assert inputs.supernet == net and inputs.search_dir == run / "search" and config.window == {"max_macs": 1.2e6}
    # The search checked is the one whose bounds make the window, not the pipeline's own.
    inputs, config = from_pipeline(run, supernet=net, search=run / "other")
    assert inputs.search_dir == run / "other" and config.window == {"max_macs": 0.8e6}
    with pytest.raises(SposError, match="holds no finished search"):
        from_pipeline(run, supernet=net, search=tmp_path / "nowhere")
