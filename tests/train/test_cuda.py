"""CUDA paths (AMP bf16 / fp16 with the GradScaler, channels_last on the GPU, the divergence check
under fp16): they run wherever a GPU is present and are skipped elsewhere (CI has none)."""

from __future__ import annotations

import pytest
import torch
from idx_fixtures import TINY_SPACE, write_fashion

from spos.runs import load_checkpoint
from spos.train.config import TrainConfig
from spos.train.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOS_DATA", str(write_fashion(tmp_path / "fm", n_train=256, n_val=64)))


def _config(tmp_path, **kw) -> TrainConfig:
    base = {"space": dict(TINY_SPACE), "epochs": 1, "max_steps": 6, "batch_size": 32, "lr": 0.05,
            "warmup_steps": 1, "val_size": 64, "recal_images": 64, "eval_batch_size": 64, "device": "cuda",
            "progress": False, "out": str(tmp_path / "run")}  # fmt: skip
    return TrainConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_supernet_trains_on_cuda_with_amp_and_either_layout(tmp_path, fashion, amp, channels_last):
    trainer = Trainer(_config(tmp_path, amp=amp, channels_last=channels_last))
    assert trainer.amp_dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    record = trainer.run()
    model = load_checkpoint(tmp_path / "run" / "final.pt")["model"]
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
    assert all(0.0 <= p["acc"] <= 1.0 for p in record["val"].values())


def test_fp16_overflow_steps_are_the_scalers_not_divergence(tmp_path, fashion):
    # A huge initial scale overflows the first fp16 backward passes: the GradScaler skips those
    # steps and lowers its scale; the divergence check must not count them.
    trainer = Trainer(_config(tmp_path, amp="fp16"))
    trainer.scaler = torch.amp.GradScaler("cuda", init_scale=2.0**40)
    trainer.run()
    assert trainer.bad_steps == 0 and trainer.scaler.get_scale() < 2.0**40
