import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from idx_fixtures import tiny_pipeline, write_fashion

from spos.cli import main
from spos.errors import SposError
from spos.pipeline import PipelineConfig, run_pipeline
from spos.runs import load_checkpoint


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    folder = write_fashion(tmp_path / "fashion", n_train=320, n_val=100)
    monkeypatch.setenv("SPOS_DATA", str(folder))
    return folder


def test_pipeline_runs_end_to_end_and_resumes_without_retraining(tmp_path, fashion, capsys):
    cfg_file = tmp_path / "pipeline.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_pipeline(tmp_path / "run")))
    assert main(["pipeline", "--config", str(cfg_file), "--no-progress"]) == 0
    run = tmp_path / "run"
    for f in ("report.md", "summary.json", "evaluation.json", "training.png", "sampling.png", "config.yaml",
              "run.json", "supernet/final.pt", "supernet/metrics.jsonl", "search/best.json",
              "search/candidates.csv", "search/pareto.json", "search/fitness.png", "search/pareto.png",
              "subnet/final.pt", "subnet/metrics.jsonl"):  # fmt: skip
        assert (run / f).is_file(), f
        assert (run / f).stat().st_size > 0, f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["macs"] <= 300_000
    assert 0.0 <= summary["standalone_test_acc"] <= 1.0 and 0.0 <= summary["supernet_test_acc"] <= 1.0
    best = json.loads((run / "search" / "best.json").read_text())
    assert best["best"]["arch"] == summary["arch"]
    rows = list(csv.DictReader((run / "search" / "candidates.csv").open()))
    assert len(rows) == best["evaluated"] and all(float(r["macs"]) <= 300_000 for r in rows)
    report = (run / "report.md").read_text()
    assert summary["arch"] in report
    for png in ("sampling.png", "search/fitness.png", "search/pareto.png", "training.png"):
        assert f"]({png})" in report and (run / png).read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "stand-alone" in out and summary["arch"] in out

    # A second invocation without --resume refuses; with --resume it trains nothing again.
    stamps = {f: (run / f).stat().st_mtime_ns for f in ("supernet/final.pt", "subnet/final.pt",
                                                        "search/best.json", "evaluation.json")}  # fmt: skip
    assert main(["pipeline", "--config", str(cfg_file), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["pipeline", "--config", str(cfg_file), "--no-progress", "--resume"]) == 0
    assert "supernet: done already" in capsys.readouterr().out
    assert stamps == {f: (run / f).stat().st_mtime_ns for f in stamps}


def test_killed_pipeline_resumes_the_unfinished_stage(tmp_path, fashion):
    cfg = PipelineConfig.from_dict(tiny_pipeline(tmp_path / "run"))
    run = tmp_path / "run"
    # Simulate a stop after the supernet stage: its result exists, later stages do not.
    run_pipeline(cfg, log=lambda m: None)
    for f in ("search/best.json", "subnet/final.pt", "evaluation.json"):
        (run / f).unlink()
    (run / "subnet" / "checkpoint.pt").unlink()
    sup = (run / "supernet" / "final.pt").stat().st_mtime_ns
    logs: list[str] = []
    summary = run_pipeline(cfg, resume=True, log=logs.append)
    assert (run / "supernet" / "final.pt").stat().st_mtime_ns == sup
    assert any("supernet: done already" in m for m in logs)
    assert any(m == "== subnet" for m in logs)
    assert (run / "subnet" / "final.pt").is_file() and summary["arch"]


#: `spos ARGS...` that stops dead after optimizer step HOLD (argv[1]): it prints a line and
#: sleeps there, so the test can SIGKILL it at a known step instead of racing a fast stage.
HOLD_AFTER_STEP = """
import sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook
from spos.cli import main
steps = []
def hold(optimizer, args, kwargs):
    steps.append(None)
    if len(steps) == int(sys.argv[1]):
        print(f"held after optimizer step {len(steps)}", flush=True)
        time.sleep(600)
register_optimizer_step_post_hook(hold)
sys.exit(main(sys.argv[2:]))
"""


def _final_model(path) -> dict:
    return load_checkpoint(path)["model"]


@pytest.mark.usefixtures("one_thread")
def test_sigkill_mid_supernet_stage_then_resume_ends_exactly_like_an_uninterrupted_pipeline(tmp_path, fashion):
    def config(out) -> str:
        cfg = tiny_pipeline(out)
        cfg["supernet"]["checkpoint_every"] = 2  # 6 steps: checkpoints after steps 2 and 4
        path = tmp_path / f"{out.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    run, ref = tmp_path / "run", tmp_path / "ref"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AFTER_STEP, "5", "pipeline", "--config", config(run),
                             "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("held after optimizer step 5"):
            break
    proc.kill()  # SIGKILL: no handler, no finally, no last checkpoint
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    # Killed mid-stage: step 5 of the supernet's 6 is lost, its checkpoint holds step 4.
    assert load_checkpoint(run / "supernet" / "checkpoint.pt")["step"] == 4
    assert not (run / "supernet" / "final.pt").exists() and not (run / "search").exists()

    resumed = subprocess.run([sys.executable, "-m", "spos", "pipeline", "--config", config(run), "--no-progress",
                              "--resume"], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert main(["pipeline", "--config", config(ref), "--no-progress"]) == 0

    for stage in ("supernet", "subnet"):
        a, b = _final_model(run / stage / "final.pt"), _final_model(ref / stage / "final.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b), stage
    best = [json.loads((d / "search" / "best.json").read_text()) for d in (run, ref)]
    assert best[0]["best"] == best[1]["best"] and best[0]["top"] == best[1]["top"]
    evaluation = [json.loads((d / "evaluation.json").read_text()) for d in (run, ref)]
    assert evaluation[0] == evaluation[1]


def test_pipeline_config_errors_are_clear(tmp_path):
    with pytest.raises(SposError, match="unknown pipeline config keys \\['epochs'\\]"):
        PipelineConfig.from_dict({"epochs": 3})
    with pytest.raises(SposError, match="may not set \\['out'\\]"):
        PipelineConfig.from_dict({"supernet": {"out": "x"}})
    with pytest.raises(SposError, match="unknown supernet section keys"):
        PipelineConfig.from_dict({"supernet": {"epochz": 3}}).supernet_config()


def test_imagenet_pipeline_script_dry_run_on_a_fake_imagefolder(tmp_path):
    """scripts/imagenet/pipeline.sh with the imagenet preset: the full-size space is
    built and every stage runs one step on a tiny fake ImageFolder tree (torchrun, 1 process)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = tmp_path / "imagenet"
    for split, n in (("train", 12), ("val", 4)):
        for c in ("n01440764", "n01443537"):
            (root / split / c).mkdir(parents=True)
            for i in range(n // 2 if split == "val" else n):
                Image.new("RGB", (64, 48), (40 * i % 255, 90, 30)).save(root / split / c / f"{i}.JPEG")
    repo = Path(__file__).resolve().parents[1]
    sets = ["supernet.max_steps=1", "supernet.batch_size=2", "supernet.holdout=4", "supernet.recal_images=2",
            "supernet.val_size=2", "supernet.workers=0", "supernet.eval_batch_size=2",
            "search.population=2", "search.parents=1", "search.generations=1", "search.recal_images=2",
            "search.holdout=2", "search.batch_size=2", "subnet.max_steps=1", "subnet.batch_size=2",
            "subnet.workers=0", "subnet.val_size=2", "sampling_plot_samples=20"]  # fmt: skip
    env = {**os.environ, "NPROC": "1", "OUT": str(tmp_path / "run"), "MASTER_PORT": "29517",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "2"}  # fmt: skip
    assert shutil.which("torchrun", path=env["PATH"])
    r = subprocess.run(["bash", str(repo / "scripts/imagenet/pipeline.sh"), str(root), "--no-progress",
                        *[a for s in sets for a in ("--set", s)], "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["macs"] <= 330e6
    cfg = yaml.safe_load((tmp_path / "run" / "supernet" / "config.yaml").read_text())
    assert cfg["resolved_space"]["stage_channels"] == [64, 160, 320, 640]
    assert cfg["resolved_space"]["num_classes"] == 2 and cfg["epochs"] == 120 and cfg["lr"] == 1.3
