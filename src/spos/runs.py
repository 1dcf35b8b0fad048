"""Run folders: atomic writes, safe checkpoint loading, and the provenance every run records."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from . import __version__
from .errors import SposError

#: What to do about each errno a write can meet (the one-line fix of :func:`os_error`).
_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere (--out)",
    errno.EDQUOT: "free some of your quota or write elsewhere (--out)",
    errno.EACCES: "choose a folder you may write to (--out) or fix its permissions",
    errno.EPERM: "choose a folder you may write to (--out) or fix its permissions",
    errno.EROFS: "the file system is read-only: write elsewhere (--out)",
    errno.ENOENT: "a folder on the path does not exist and could not be made: check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder: name a file",
}


def os_error(e: OSError, path: str | os.PathLike, doing: str = "write") -> SposError:
    """A one-line :class:`SposError` for an OS refusal: the path, the errno's meaning, the fix."""
    code = e.errno
    name = errno.errorcode.get(code, "error") if code is not None else "error"
    meaning = os.strerror(code) if code is not None else str(e)
    fix = _FIXES.get(code, "check the path and the disk")
    return SposError(f"cannot {doing} {path}: {meaning} ({name}); {fix}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename. An OS
    refusal (full disk, no permission, read-only file system) raises :class:`SposError` naming
    the path; the temp file is removed and an earlier ``path`` stays as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data, path)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise os_error(e, path) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _write_all(f, data: bytes, path: Path) -> None:
    """The one place file contents (of the file that becomes ``path``) are written; tests
    inject disk faults here."""
    f.write(data)


def check_writable(folder: str | os.PathLike) -> None:
    """Make ``folder`` and write a probe file in it, so that a run that cannot save finds out
    before hours of work, not at its first checkpoint (:class:`SposError` otherwise)."""
    folder = Path(folder)
    atomic_write_bytes(folder / ".spos-write-probe", b"ok\n")
    (folder / ".spos-write-probe").unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` into memory, then :func:`atomic_write_bytes`: a crash never leaves a
    half-written file, and a full disk is an ``OSError`` with its errno (torch's own file writer
    reports it as a bare ``RuntimeError``)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never code."""
    path = Path(path)
    if not path.is_file():
        raise SposError(f"checkpoint {path} does not exist; pass the path of a .pt file a spos run wrote")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        why = ("not a file torch.save wrote" if not zipfile.is_zipfile(path) else
               "it holds Python objects, not only tensors" if "Weights only" in str(e) else str(e).splitlines()[0])
        raise SposError(f"{path} is not a spos checkpoint ({why}); pass a final.pt or checkpoint.pt that a spos "
                        f"run wrote") from None  # fmt: skip
    if not isinstance(obj, dict) or "kind" not in obj:
        raise SposError(f"{path} is not a spos checkpoint (no 'kind' field); pass a final.pt or checkpoint.pt "
                        f"that a spos run wrote")  # fmt: skip
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


def write_run_info(out_dir: str | os.PathLike, config: dict, command: str, extra: dict | None = None) -> None:
    """Record what is needed to reproduce a run: resolved config, spos version, git revision
    (and ``extra``, facts the run resolved on its host)."""
    out = Path(out_dir)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(plain_config(config), sort_keys=False))
    info = {
        "command": command,
        "spos_version": __version__,
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
        **(extra or {}),
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



class RunLock:
    """One writer per run folder: an exclusive ``fcntl.flock`` on ``FOLDER/.spos.lock``, which
    also records the holder's host, PID and command.

    The kernel drops the lock when its process dies, so a lock file left by a dead process is
    stale: the next run takes it over and says so in one line. A live holder makes
    :meth:`acquire` raise :class:`SposError` naming its host and PID. (flock is per host on
    some network file systems: two hosts writing one NFS folder may not see each other.)
    """

    NAME = ".spos.lock"
    #: Locks this process holds: path -> [fd, depth] (nested holders of one folder share it).
    _held: dict[Path, list] = {}

    def __init__(self, folder: str | os.PathLike, log=None) -> None:
        self.path = Path(folder).absolute() / self.NAME
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        if self.path in self._held:
            self._held[self.path][1] += 1
            self._fd = self._held[self.path][0]
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise os_error(e, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SposError(f"{self.path.parent} is in use by another run ({holder}); wait for it to end, "
                            f"stop it, or use another --out") from None  # fmt: skip
        old = _read_holder(fd, default="")
        if old and not old.startswith(f"{socket.gethostname()} pid {os.getpid()} "):
            self.log(f"spos: note: took over the lock of {self.path.parent} left by {old}, which is gone")
        me = f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, (me + "\n").encode(), 0)
        self._fd = fd
        self._held[self.path] = [fd, 1]
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        held = self._held.get(self.path)
        if held is not None:
            held[1] -= 1
            if held[1] > 0:
                self._fd = None
                return
            del self._held[self.path]
        os.close(self._fd)  # closing drops the flock; the file stays (no unlink race)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int, default: str = "host and PID unknown") -> str:
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or default
