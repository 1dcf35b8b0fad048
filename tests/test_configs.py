from importlib import resources

import pytest
import yaml

from spos import configs
from spos.cli import main
from spos.errors import SposError


def test_every_shipped_yaml_is_a_listed_preset_and_back():
    files = {p.name[: -len(".yaml")] for p in resources.files("spos.configs").iterdir() if p.name.endswith(".yaml")}
    assert files == set(configs.PRESETS) == set(configs.names())
    assert set(configs.DEFAULT_PIPELINE.values()) <= set(configs.PRESETS)


@pytest.mark.parametrize("name", sorted(configs.PRESETS))
def test_every_preset_is_a_valid_config_of_its_command(name):
    from spos.pipeline import PipelineConfig
    from spos.train.config import TrainConfig

    values = configs.load_config(name)
    command = configs.PRESETS[name][0]
    if command == "pipeline":
        cfg = PipelineConfig.from_dict(values)
        cfg.supernet_config(), cfg.search_config(), cfg.subnet_config("oneshot")
    else:
        assert TrainConfig.from_dict(values).arch is None  # `spos train ARCH` gives a subnet's arch


def test_config_takes_a_path_before_a_preset_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("epochs: 3\n")
    assert configs.load_config("my.yaml") == {"epochs": 3}
    assert configs.load_config("fashion-mnist")["space"]["stage_depths"] == [1, 1, 2, 1]
    (tmp_path / "fashion-mnist").write_text("epochs: 4\n")  # a file of that name wins
    assert configs.load_config("fashion-mnist") == {"epochs": 4}


def test_an_unknown_config_names_the_presets_in_one_line():
    with pytest.raises(SposError, match="neither a file nor a preset.*fashion-mnist, fashion-mnist-supernet") as e:
        configs.load_config("fashion")
    assert "\n" not in str(e.value)
    with pytest.raises(SposError, match="'missing/x.yaml' is neither a file nor a preset"):
        configs.load_config("missing/x.yaml")
    with pytest.raises(SposError, match="unknown preset 'x'; presets: fashion-mnist"):
        configs.preset_text("x")


def test_spos_configs_lists_the_presets_and_shows_one_verbatim(capsys):
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == configs.names()
    assert any(line.split()[:3] == ["imagenet-supernet", "spos", "train-supernet"] for line in listing)
    assert main(["configs", "show", "fashion-mnist"]) == 0
    shown = capsys.readouterr().out
    assert shown == configs.preset_text("fashion-mnist") and shown.startswith("# The demo")
    assert yaml.safe_load(shown)["out"] == "runs/demo"


def test_train_commands_take_a_preset_name(tmp_path):
    from spos.cli import build_parser
    from spos.cli.train import config_from_args

    args = build_parser().parse_args(["train-supernet", "--config", "fashion-mnist-supernet", "--epochs", "2",
                                      "--out", str(tmp_path)])  # fmt: skip
    cfg = config_from_args(args, supernet=True)
    assert cfg.epochs == 2 and cfg.lr == 0.1 and cfg.space["stage_depths"] == [1, 1, 2, 1]


def test_pipeline_without_config_runs_the_demo_preset_or_imagenet_for_a_folder(tmp_path, monkeypatch):
    import spos.pipeline

    seen = []
    monkeypatch.setattr(spos.pipeline, "run_pipeline", lambda config, **kw: seen.append(config))
    assert main(["pipeline", "--out", str(tmp_path / "a"), "--set", "supernet.epochs=1"]) == 0
    demo = yaml.safe_load(configs.preset_text("fashion-mnist"))
    assert seen[0].space == demo["space"] and seen[0].budget_macs == demo["budget_macs"]
    assert seen[0].supernet["epochs"] == 1 and seen[0].out == str(tmp_path / "a")
    assert main(["pipeline", "--data", str(tmp_path), "--tensorboard"]) == 0
    assert seen[1].budget_macs == 330e6 and seen[1].data == str(tmp_path) and seen[1].tensorboard
