"""A search killed with SIGKILL between generations resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

JOB = str(Path(__file__).parents[1] / "_search_job.py")


def _job(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, JOB, str(out), *args], stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return stdout


def _result(out: Path) -> tuple:
    state = json.loads((out / "search_state.json").read_text())
    state.pop("history")  # wall-clock seconds differ between runs
    return state, json.loads((out / "best.json").read_text()), (out / "candidates.csv").read_text()


def test_sigkill_between_generations_then_resume_equals_uninterrupted(tmp_path):
    reference = _job(tmp_path / "ref")
    killed = _job(tmp_path / "run", "--pause-after", "1")
    _finish(reference)
    for line in killed.stdout:
        if line.strip() == "GENERATION 1":
            os.kill(killed.pid, signal.SIGKILL)
            break
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    saved = json.loads((tmp_path / "run" / "search_state.json").read_text())
    assert saved["generation"] == 2 and not (tmp_path / "run" / "best.json").exists()

    printed = _finish(_job(tmp_path / "run", "--resume")).split()
    assert printed == ["GENERATION", "2", "GENERATION", "3"]  # finished generations are not redone
    assert _result(tmp_path / "run") == _result(tmp_path / "ref")
