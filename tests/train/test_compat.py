"""Files written by earlier code still load and resume with the current one: spos 0.1.0 before
the redesign (e4e938d, tests/fixtures/make_v010_run.py) and redesign step 2
(tests/fixtures/make_current_run.py). Old config keys still work with one deprecation note."""

import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.make_current_run import BATCH, N_TRAIN, N_VAL
from idx_fixtures import write_fashion

from spos.cli import main
from spos.genes import largest, smallest
from spos.nn import SuperNet
from spos.nn.io import load_model
from spos.pipeline import PipelineConfig, _comparable
from spos.runs import load_checkpoint
from spos.train.config import TrainConfig
from spos.train.trainer import Trainer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "v010_supernet"
CURRENT = Path(__file__).parents[1] / "fixtures" / "redesign2_supernet"
#: What write_run_info adds to config.yaml beyond TrainConfig's keys.
RESOLVED = ("resolved_space", "resolved_arch", "world_size")


def _renamed(record: list) -> list:
    return [w for w in record if issubclass(w.category, FutureWarning) and "'bn_images'" in str(w.message)]


def test_a_supernet_file_of_the_old_layout_loads_and_runs():
    model, space, arch = load_model(FIXTURE / "final.pt")
    assert isinstance(model, SuperNet) and arch is None
    x = torch.zeros(2, space.input_channels, space.input_size, space.input_size)
    assert model.eval()(x, largest(space)).shape == (2, space.num_classes)


def test_an_old_checkpoint_resumes_with_the_current_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm", n_train=128, n_val=32)))
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    old = load_checkpoint(run / "checkpoint.pt")
    assert "bn_images" in old["config"] and old["step"] == 4
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cfg = TrainConfig.from_dict({**old["config"], "out": str(run), "max_steps": None})
        trainer = Trainer(cfg, resume=True)
        trainer.run()  # the checkpoint's own config says bn_images: same key, and no second note
    assert [str(w.message) for w in _renamed(record)] == ["config key 'bn_images' is deprecated; call it 'recal_images'"]
    assert cfg.recal_images == old["config"]["bn_images"]
    assert trainer.step == trainer.total_steps == 2 * (128 - 13) // 16
    assert load_checkpoint(run / "checkpoint.pt")["step"] == trainer.step


def test_old_and_new_names_of_one_key_together_are_refused():
    with pytest.raises(Exception, match="keep 'recal_images' only"):
        TrainConfig.from_dict({"bn_images": 8, "recal_images": 8})


def test_a_supernet_file_of_the_current_layout_loads_and_runs():
    model, space, arch = load_model(CURRENT / "final.pt")
    assert isinstance(model, SuperNet) and arch is None and space.stage_depths == (1, 1)
    x = torch.zeros(2, space.input_channels, space.input_size, space.input_size)
    for path in (largest(space), smallest(space)):
        assert model.eval()(x, path).shape == (2, space.num_classes)


def test_a_current_checkpoint_resumes_to_the_end_with_the_current_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm", n_train=N_TRAIN, n_val=N_VAL)))
    run = tmp_path / "run"
    shutil.copytree(CURRENT, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    old = load_checkpoint(run / "checkpoint.pt")
    assert old["step"] == saved["max_steps"] == 3 and "recal_images" in old["config"]
    options = {k: v for k, v in saved.items() if k not in RESOLVED}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is deprecated
        trainer = Trainer(TrainConfig.from_dict({**options, "out": str(run), "max_steps": None}), resume=True)
        last = trainer.run()
    assert trainer.step == trainer.total_steps == 2 * (N_TRAIN - saved["holdout"]) // BATCH
    assert last["epoch"] == 1 and set(last["val"]) == {"largest", "smallest", "middle"}
    assert load_checkpoint(run / "checkpoint.pt")["step"] == trainer.step
    assert isinstance(load_model(run / "final.pt")[0], SuperNet)


def test_a_config_file_with_the_old_key_trains_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm", n_train=N_TRAIN, n_val=N_VAL)))
    options = {k: v for k, v in yaml.safe_load((CURRENT / "config.yaml").read_text()).items() if k not in RESOLVED}
    options["bn_images"] = options.pop("recal_images")
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text(yaml.safe_dump({**options, "max_steps": 1, "out": str(tmp_path / "run")}))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(["train-supernet", "--config", str(cfg_file)]) == 0
    assert len(_renamed(record)) == 1 and "call it 'recal_images'" in str(_renamed(record)[0].message)
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["recal_images"] == options["bn_images"] and "bn_images" not in written


def test_a_pipeline_section_with_the_old_key_warns_once_and_resumes_a_run_saved_with_it():
    section = {"bn_images": 64, "epochs": 1}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cfg = PipelineConfig.from_dict({"supernet": section, "subnet": dict(section)})
        assert cfg.supernet_config().recal_images == cfg.subnet_config("oneshot").recal_images == 64
    assert len(_renamed(record)) == 2  # one note per section that uses it, none later
    # A pipeline.json written before the rename holds the old key: still the same settings.
    saved = {**cfg.to_dict(), "supernet": section, "subnet": section}
    assert _comparable(saved) == _comparable(cfg)
