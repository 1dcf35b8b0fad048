"""Several paths per training step: FairNAS (fair sampler) and the sandwich rule with in-place
distillation."""

import pytest
import torch
from idx_fixtures import TINY_SPACE, write_fashion

from spos.errors import SposError
from spos.train.config import TrainConfig
from spos.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    folder = write_fashion(tmp_path / "fm", n_train=128, n_val=32)
    monkeypatch.setenv("SPOS_DATA", str(folder))
    return folder


def _config(tmp_path, **kw) -> TrainConfig:
    base = {"space": {**TINY_SPACE, "dropout": 0.0}, "epochs": 1, "batch_size": 32, "lr": 0.05,
            "warmup_steps": 1, "val_size": 0, "progress": False, "out": str(tmp_path / "run")}  # fmt: skip
    return TrainConfig.from_dict({**base, **kw})


def _moved_blocks(trainer, before) -> list[set[int]]:
    """Per position, the choice blocks whose weights changed."""
    after = trainer.model.state_dict()
    moved = [set() for _ in trainer.model.features]
    for name in before:
        if name.startswith("features.") and not torch.equal(before[name], after[name]):
            _, position, block = name.split(".")[:3]
            moved[int(position)].add(int(block))
    return moved


def test_fair_step_updates_every_choice_block_and_uniform_step_one(tmp_path, fashion):
    for sampler, expect in (("fair", {0, 1, 2, 3}), ("uniform", None)):
        trainer = Trainer(_config(tmp_path / sampler, sampler=sampler))
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        paths = trainer.train_step(next(trainer._epoch_batches(0, 0)), 0)
        moved = _moved_blocks(trainer, before)
        for position, blocks in enumerate(moved):
            assert blocks == (expect or {paths[0].blocks[position]}), (sampler, position)


def test_sandwich_trains_largest_smallest_and_two_sampled_paths(tmp_path, fashion):
    trainer = Trainer(_config(tmp_path, sandwich=True, window={"max_macs": 1e9}))
    ends = trainer.validation_paths(0)
    paths = trainer.step_paths(0)
    assert len(paths) == 4 and paths[:2] == [ends["largest"], ends["smallest"]]


def test_sandwich_widths_ends_are_the_widest_and_narrowest_channels_on_fresh_block_types(tmp_path, fashion):
    # Before the channel warm-up starts only the widest gene; 13 epochs after it, every gene.
    trainer = Trainer(_config(tmp_path, sandwich=True, sandwich_ends="widths", warmup_start_epoch=1))
    genes = trainer.space.channel_genes
    n = trainer.space.num_blocks
    assert all(p.channels == (max(genes),) * n for p in trainer.step_paths(0))
    steps = [trainer.step_paths(14) for _ in range(8)]
    for paths in steps:
        assert len(paths) == 4
        assert paths[0].channels == (max(genes),) * n and paths[1].channels == (min(genes),) * n
    # the ends' block types are drawn per step, not fixed like the window's ends
    assert len({p[0].blocks for p in steps}) > 1 and len({p[1].blocks for p in steps}) > 1
    with pytest.raises(SposError, match="sandwich_ends must be 'window' or 'widths'"):
        _config(tmp_path, sandwich=True, sandwich_ends="max")


def test_distill_uses_labels_for_the_teacher_only_and_kl_for_the_rest(tmp_path, fashion, monkeypatch):
    calls = {"label": 0, "kl": 0}
    kl = torch.nn.functional.kl_div

    def counting_kl(*a, **kw):
        calls["kl"] += 1
        return kl(*a, **kw)

    monkeypatch.setattr("spos.train.trainer.F.kl_div", counting_kl)
    for distill in (True, False):
        calls.update(label=0, kl=0)
        trainer = Trainer(_config(tmp_path / str(distill), sandwich=True, distill=distill))
        criterion = trainer.criterion

        def counting(out, y, criterion=criterion):
            calls["label"] += 1
            return criterion(out, y)

        trainer.criterion = counting
        trainer.train_step(next(trainer._epoch_batches(0, 0)), 0)
        assert calls == ({"label": 1, "kl": 3} if distill else {"label": 4, "kl": 0})


def test_distill_without_sandwich_and_sandwich_with_fair_are_refused(tmp_path):
    with pytest.raises(SposError, match="distill needs sandwich"):
        _config(tmp_path, distill=True)
    with pytest.raises(SposError, match="use one of them"):
        _config(tmp_path, sandwich=True, sampler="fair")
