import json

import pytest
from idx_fixtures import tiny_pipeline, write_fashion

from spos import tblog
from spos.errors import SposError


def scalar_tags(folder) -> dict[str, list[float]]:
    """The scalars of every event file under ``folder``, read back the way TensorBoard does."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_epoch_records_become_train_and_per_path_validation_scalars():
    record = {"epoch": 1, "step": 8, "lr": 0.05, "train_loss": 2.0, "train_acc": 0.25, "train_images": 256,
              "seconds": 2.0, "val": {"largest": {"arch": "0:0", "acc": 0.5, "loss": 1.5},
                                      "smallest": {"arch": "0:0", "acc": 0.4, "loss": 1.7}}}  # fmt: skip
    assert tblog.epoch_scalars(record) == {
        "train/loss": 2.0, "train/acc": 0.25, "train/lr": 0.05, "train/img_per_s": 128.0,
        "val/largest/acc": 0.5, "val/largest/loss": 1.5, "val/smallest/acc": 0.4, "val/smallest/loss": 1.7,
    }  # fmt: skip
    subnet = {**record, "val": {"acc": 0.9, "loss": 0.3}}
    assert {k: v for k, v in tblog.epoch_scalars(subnet).items() if k.startswith("val")} == {
        "val/acc": 0.9, "val/loss": 0.3}


def test_pipeline_and_fidelity_with_tensorboard_log_training_validation_search_and_scatter(tmp_path, monkeypatch):
    from spos.pipeline import PipelineConfig, run_pipeline

    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm", n_train=320, n_val=100)))
    run = tmp_path / "run"
    run_pipeline(PipelineConfig.from_dict({**tiny_pipeline(run), "tensorboard": True}), log=lambda m: None)
    supernet = scalar_tags(run / "supernet" / "tensorboard")
    metrics = [json.loads(line) for line in (run / "supernet" / "metrics.jsonl").read_text().splitlines()]
    for tag in ("train/loss", "train/acc", "train/lr", "train/img_per_s", "val/largest/acc", "val/smallest/acc",
                "val/middle/acc", "val/middle/loss"):  # fmt: skip
        assert len(supernet[tag]) == len(metrics) >= 1, tag  # one value per epoch
    assert supernet["train/loss"] == pytest.approx([m["train_loss"] for m in metrics])
    assert supernet["val/largest/acc"] == pytest.approx([m["val"]["largest"]["acc"] for m in metrics])
    subnet = scalar_tags(run / "subnet" / "tensorboard")
    assert {"train/loss", "train/acc", "train/lr", "train/img_per_s", "val/acc", "val/loss"} <= set(subnet)
    search = scalar_tags(run / "search" / "tensorboard")
    history = json.loads((run / "search" / "search_state.json").read_text())["history"]
    assert search["search/best_fitness"] == pytest.approx([h["best_fitness"] for h in history])
    assert search["search/mean_fitness"] == pytest.approx([h["mean_fitness"] for h in history])
    # The dependency-free records are still written.
    assert (run / "supernet" / "metrics.jsonl").is_file() and (run / "search" / "fitness.png").is_file()

    # The fidelity check of that run logs its scatter figure.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spos.cli import main

    fid = tmp_path / "fidelity"
    assert main(["fidelity", "--pipeline", str(run), "--out", str(fid), "--archs", "3", "--seeds", "1",
                 "--rescore", "1", "--epochs", "1", "--tensorboard"]) == 0  # fmt: skip
    acc = EventAccumulator(str(fid / "tensorboard"))
    acc.Reload()
    assert acc.Tags()["images"] == ["fidelity/scatter"]
    assert acc.Images("fidelity/scatter")[0].encoded_image_string[:4] == b"\x89PNG"
    assert (fid / "fidelity.png").is_file()


def test_every_command_that_trains_or_searches_takes_tensorboard(tmp_path):
    from spos.cli import build_parser
    from spos.cli.search import resolve_options
    from spos.cli.train import config_from_args

    parse = build_parser().parse_args
    assert config_from_args(parse(["train-supernet", "--tensorboard"]), supernet=True).tensorboard
    assert config_from_args(parse(["train", "oneshot", "--tensorboard"]), supernet=False).tensorboard
    assert not config_from_args(parse(["train", "oneshot"]), supernet=False).tensorboard
    assert resolve_options(parse(["search", "--supernet", "x.pt", "--tensorboard"]))[0]["tensorboard"] is True
    assert parse(["fidelity", "--pipeline", "runs/demo", "--tensorboard"]).tensorboard
    assert parse(["pipeline", "--tensorboard"]).tensorboard



def test_missing_tensorboard_is_a_one_line_error_before_any_work(monkeypatch):
    import importlib.util

    from spos.train.config import TrainConfig

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(SposError, match=r"pip install 'spos\[tensorboard\]'") as e:
        TrainConfig.from_dict({"tensorboard": True})
    assert "\n" not in str(e.value)
    TrainConfig.from_dict({"tensorboard": False})  # the default needs nothing
