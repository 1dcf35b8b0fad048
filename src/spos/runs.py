"""Run folders: atomic writes, safe checkpoint loading, and the provenance every run records."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from . import __version__
from .errors import SposError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never code."""
    path = Path(path)
    if not path.is_file():
        raise SposError(f"checkpoint {path} does not exist; pass the path of a .pt file a spos run wrote")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        raise SposError(
            f"cannot load checkpoint {path}: {str(e).splitlines()[0]}; it must be a file written by spos"
        ) from None
    if not isinstance(obj, dict) or "kind" not in obj:
        raise SposError(f"{path} is not a spos checkpoint (no 'kind' field)")
    return obj


def git_revision() -> str:
    """The git revision of the spos source tree (with '-dirty' for local changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_info(out_dir: str | os.PathLike, config: dict, command: str) -> None:
    """Record what is needed to reproduce a run: resolved config, spos version, git revision."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(plain_config(config), sort_keys=False))
    info = {
        "command": command,
        "spos_version": __version__,
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
    }
    atomic_write_json(out / "run.json", info)


def plain_config(obj: Any) -> Any:
    """Config values as YAML-safe plain types (tuples -> lists, paths -> str)."""
    if isinstance(obj, dict):
        return {str(k): plain_config(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_config(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def load_yaml_config(path: str | os.PathLike) -> dict:
    """A YAML mapping read with ``safe_load`` (no code runs); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise SposError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SposError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SposError(f"config file {path} must hold a mapping of option: value")
    return data

