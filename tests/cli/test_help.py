"""The conventions every command keeps: defaults and choices in --help, an examples epilog, and
one-line errors that name the problem and the fix."""

import argparse
import subprocess
import sys

import pytest

from spos.cli import build_parser, main
from spos.cli.common import HelpFormatter


def commands(parser=None, name="spos"):
    """Every (name, parser) of the CLI, subcommands of subcommands included."""
    parser = parser or build_parser()
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from commands(p, f"{name} {sub}")


COMMANDS = dict(commands())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_ends_with_examples(name):
    text = COMMANDS[name].format_help()
    tail = text[text.rindex("examples:"):].splitlines()
    assert 2 <= len(tail) <= 4 and all(line.strip().startswith(("spos ", "torchrun ")) for line in tail[1:])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_states_its_default(name):
    formatter = HelpFormatter(name)
    for a in COMMANDS[name]._actions:
        switch = isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                                argparse._VersionAction))  # fmt: skip
        if a.option_strings and not a.required and not switch:
            assert "default" in formatter._format_action(a), (name, a.option_strings)


def test_train_help_shows_defaults_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train-supernet", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "--schedule {cosine,constant}" in out and "or constant (default: cosine)" in out
    assert "--sampler {uniform,random,strolling,fair}" in out and "(default: uniform)" in out
    assert "--amp {auto,bf16,fp16,none}" in out and "--on-error {skip,fail}" in out
    assert "--epochs EPOCHS training epochs (default: 120)" in out
    assert "--max-steps MAX_STEPS stop after N optimizer steps in total (smoke runs) (default: all epochs)" in out


def test_train_choices_are_the_values_the_config_accepts():
    from spos.cli.train import _CHOICES
    from spos.train.config import TrainConfig

    for key, values in _CHOICES.items():
        for value in values:
            TrainConfig.from_dict({key: value})


def test_a_choice_outside_the_list_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train-supernet", "--sampler", "greedy"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("spos train-supernet: error: argument --sampler: invalid choice: 'greedy' (choose from")


def one_line_error(*args):
    r = subprocess.run([sys.executable, "-m", "spos", *args], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spos: error: "), r.stderr
    return lines[0]


def test_an_arch_without_its_colon_says_what_is_missing_and_what_the_space_allows():
    err = one_line_error("count", "0123")
    assert "not a zoo name" in err and "lacks the ':'" in err and "has 4 of the 40 genes" in err
    assert "20 block genes (0 SNB-3, 1 SNB-5, 2 SNB-7, 3 SXB-3) and 20 channel genes" in err
    err = one_line_error("count", "0031-1100-20211020-2132-6535-2634-25754674-4543")
    assert err.endswith("did you mean '0031-1100-20211020-2132:6535-2634-25754674-4543'?")


def test_a_wrong_gene_is_named_with_its_position_and_the_allowed_values():
    from spos.errors import SposError
    from spos.space import SearchSpace
    from spos.zoo import resolve

    err = one_line_error("count", "4031110020211020213265352634257546744543")
    assert "block gene 4 at position 0 is out of range; allowed 0..3" in err
    err = one_line_error("count", "0031:1100")
    assert "an arch needs 20 block genes and 20 channel genes" in err and "grouped by stage 4-4-8-4" in err
    with pytest.raises(SposError, match=r"channel gene 1 \(scale 0.4\) at position 0 .* allowed: 2 \(0.6\)"):
        resolve("0031-1100-20211020-2132:1535-2634-25754674-4543", SearchSpace())


def test_a_file_that_is_not_a_checkpoint_says_so_in_one_line(tmp_path):
    import numpy as np
    import torch

    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    err = one_line_error("export", str(text), "--onnx", str(tmp_path / "x.onnx"))
    assert err == (f"spos: error: {text} is not a spos checkpoint (not a file torch.save wrote); pass a "
                   f"final.pt or checkpoint.pt that a spos run wrote")  # fmt: skip
    pickled = tmp_path / "other.pt"
    torch.save({"weights": np.zeros(3)}, pickled)  # needs weights_only=False: never loaded
    err = one_line_error("search", "--supernet", str(pickled), "--out", str(tmp_path / "s"))
    assert f"{pickled} is not a spos checkpoint (it holds Python objects" in err
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert f"{foreign} is not a spos checkpoint (no 'kind' field)" in one_line_error(
        "export", str(foreign), "--onnx", str(tmp_path / "x.onnx"))
