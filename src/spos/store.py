"""The embedded store: every stand-alone result and every supernet score, computed once.

One SQLite file (standard library ``sqlite3``, WAL journal so that torchrun ranks and concurrent
runs can write it at the same time). Two tables:

- ``standalone``: an arch trained from scratch, keyed by (space hash, arch, recipe hash, seed);
  the ground truth a supernet's ranking is measured against. A new supernet variant reuses it.
- ``supernet_score``: an arch scored through a supernet, keyed by (supernet file hash, arch,
  scoring-settings hash).

Hashes are SHA-256 of canonical JSON (configs) or of the file's bytes (supernets), shortened to
16 hex digits. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from .errors import SposError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS standalone (
    space_hash TEXT NOT NULL, arch TEXT NOT NULL, recipe_hash TEXT NOT NULL, seed INTEGER NOT NULL,
    accuracy REAL NOT NULL, loss REAL, images INTEGER, seconds REAL, created REAL,
    PRIMARY KEY (space_hash, arch, recipe_hash, seed));
CREATE TABLE IF NOT EXISTS supernet_score (
    supernet_hash TEXT NOT NULL, arch TEXT NOT NULL, settings_hash TEXT NOT NULL,
    accuracy REAL NOT NULL, loss REAL, images INTEGER, created REAL,
    PRIMARY KEY (supernet_hash, arch, settings_hash));
CREATE TABLE IF NOT EXISTS config (hash TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS supernet (hash TEXT PRIMARY KEY, path TEXT, space_hash TEXT, created REAL);
"""
#: Columns added after the first release of the store (added to older files when opened).
_ADDED = {"supernet_score": (("macs", "INTEGER"), ("params", "INTEGER"), ("latency", "TEXT"))}


#: The store's file name; it sits beside the run folders that share it (:func:`beside`).
STORE_NAME = "spos-store.sqlite"


def beside(run_dir: str | os.PathLike) -> Path:
    """The default store of a run folder: ``RUN/../spos-store.sqlite``, so that the search, the
    fidelity check and the family search of one project share their scores."""
    return Path(run_dir).parent / STORE_NAME


def config_hash(obj: dict) -> str:
    """16 hex digits of SHA-256 over ``obj`` as canonical JSON (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_hash(path: str | os.PathLike) -> str:
    """16 hex digits of SHA-256 over the file's bytes."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise SposError(f"cannot read {path}: {e.strerror}") from None
    return h.hexdigest()[:16]


