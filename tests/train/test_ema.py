"""ema: an exponential moving average of the weights, saved in final.pt, resumed exactly."""

import pytest
import torch
from idx_fixtures import TINY_SPACE

from spos.errors import SposError
from spos.runs import load_checkpoint
from spos.train.config import TrainConfig
from spos.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path, out: str, **kw) -> TrainConfig:
    base = {"space": dict(TINY_SPACE), "epochs": 2, "batch_size": 32, "lr": 0.05, "warmup_steps": 1,
            "recal_images": 32, "val_size": 0, "progress": False, "ema": 0.5, "out": str(tmp_path / out)}  # fmt: skip
    return TrainConfig.from_dict({**base, **kw})


def test_final_weights_are_the_ema_of_every_step_with_the_model_bn_statistics(tmp_path, fashion):
    t = Trainer(_config(tmp_path, "run", arch="0-1-23-0:4-5-67-8", max_steps=4))
    seen = []
    step = t.train_step

    def recording(*args, **kwargs):
        out = step(*args, **kwargs)
        seen.append({k: v.detach().clone() for k, v in t.model.named_parameters()})
        return out

    t.train_step = recording
    t.run()
    assert len(seen) == 4
    expected = dict(seen[0])  # the first update copies the weights
    for params in seen[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * params[k] for k in expected}
    final = load_checkpoint(tmp_path / "run" / "final.pt")["model"]
    for k, v in expected.items():
        torch.testing.assert_close(final[k], v, rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(final[k], seen[-1][k]) for k in expected)  # not the last weights
    for k, v in t.model.state_dict().items():
        if "running" in k or "num_batches" in k:
            assert torch.equal(final[k], v)  # BN statistics: the trained model's


def test_a_stopped_ema_run_resumes_to_the_same_final_weights(tmp_path, fashion):
    Trainer(_config(tmp_path, "full")).run()
    Trainer(_config(tmp_path, "cut", max_steps=5)).run()  # stops mid-epoch 1 with a checkpoint
    Trainer(_config(tmp_path, "cut"), resume=True).run()
    a = load_checkpoint(tmp_path / "full" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ema_must_be_a_decay(tmp_path):
    with pytest.raises(SposError, match="ema must be a decay between 0 and 1"):
        _config(tmp_path, "x", ema=1.0)
