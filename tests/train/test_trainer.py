import json
import math

import pytest
import torch
from idx_fixtures import TINY_SPACE

from spos.cli import main
from spos.errors import SposError
from spos.nn.io import load_model
from spos.train.config import TrainConfig
from spos.train.optim import clear_unchosen_grads, lr_factor, param_groups
from spos.train.trainer import Trainer


@pytest.fixture(autouse=True)
def one_thread():
    # Several test processes share 2 cores: more threads only spin.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = {"space": dict(TINY_SPACE), "epochs": 2, "batch_size": 32, "lr": 0.05, "warmup_steps": 2,
                "recal_images": 64, "val_size": 64, "eval_batch_size": 64, "progress": False, "out": str(tmp_path / "run")}  # fmt: skip
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_lr_schedule_warms_up_linearly_then_cosine_to_zero_or_constant():
    assert [lr_factor(s, 4, 20, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 20, "cosine") == 1.0
    assert lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert lr_factor(20, 4, 20, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert all(lr_factor(s, 4, 20, "constant") == 1.0 for s in range(4, 40))
    assert all(lr_factor(s + 1, 4, 20, "cosine") <= lr_factor(s, 4, 20, "cosine") for s in range(4, 20))
    assert math.isclose(lr_factor(0, 0, 10, "cosine"), 1.0)


def test_no_weight_decay_on_bn_and_biases(tiny_space):
    from spos.genes import largest
    from spos.nn.supernet import SubNet

    net = SubNet(tiny_space.replace(use_se=True), largest(tiny_space))
    decay, no_decay = param_groups(net, 4e-5)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0
    # The exact sets, from the module types (not from tensor shapes): every conv / linear weight
    # decays, every BN parameter and every bias does not, and nothing is left out or doubled.
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    weights = {id(m.weight) for m in net.modules() if isinstance(m, layers)}
    rest = {id(m.bias) for m in net.modules() if isinstance(m, layers) and m.bias is not None}
    rest |= {id(p) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert len(weights) > 10 and len(rest) > 10 and any(isinstance(m, torch.nn.Linear) for m in net.modules())
    assert any(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Conv2d))  # SE convs
    assert [id(p) for p in decay["params"]] and {id(p) for p in decay["params"]} == weights
    assert {id(p) for p in no_decay["params"]} == rest
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))
    # And the optimizer the trainer builds uses these groups.
    opt = torch.optim.SGD(param_groups(net, 0.1), lr=1.0)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def _block_params(trainer, position, block):
    return [p.detach().clone() for p in trainer.model.features[position][block].parameters()]


def test_unchosen_blocks_get_no_momentum_or_weight_decay_update(tmp_path, fashion):
    trainer = Trainer(tiny_config(tmp_path, weight_decay=0.1))
    batches = next(trainer._epoch_batches(0, 0))
    (first,) = trainer.train_step(batches, 0)  # every chosen block now has a momentum buffer
    second = trainer.sampler.sample(0)
    trainer.sampler.load_state_dict(trainer.sampler.state_dict())  # (no-op; keeps the API honest)
    moved = [i for i, (a, b) in enumerate(zip(first.blocks, second.blocks)) if a != b]
    assert moved, "seed 0 should change some block between the first two paths"
    # Re-run the second step from the same sampler position so it trains ``second``.
    trainer2 = Trainer(tiny_config(tmp_path, weight_decay=0.1, out=str(tmp_path / "run2")))
    trainer2.train_step(batches, 0)
    before = {i: _block_params(trainer2, i, first.blocks[i]) for i in moved}
    (arch,) = trainer2.train_step(batches, 0)
    assert arch == second
    for i in moved:
        after = _block_params(trainer2, i, first.blocks[i])
        assert all(torch.equal(a, b) for a, b in zip(before[i], after))
        # The block that did run at that position moved.
        assert any(p.grad is not None for p in trainer2.model.features[i][second.blocks[i]].parameters())


