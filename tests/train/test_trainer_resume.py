import json
import os
import signal
import subprocess
import sys
import time

import torch
from idx_fixtures import TINY_SPACE, write_fashion

from spos.errors import SposError
from spos.runs import load_checkpoint


def _spos(out, env, *extra):
    cmd = [sys.executable, "-m", "spos", "train-supernet", "--config", str(out.parent / "c.json"),
           "--out", str(out), "--device", "cpu", "--no-progress", *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_killed_with_sigkill_and_resumed_equals_uninterrupted_run(tmp_path):
    folder = write_fashion(tmp_path / "fm", n_train=256, n_val=64)
    env = {**os.environ, "SPOS_DATA": str(folder), "OMP_NUM_THREADS": "1"}
    # 230 train images, batch 16: 14 steps per epoch; 3 epochs, checkpoint every step. The
    # channel warm-up starts at epoch 1, so the sampler's state matters across the kill.
    cfg = {"space": TINY_SPACE, "epochs": 3, "batch_size": 16, "lr": 0.05, "warmup_steps": 3,
           "schedule": "cosine", "recal_images": 32, "val_size": 32, "checkpoint_every": 1,
           "warmup_start_epoch": 1, "seed": 5}  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(cfg))  # JSON is YAML

    killed = tmp_path / "killed"
    proc = _spos(killed, env)
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            step = load_checkpoint(killed / "checkpoint.pt")["step"]
        except SposError:  # not written yet
            step = 0
        if step >= 5:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert not (killed / "final.pt").exists()
    stopped_at = load_checkpoint(killed / "checkpoint.pt")["step"]
    assert 5 <= stopped_at < 42 and stopped_at % 14  # killed mid-epoch, before the end

    resumed = _spos(killed, env, "--resume")
    full = _spos(tmp_path / "full", env)
    for p in (resumed, full):
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err

    a = load_checkpoint(killed / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "full" / "final.pt")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = load_checkpoint(killed / "checkpoint.pt"), load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert ca["step"] == cb["step"] == 42

    def metrics(run):
        rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert metrics(killed) == metrics(tmp_path / "full")
