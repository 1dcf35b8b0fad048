"""channels_last: auto: the memory format timed on this host, recorded, and kept on resume."""

import json

import pytest
import torch
from idx_fixtures import TINY_SPACE

from spos.genes import largest
from spos.nn.supernet import SuperNet
from spos.train.config import TrainConfig
from spos.train.layout import LAYOUTS, choose_layout, time_layouts
from spos.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = {"space": dict(TINY_SPACE), "epochs": 1, "batch_size": 32, "lr": 0.05, "warmup_steps": 1,
            "recal_images": 32, "val_size": 32, "eval_batch_size": 64, "progress": False, "out": str(tmp_path / "run")}  # fmt: skip
    return TrainConfig.from_dict({**base, **kw})


def test_timing_leaves_the_model_alone_and_rates_both_layouts(tiny_space):
    net = SuperNet(tiny_space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    strides = [p.stride() for p in net.parameters()]
    shape = (8, tiny_space.input_channels, tiny_space.input_size, tiny_space.input_size)
    rates = time_layouts(net, shape, torch.device("cpu"), [largest(tiny_space)], steps=1, rounds=1)
    assert set(rates) == set(LAYOUTS) and all(r > 0 for r in rates.values())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats too
    assert all(p.grad is None for p in net.parameters())
    assert [p.stride() for p in net.parameters()] == strides  # the run's model keeps its layout
    assert choose_layout({"channels_last": 2.0, "contiguous": 1.0}) is True
    assert choose_layout({"channels_last": 1.0, "contiguous": 2.0}) is False


def test_auto_layout_is_recorded_and_a_resume_keeps_it(tmp_path, fashion):
    cfg = tiny_config(tmp_path, epochs=1, max_steps=2, channels_last="auto")
    first = Trainer(cfg)
    first.run()
    info = json.loads((tmp_path / "run" / "run.json").read_text())["layout"]
    assert info["channels_last"] is first.channels_last
    assert set(info["img_s"]) == set(LAYOUTS) and choose_layout(info["img_s"]) is first.channels_last
    # A resumed run takes the first start's choice (same numerics), even the slower one.
    path = tmp_path / "run" / "run.json"
    body = json.loads(path.read_text())
    body["layout"]["channels_last"] = not first.channels_last
    path.write_text(json.dumps(body))
    again = Trainer(tiny_config(tmp_path, epochs=2, max_steps=3, channels_last="auto"), resume=True)
    assert again.channels_last is (not first.channels_last) and again.layout_rates is None


@pytest.mark.parametrize("value", [True, False])
def test_a_fixed_layout_is_not_timed(tmp_path, fashion, value):
    t = Trainer(tiny_config(tmp_path, channels_last=value))
    assert t.channels_last is value and t.layout_rates is None


def test_bad_layout_or_decoder_is_one_line(tmp_path):
    from spos.errors import SposError

    with pytest.raises(SposError, match="channels_last must be true, false or auto"):
        tiny_config(tmp_path, channels_last="nhwc")
    with pytest.raises(SposError, match="decoder must be one of"):
        tiny_config(tmp_path, decoder="turbo")
