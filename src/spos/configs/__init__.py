"""The presets: YAML configs shipped inside the package, read with :mod:`importlib.resources`
so that they work wherever spos is installed (``spos configs`` lists them).

Every ``--config`` takes a preset name or a path (:func:`load_config`). A preset's name is its
file name without ``.yaml``; ``NAME`` is a whole pipeline, ``NAME-supernet`` and ``NAME-subnet``
configure one training stage.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from ..errors import SposError
from ..runs import load_yaml_config

#: Preset name -> (the command it configures, what it is). One entry per YAML file here.
PRESETS: dict[str, tuple[str, str]] = {
    "fashion-mnist": ("pipeline", "the demo: the whole lifecycle on the built-in Fashion-MNIST, minutes on a CPU"),
    "fashion-mnist-supernet": ("train-supernet", "a 5-block supernet that learns Fashion-MNIST in minutes"),
    "imagenet": ("pipeline", "the SPEC §4/§5 recipe on an ImageNet folder (torchrun, GPUs)"),
    "imagenet-supernet": ("train-supernet", "the SPEC §4 supernet: 120 epochs, channel selection from 60"),
    "imagenet-subnet": ("train", "the SPEC §4 subnet: a searched arch from scratch, 360 epochs"),
}

#: The preset ``spos pipeline`` runs without --config: on the built-in data, and on a folder.
DEFAULT_PIPELINE = {"builtin": "fashion-mnist", "folder": "imagenet"}


def names() -> list[str]:
    """The preset names, sorted."""
    return sorted(PRESETS)


def preset_text(name: str) -> str:
    """The YAML text of preset ``name`` (comments included: copy it and edit it)."""
    if name not in PRESETS:
        raise SposError(f"unknown preset {name!r}; presets: {', '.join(names())} (`spos configs` lists them)")
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def load_config(ref: str | os.PathLike) -> dict:
    """The mapping of a ``--config`` value: a YAML file's path, or a preset name.

    A path that exists wins over a preset of the same name. Anything else is a one-line
    :class:`SposError` naming the presets.
    """
    path = Path(ref)
    if path.is_file():
        return load_yaml_config(path)
    name = str(ref)
    if name not in PRESETS:
        raise SposError(f"config {name!r} is neither a file nor a preset; pass a YAML file or one of "
                        f"{', '.join(names())} (`spos configs` lists them)")  # fmt: skip
    data = yaml.safe_load(preset_text(name))
    return data if isinstance(data, dict) else {}
