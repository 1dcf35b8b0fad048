"""A trained network as a file: the payload a run writes (``final.pt``) and rebuilding a
:class:`SuperNet` or :class:`SubNet` from it, loaded with ``weights_only=True``."""

from __future__ import annotations

import os

import torch

from .. import __version__
from ..errors import SposError
from ..runs import load_checkpoint, plain_config
from ..space import Arch, SearchSpace
from .supernet import SubNet, SuperNet


def model_payload(model, space, arch=None, kind: str = "subnet", config: dict | None = None) -> dict:
    """What a trained-model file holds: enough to rebuild the network without the run folder."""
    return {
        "kind": kind,  # "supernet" or "subnet"
        "space": space.to_dict(),
        "arch": None if arch is None else str(arch),
        "model": model.state_dict(),
        "config": plain_config(config or {}),
        "spos_version": __version__,
    }


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild a SuperNet or SubNet from a checkpoint or final model file.

    Returns ``(model, space, arch)``; ``arch`` is None for a supernet.
    """
    return model_from_checkpoint(load_checkpoint(path, map_location), path)


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint"):
    """:func:`load_model` for a checkpoint already read with :func:`load_checkpoint` (so callers
    that also need its ``config`` read the file once)."""
    if "space" not in ckpt or "model" not in ckpt:
        raise SposError(f"{path} holds no model (kind {ckpt.get('kind')!r})")
    space = SearchSpace.from_dict(ckpt["space"])
    if str(ckpt["kind"]).startswith("supernet"):
        model, arch = SuperNet(space), None
    else:
        arch = Arch.parse(ckpt["arch"], space.stage_depths)
        model = SubNet(space, arch)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise SposError(f"{path}: weights do not fit its own search space ({str(e).splitlines()[0]})") from None
    return model, space, arch
