"""``spos pipeline`` with several budgets: one family search, every winner trained from scratch."""

import json

import pytest
import yaml
from idx_fixtures import tiny_pipeline
from test_pipeline import fashion  # noqa: F401  (the fixture: small Fashion-MNIST files as SPOS_DATA)

from spos.cli import main
from spos.pipeline import PipelineConfig, run_pipeline

pytestmark = pytest.mark.usefixtures("one_thread", "fashion")


def test_two_budgets_train_each_winner_in_its_folder_and_report_the_family(tmp_path, capsys):
    cfg_file = tmp_path / "pipeline.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_pipeline(tmp_path / "run")))
    assert main(["pipeline", "--config", str(cfg_file), "--no-progress", "--budget", "macs=60K,300K"]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    family = json.loads((run / "search" / "family.json").read_text())
    # A 60K budget binds on this space (39K..103K MACs): two winners, two trainings.
    assert [r["folder"] for r in summary["family"]] == ["subnet-0.06M", "subnet-0.3M"]
    report = (run / "report.md").read_text()
    for budget, row, winner in zip((60_000, 300_000), summary["family"], family["budgets"]):
        folder = run / row["folder"]
        assert row["arch"] == winner["arch"] and row["macs"] <= budget
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert evaluation["arch"] == row["arch"] and 0 <= row["standalone_test_acc"] <= 1
        assert json.loads((folder / "run.json").read_text())  # trained there, from scratch
        assert f"`{row['arch']}`" in report and f"**{100 * row['standalone_test_acc']:.2f}**" in report
    assert "](search/family.png)" in report and (run / "search" / "family.png").read_bytes()[:4] == b"\x89PNG"
    assert "subnet-0.06M" in capsys.readouterr().out

    # Resumed with one winner's training gone: only that one trains again.
    (run / "subnet-0.3M" / "final.pt").unlink()
    (run / "subnet-0.3M" / "evaluation.json").unlink()
    kept = (run / "subnet-0.06M" / "final.pt").stat().st_mtime_ns
    logs: list[str] = []
    config = PipelineConfig.from_dict({**tiny_pipeline(run), "budget_macs": [60_000, 300_000]})
    again = run_pipeline(config, resume=True, log=logs.append)
    assert "== subnet subnet-0.3M" in logs and "== subnet subnet-0.06M: done already, skipped" in logs
    assert "== search: done already, skipped" in logs
    assert (run / "subnet-0.06M" / "final.pt").stat().st_mtime_ns == kept
    assert [r["arch"] for r in again["family"]] == [r["arch"] for r in summary["family"]]
