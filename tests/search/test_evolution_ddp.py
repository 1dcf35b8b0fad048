"""Two gloo ranks under torchrun share each generation and end with the single-process result."""

import json
import subprocess
import sys
from pathlib import Path

JOB = str(Path(__file__).parents[1] / "_search_job.py")


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]


def _result(out: Path) -> tuple:
    state = json.loads((out / "search_state.json").read_text())
    state.pop("history")  # wall-clock seconds differ
    return state, (out / "candidates.csv").read_text(), json.loads((out / "best.json").read_text())


def test_two_gloo_ranks_equal_single_process(tmp_path):
    _run([sys.executable, JOB, str(tmp_path / "single")])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", JOB,
          str(tmp_path / "ddp")])  # fmt: skip
    assert _result(tmp_path / "ddp") == _result(tmp_path / "single")
    shares = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    archs = [c["arch"] for c in _result(tmp_path / "single")[0]["candidates"]]
    assert len(archs) > 8
    # Disjoint shares that together cover every candidate once, split evenly.
    assert sorted(shares[0] + shares[1]) == sorted(archs)
    assert abs(len(shares[0]) - len(shares[1])) <= 4  # at most one per generation


def test_two_gloo_ranks_write_one_store_that_a_later_search_reuses_whole(tmp_path):
    # Rank 0 reads the store and broadcasts the known scores; each rank evaluates its share of
    # the rest; rank 0 writes one transaction per generation. A single-process search of the
    # same supernet and settings then evaluates nothing, with the same result.
    db = str(tmp_path / "store.sqlite")
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", JOB,
          str(tmp_path / "ddp"), "--store", db])  # fmt: skip
    _run([sys.executable, JOB, str(tmp_path / "again"), "--store", db])
    assert json.loads((tmp_path / "again" / "evaluated.json").read_text()) == []
    assert _result(tmp_path / "again")[2] == _result(tmp_path / "ddp")[2]
    import sqlite3

    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM supernet_score").fetchone()[0]
    assert rows == len(_result(tmp_path / "ddp")[0]["candidates"])