def test_without_clearing_momentum_would_move_unchosen_blocks(tiny_space):
    # The control for the test above: zero grads (instead of None) still move a block via
    # momentum and weight decay, so the property is not vacuous.
    from spos.nn.supernet import SuperNet
    from spos.space import Arch

    net = SuperNet(tiny_space)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    a = Arch((0,) * 5, (9,) * 5, tiny_space.stage_depths)
    b = Arch((1,) * 5, (9,) * 5, tiny_space.stage_depths)
    x = torch.randn(4, 3, 32, 32)
    for arch, clear in ((a, True), (b, False)):
        opt.zero_grad(set_to_none=True)
        net(x, arch).sum().backward()
        if clear:
            clear_unchosen_grads(net, arch)
        else:
            for p in net.features[0][0].parameters():
                p.grad = torch.zeros_like(p)
        before = [p.detach().clone() for p in net.features[0][0].parameters()]
        opt.step()
    assert not all(torch.equal(p0, p1) for p0, p1 in zip(before, net.features[0][0].parameters()))


def test_supernet_run_writes_metrics_checkpoint_and_final_model(tmp_path, fashion):
    cfg = tiny_config(tmp_path, warmup_start_epoch=0)
    last = Trainer(cfg, command="test").run()
    out = tmp_path / "run"
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1] and last == lines[-1]
    # holdout 10% of 256 -> 230 train images -> 7 steps of 32 per epoch
    assert lines[-1]["step"] == 14 and lines[0]["train_images"] == 7 * 32
    assert set(lines[-1]["val"]) == {"largest", "smallest", "middle"}
    assert all(0 <= v["acc"] <= 1 and v["images"] == 64 for v in lines[-1]["val"].values())
    # Epoch 1 of the channel warm-up allows scales >= 1.6 only.
    assert lines[1]["val"]["smallest"]["arch"].endswith("7-7-77-7")
    for name in ("config.yaml", "run.json", "checkpoint.pt", "final.pt"):
        assert (out / name).is_file()
    model, space, arch = load_model(out / "final.pt")
    assert arch is None and space.stage_depths == (1, 1, 2, 1) and space.input_channels == 1
    model2, _, _ = load_model(out / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_a_channel_warm_up_the_run_ends_before_finishing_is_warned_about(tmp_path, fashion, capsys):
    # TINY_SPACE allows scales 0.6..2.0: the warm-up reaches 0.6 nine epochs after its start.
    for kw, warned in (({"epochs": 12, "warmup_start_epoch": 3}, True), ({"epochs": 12, "warmup_start_epoch": 2}, False),
                       ({"epochs": 12, "warmup_start_epoch": None}, False), ({"epochs": 2, "warmup_start_epoch": 0}, True),
                       ({"epochs": 12, "warmup_start_epoch": 3, "min_channel_gene": 3}, False)):  # fmt: skip
        Trainer(tiny_config(tmp_path / str(len(kw)), **kw))._warn_unreached_widths()
        err = capsys.readouterr().err
        assert ("warning: the channel warm-up" in err) == warned, kw
    Trainer(tiny_config(tmp_path, epochs=12, warmup_start_epoch=3))._warn_unreached_widths()
    assert capsys.readouterr().err.strip() == (
        "spos: warning: the channel warm-up from epoch 3 reaches scale 0.8 by this run's last epoch and the "
        "narrowest, 0.6, only at epoch 12: widths below 0.8 are never trained on their own; set epochs above 12, "
        "or warmup_start_epoch at most 2 or null")
    Trainer(tiny_config(tmp_path, epochs=2, warmup_start_epoch=1))._warn_unreached_widths()
    assert capsys.readouterr().err.strip().endswith("set epochs above 10, or warmup_start_epoch null")


def test_cli_trains_a_subnet_and_its_loss_falls(tmp_path, fashion, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"space": TINY_SPACE, "epochs": 99, "batch_size": 32, "lr": 0.05,
                               "warmup_steps": 2, "val_size": 64}))  # fmt: skip
    code = main(["train", "0-1-23-3:9-5-97-2", "--config", str(cfg), "--epochs", "3",
                 "--out", str(tmp_path / "sub"), "--no-progress", "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(s) for s in (tmp_path / "sub" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3  # --epochs overrode the file's 99
    assert lines[0]["train_images"] == 8 * 32  # a subnet trains on the whole train split
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert 0 <= lines[-1]["val"]["acc"] <= 1
    _model, _space, arch = load_model(tmp_path / "sub" / "final.pt")
    assert str(arch) == "0-1-23-3:9-5-97-2"


def test_config_errors_are_one_line_cli_errors(tmp_path, fashion, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert main(["train-supernet", "--config", str(cfg), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:  # not one of --schedule's choices: argparse refuses it
        main(["train-supernet", "--schedule", "linear", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--schedule: invalid choice: 'linear'" in err and err.count("\n") == 1


def test_checkpoint_of_another_space_or_config_is_refused(tmp_path, fashion):
    Trainer(tiny_config(tmp_path, max_steps=2)).run()
    other_space = dict(TINY_SPACE, stage_channels=[16, 32, 64, 96])
    with pytest.raises(SposError, match="another search space"):
        Trainer(tiny_config(tmp_path, space=other_space), resume=True).run()
    with pytest.raises(SposError, match="another config.*lr"):
        Trainer(tiny_config(tmp_path, lr=0.2), resume=True).run()
    with pytest.raises(SposError, match="--resume"):
        Trainer(tiny_config(tmp_path)).run()
    # Changing only a resume-neutral key (the step limit) continues the run.
    last = Trainer(tiny_config(tmp_path, max_steps=4), resume=True).run()
    assert last["step"] == 4


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_applies_on_cpu_and_can_be_turned_off(tmp_path, fashion, channels_last):
    trainer = Trainer(tiny_config(tmp_path, channels_last=channels_last, max_steps=1, val_size=0))
    seen = []
    trainer.model.stem.register_forward_hook(
        lambda m, i, out: seen.append(out.is_contiguous(memory_format=torch.channels_last))
    )
    trainer.run()
    assert seen and all(s == channels_last for s in seen)


def test_trainer_recipe_smoothing_nesterov_and_per_step_cosine(tmp_path, fashion):
    """SPEC §4's recipe as the trainer builds it, each piece checked against its own formula."""
    cfg = tiny_config(tmp_path, label_smoothing=0.1, warmup_steps=2, epochs=2)
    trainer = Trainer(cfg)
    # Label smoothing reaches the loss: (1 - eps) * NLL + eps * mean over classes of -log p.
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8)
    logp = logits.log_softmax(1)
    hand = (0.9 * -logp[torch.arange(8), y] - 0.1 * logp.mean(1)).mean()
    torch.testing.assert_close(trainer.criterion(logits, y), hand)
    assert not torch.allclose(trainer.criterion(logits, y), torch.nn.functional.cross_entropy(logits, y))
    # Nesterov momentum 0.9 in every parameter group.
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in trainer.optimizer.param_groups)
    # The lr moves every step (not every epoch): linear warm-up, then cosine to 0 at the end.
    total, warm = trainer.total_steps, trainer.warmup_steps
    assert (total, warm) == (14, 2)
    batches = trainer._epoch_batches(0, 0)
    lrs = []
    for _ in range(6):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.train_step(next(batches), 0)
    hand_lr = [0.05 * (s + 1) / warm if s < warm else 0.05 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
               for s in range(6)]  # fmt: skip
    assert lrs == pytest.approx(hand_lr, rel=1e-9)
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))  # within epoch 0: per step


def test_trainer_clips_the_gradient_norm(tmp_path, fashion):
    norms = {}
    for clip in (None, 1e-3):
        trainer = Trainer(tiny_config(tmp_path, grad_clip=clip, out=str(tmp_path / f"run{clip}")))
        trainer.train_step(next(trainer._epoch_batches(0, 0)), 0)
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        norms[clip] = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    assert norms[None] > 1e-2  # unclipped: far above the limit ...
    assert norms[1e-3] == pytest.approx(1e-3, rel=1e-3)  # ... clipped: exactly at it
