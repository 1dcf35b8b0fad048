"""Files written before the redesign (spos 0.1.0 at e4e938d, tests/fixtures/make_v010_run.py)
still load and resume, and old config keys still work with a one-line deprecation note."""

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from idx_fixtures import write_fashion

from spos.genes import largest
from spos.nn import SuperNet
from spos.nn.io import load_model
from spos.runs import load_checkpoint
from spos.train.config import TrainConfig
from spos.train.trainer import Trainer

FIXTURE = Path(__file__).parent / "fixtures" / "v010_supernet"


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
    with pytest.warns(FutureWarning, match="'bn_images' is deprecated; call it 'recal_images'"):
        cfg = TrainConfig.from_dict({**old["config"], "out": str(run), "max_steps": None})
    trainer = Trainer(cfg, resume=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the checkpoint's own config says bn_images
        trainer.run()
    assert trainer.step == trainer.total_steps == 2 * (128 - 13) // 16
    assert load_checkpoint(run / "checkpoint.pt")["step"] == trainer.step


def test_old_and_new_names_of_one_key_together_are_refused():
    with pytest.raises(Exception, match="keep 'recal_images' only"):
        TrainConfig.from_dict({"bn_images": 8, "recal_images": 8})
