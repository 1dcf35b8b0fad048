"""Fault injection: what a long run meets on a shared cluster, through the real code paths.

Every case checks the exit status, the one-line message and that earlier files stay intact and
loadable: a non-finite loss, SIGTERM mid-epoch and mid-search (and the requeued command that
resumes exactly), a full disk, an output folder that cannot be written, two writers on one run
folder, a stale lock, and inputs that changed under a resumed run.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from idx_fixtures import TINY_SPACE, write_fashion

from spos.cli import main
from spos.errors import EXIT_PREEMPTED
from spos.runs import RunLock, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    folder = write_fashion(tmp_path / "fm", n_train=256, n_val=32)
    monkeypatch.setenv("SPOS_DATA", str(folder))
    return folder


def _config(tmp_path: Path, **kw) -> Path:
    cfg = {"space": {**TINY_SPACE, "dropout": 0.0}, "epochs": 3, "batch_size": 32, "lr": 0.05,
           "warmup_steps": 1, "val_size": 32, "recal_images": 32, "eval_batch_size": 32,
           "progress": False, "holdout": 0}  # fmt: skip
    cfg.update(kw)
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(cfg: Path, out: Path, *extra: str) -> int:
    return main(["train-supernet", "--config", str(cfg), "--out", str(out), *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def _finite(path: Path) -> bool:
    model = load_checkpoint(path)["model"]
    return all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


def _nan_at(monkeypatch, steps: set[int]) -> None:
    """Make the loss of the given (1-based) optimizer steps NaN: a bad batch, injected."""
    calls = {"n": 0}
    forward = torch.nn.CrossEntropyLoss.forward

    def poisoned(self, x, y):
        calls["n"] += 1
        loss = forward(self, x, y)
        return loss * float("nan") if calls["n"] in steps else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)


# ---- divergence ------------------------------------------------------------------------------


def test_nan_loss_stops_at_its_step_and_keeps_the_last_finite_checkpoint(tmp_path, fashion, capsys, monkeypatch):
    _nan_at(monkeypatch, {5})
    out = tmp_path / "run"
    assert _train(_config(tmp_path, checkpoint_every=2), out) == 2
    line = _one_line_error(capsys)
    assert "training diverged: non-finite loss at step 5" in line and "lower lr" in line
    assert not (out / "final.pt").exists()
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 4 and _finite(out / "checkpoint.pt")


def test_skip_policy_steps_over_bad_batches_then_stops_after_max_bad_steps(tmp_path, fashion, capsys, monkeypatch):
    _nan_at(monkeypatch, {3, 6})
    out = tmp_path / "skip"
    assert _train(_config(tmp_path, on_divergence="skip", max_bad_steps=2), out) == 0
    err = capsys.readouterr().err
    assert err.count("step skipped") == 2
    assert _finite(out / "final.pt")  # BN statistics of the bad batches were restored too
    assert load_checkpoint(out / "checkpoint.pt")["bad_steps"] == 2

    _nan_at(monkeypatch, {3, 6})
    assert _train(_config(tmp_path, on_divergence="skip", max_bad_steps=1), tmp_path / "stop") == 2
    assert "more than max_bad_steps" in _one_line_error(capsys)


def test_a_learning_rate_that_explodes_is_caught_without_injection(tmp_path, fashion, capsys):
    assert _train(_config(tmp_path, lr=1e30, warmup_steps=0), tmp_path / "run") == 2
    assert "training diverged" in _one_line_error(capsys)
    assert not (tmp_path / "run" / "final.pt").exists()


# ---- preemption ------------------------------------------------------------------------------


def _spawn(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "spos", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for(path: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_mid_epoch_saves_then_the_same_command_resumes_exactly(tmp_path, fashion):
    cfg = _config(tmp_path, epochs=4, checkpoint_every=3)
    # The scheduler's command, used for the first start and every requeue alike.
    command = ["train-supernet", "--config", str(cfg), "--out", str(tmp_path / "run"), "--resume"]
    first = _spawn(command)
    _wait_for(tmp_path / "run" / "checkpoint.pt")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == EXIT_PREEMPTED, err
    assert "starting a new run" in err
    assert err.strip().splitlines()[-1].startswith("spos: stopped: SIGTERM at step")
    step = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"]
    assert 3 <= step < 4 * 8 and step % 8 != 0  # mid-epoch (8 steps an epoch)

    again = _spawn(command)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    ref = _spawn(["train-supernet", "--config", str(cfg), "--out", str(tmp_path / "ref")])
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    a = load_checkpoint(tmp_path / "run" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "ref" / "final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.fixture
def supernet_file(tmp_path, fashion) -> Path:
    out = tmp_path / "supernet"
    assert _train(_config(tmp_path, epochs=1, max_steps=3, holdout=64, val_size=0), out) == 0
    return out / "final.pt"


def _search_args(supernet: Path, out: Path, generations: int) -> list[str]:
    return ["search", "--supernet", str(supernet), "--out", str(out), "--population", "6", "--parents", "2",
            "--generations", str(generations), "--recal-images", "32", "--holdout", "48", "--batch-size", "16",
            "--device", "cpu"]  # fmt: skip


def test_sigterm_mid_search_saves_the_generation_and_resumes_to_the_same_result(tmp_path, supernet_file):
    args = _search_args(supernet_file, tmp_path / "s", 6)
    proc = _spawn(args)
    for line in proc.stdout:
        if line.startswith("generation 1/"):
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "spos: stopped: SIGTERM after generation" in err.strip().splitlines()[-1]
    saved = json.loads((tmp_path / "s" / "search_state.json").read_text())
    assert 1 <= saved["generation"] < 6 and not (tmp_path / "s" / "best.json").exists()

    resumed = _spawn([*args, "--resume"])
    ref = _spawn(_search_args(supernet_file, tmp_path / "ref", 6))
    for p in (resumed, ref):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    best = [json.loads((tmp_path / d / "best.json").read_text())["best"] for d in ("s", "ref")]
    assert best[0] == best[1]


def test_a_supernet_file_that_changed_under_a_resumed_search_is_refused(tmp_path, supernet_file, capsys):
    out = tmp_path / "s"
    assert main(_search_args(supernet_file, out, 1)) == 0
    ckpt = load_checkpoint(supernet_file)
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, supernet_file)
    assert main([*_search_args(supernet_file, out, 2), "--resume"]) == 2
    assert "changed under the search" in _one_line_error(capsys)


# ---- the disk says no ------------------------------------------------------------------------


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return r.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path, fashion, capsys,
                                                                                    monkeypatch):  # fmt: skip
    out = tmp_path / "run"
    assert _train(_config(tmp_path, epochs=1, max_steps=2, val_size=0), out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    import spos.runs

    write = spos.runs._write_all

    def full(f, data, path):  # the disk fills up while the next checkpoint is written
        if path.name == "checkpoint.pt":
            write(f, data[: len(data) // 2], path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(f, data, path)

    monkeypatch.setattr(spos.runs, "_write_all", full)
    assert _train(_config(tmp_path, epochs=1, max_steps=4, val_size=0), out, "--resume") == 2
    line = _one_line_error(capsys)
    assert f"cannot write {out / 'checkpoint.pt'}: No space left on device (ENOSPC)" in line
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not list(out.glob(".*.tmp")) and load_checkpoint(out / "checkpoint.pt")["step"] == 2


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounting a tmpfs needs root on Linux")
def test_a_real_full_tmpfs_gives_enospc_in_one_line(tmp_path, fashion, capsys):
    disk = tmp_path / "small"
    if not _mount_tmpfs(disk, "size=64k"):
        pytest.skip("this sandbox may not mount a tmpfs")
    try:
        assert _train(_config(tmp_path, epochs=1, max_steps=2, val_size=0), disk / "run") == 2
        line = _one_line_error(capsys)
        assert "No space left on device (ENOSPC)" in line
        assert not list((disk / "run").glob(".*.tmp"))
    finally:
        _umount(disk)


def test_an_output_folder_that_cannot_be_written_fails_before_training(tmp_path, fashion, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)  # a real permission refusal
        expect = "Permission denied (EACCES)"
    elif _mount_tmpfs(ro, "ro,size=1m"):
        expect = "Read-only file system (EROFS)"
    else:  # root ignores permissions and no mount is allowed here: inject the refusal
        import spos.runs

        def refuse(*a, **kw):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(spos.runs.tempfile, "mkstemp", refuse)
        expect = "Read-only file system (EROFS)"
    try:
        assert _train(_config(tmp_path), ro / "run") == 2
        line = _one_line_error(capsys)
        assert expect in line and "--out" in line
    finally:
        _umount(ro)
        ro.chmod(0o755)
    # A parent that is a file: a real refusal whoever runs the test.
    (tmp_path / "afile").write_text("x")
    assert _train(_config(tmp_path), tmp_path / "afile" / "run") == 2
    assert "Not a directory (ENOTDIR)" in _one_line_error(capsys)


# ---- one writer per run folder ---------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_host_and_pid(tmp_path, fashion, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from spos.runs import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
                               str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _train(_config(tmp_path), tmp_path / "run", "--resume") == 2
        line = _one_line_error(capsys)
        assert "is in use by another run (" in line and f"pid {holder.pid} " in line
        assert not (tmp_path / "run" / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock file is stale and is taken over.
    assert f"pid {holder.pid} " in (tmp_path / "run" / RunLock.NAME).read_text()
    assert _train(_config(tmp_path, epochs=1, max_steps=2), tmp_path / "run", "--resume") == 0
    assert f"took over the lock of {tmp_path / 'run'} left by" in capsys.readouterr().err


def test_two_concurrent_training_processes_one_wins(tmp_path, fashion):
    # 6 epochs, not 2: a 2-epoch run once ended before the other process got past its imports
    # (both exited 0; the second found a stale lock and a finished run), so they never overlapped.
    cfg = _config(tmp_path, epochs=6)
    out = tmp_path / "run"
    procs = [_spawn(["train-supernet", "--config", str(cfg), "--out", str(out), "--resume"]) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = next(err for p, (_, err) in zip(procs, results) if p.returncode == 2)
    assert "is in use by another run" in loser.strip().splitlines()[-1]
    assert _finite(out / "final.pt")


# ---- inputs that changed under a run ---------------------------------------------------------


def test_resuming_on_a_changed_dataset_is_refused(tmp_path, fashion, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _train(_config(tmp_path, epochs=1, max_steps=2), out) == 0
    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm2", n_train=288, n_val=32)))
    assert _train(_config(tmp_path, epochs=1, max_steps=4), out, "--resume") == 2
    line = _one_line_error(capsys)
    assert "trained on other data (train: 256 -> 288)" in line
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2


def test_time_based_checkpoints_bound_the_work_a_kill_loses(tmp_path, fashion, monkeypatch):
    from spos.train.config import TrainConfig
    from spos.train.trainer import Trainer

    saved: list[int] = []
    save = Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self: saved.append(self.step) or save(self))
    base = yaml.safe_load(_config(tmp_path, epochs=1, max_steps=5).read_text())
    Trainer(TrainConfig.from_dict({**base, "out": str(tmp_path / "off"), "checkpoint_minutes": 0})).run()
    assert saved == [5]  # only the end of the (shortened) epoch
    saved.clear()
    # A tiny interval: every step is "10 minutes later", so every step is saved.
    Trainer(TrainConfig.from_dict({**base, "out": str(tmp_path / "on"), "checkpoint_minutes": 1e-9})).run()
    assert saved == [1, 2, 3, 4, 5]