class Store:
    """Stand-alone results and supernet scores in one SQLite file; counts hits and misses
    (lookups with ``count=False``, e.g. reading back what was just written, are not counted).

    Every write is its own short transaction, so a killed process loses at most the result it
    was writing and other writers never wait long.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            self._set_up(deadline=time.monotonic() + 120)
        except (sqlite3.DatabaseError, OSError) as e:
            raise SposError(f"cannot open the store {self.path}: {e}; pass another --store") from None
        self.hits = {"standalone": 0, "supernet_score": 0}
        self.misses = {"standalone": 0, "supernet_score": 0}

    def _set_up(self, deadline: float) -> None:
        """WAL journal, schema and added columns. Switching a new file to WAL takes a lock that
        SQLite's busy handler does not wait for, so processes opening one new store at once
        (torchrun ranks) retry here until ``deadline``."""
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                for table, columns in _ADDED.items():
                    have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns:
                        if name not in have:
                            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                return
            except sqlite3.OperationalError as e:
                busy = any(w in str(e) for w in ("locked", "busy", "duplicate column"))  # a racing opener added it
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.5)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def remember_config(self, body: dict) -> str:
        """Store ``body`` under its hash (so a hash in a table can be read back); returns it."""
        key = config_hash(body)
        self._db.execute("INSERT OR IGNORE INTO config VALUES (?, ?)", (key, json.dumps(body, sort_keys=True)))
        return key

    def config(self, key: str) -> dict | None:
        row = self._db.execute("SELECT body FROM config WHERE hash = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # ---- stand-alone ground truth ----------------------------------------------------------
    def standalone(self, space_hash: str, arch: str, recipe_hash: str, seed: int, count: bool = True) -> dict | None:
        row = self._db.execute(
            "SELECT accuracy, loss, images, seconds FROM standalone WHERE space_hash = ? AND arch = ? "
            "AND recipe_hash = ? AND seed = ?", (space_hash, arch, recipe_hash, int(seed))).fetchone()  # fmt: skip
        if count:
            self._count("standalone", row)
        return None if row is None else dict(zip(("accuracy", "loss", "images", "seconds"), row))

    def put_standalone(self, space_hash: str, arch: str, recipe_hash: str, seed: int, accuracy: float,
                       loss: float | None = None, images: int | None = None,
                       seconds: float | None = None) -> None:  # fmt: skip
        self._db.execute("INSERT OR REPLACE INTO standalone VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (space_hash, arch, recipe_hash, int(seed), float(accuracy), loss, images, seconds,
                          time.time()))  # fmt: skip

    # ---- supernet scores -------------------------------------------------------------------
    def score(self, supernet_hash: str, arch: str, settings_hash: str, count: bool = True) -> dict | None:
        row = self._db.execute(
            "SELECT accuracy, loss, images FROM supernet_score WHERE supernet_hash = ? AND arch = ? "
            "AND settings_hash = ?", (supernet_hash, arch, settings_hash)).fetchone()  # fmt: skip
        if count:
            self._count("supernet_score", row)
        return None if row is None else dict(zip(("accuracy", "loss", "images"), row))

    def put_score(self, supernet_hash: str, arch: str, settings_hash: str, accuracy: float,
                  loss: float | None = None, images: int | None = None) -> None:  # fmt: skip
        self._db.execute("INSERT OR REPLACE INTO supernet_score (supernet_hash, arch, settings_hash, accuracy, loss, "
                         "images, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (supernet_hash, arch, settings_hash, float(accuracy), loss, images, time.time()))  # fmt: skip

    # ---- the search's candidates -----------------------------------------------------------
    def remember_supernet(self, supernet_hash: str, path: str, space_hash: str) -> None:
        """Where a supernet file was seen (for ``spos store ls``)."""
        self._db.execute("INSERT OR REPLACE INTO supernet VALUES (?, ?, ?, ?)",
                         (supernet_hash, str(path), space_hash, time.time()))  # fmt: skip

    def scores(self, supernet_hash: str, settings_hash: str, archs: list[str]) -> dict[str, dict]:
        """Known scores of ``archs`` (those with a loss), counted as hits and misses."""
        found = {}
        for arch in archs:
            row = self.score(supernet_hash, arch, settings_hash, count=False)
            if row is not None and row.get("loss") is not None:
                found[arch] = row
            self._count("supernet_score", row if arch in found else None)
        return found

    def put_scores(self, supernet_hash: str, settings_hash: str, rows: list[dict]) -> None:
        """Candidates of one generation in one transaction: dicts with arch, accuracy, loss,
        images and optionally macs, params, latency (ms per latency table, a mapping)."""
        now = time.time()
        values = [(supernet_hash, r["arch"], settings_hash, float(r["accuracy"]), r.get("loss"), r.get("images"),
                   now, r.get("macs"), r.get("params"),
                   json.dumps(r["latency"], sort_keys=True) if r.get("latency") is not None else None)
                  for r in rows]  # fmt: skip
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO supernet_score (supernet_hash, arch, settings_hash, "
                                 "accuracy, loss, images, created, macs, params, latency) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)  # fmt: skip

    def candidates(self, supernet_hash: str | None = None) -> list[dict]:
        """Every stored supernet score (of one supernet file, or all), newest last."""
        sql = ("SELECT supernet_hash, arch, settings_hash, accuracy, loss, images, macs, params, latency, created "
               "FROM supernet_score")  # fmt: skip
        args: tuple = ()
        if supernet_hash is not None:
            sql, args = sql + " WHERE supernet_hash = ?", (supernet_hash,)
        keys = ("supernet_hash", "arch", "settings_hash", "accuracy", "loss", "images", "macs", "params",
                "latency", "created")  # fmt: skip
        rows = [dict(zip(keys, r)) for r in self._db.execute(sql + " ORDER BY created, arch", args)]
        for r in rows:
            r["latency"] = json.loads(r["latency"]) if r["latency"] else None
        return rows

    def supernets(self) -> list[dict]:
        """One row per (supernet file, scoring settings): how many candidates, the best score."""
        rows = self._db.execute(
            "SELECT s.supernet_hash, s.settings_hash, COUNT(*), MAX(s.accuracy), n.path FROM supernet_score s "
            "LEFT JOIN supernet n ON n.hash = s.supernet_hash GROUP BY s.supernet_hash, s.settings_hash "
            "ORDER BY MIN(s.created)").fetchall()  # fmt: skip
        return [dict(zip(("supernet_hash", "settings_hash", "candidates", "best_accuracy", "path"), r)) for r in rows]

    @contextlib.contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def counts(self) -> dict:
        """Rows per table."""
        return {t: self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("standalone", "supernet_score")}  # fmt: skip

    def _count(self, table: str, row) -> None:
        (self.misses if row is None else self.hits)[table] += 1
