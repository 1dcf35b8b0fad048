"""The library call behind ``spos search``: load a supernet file and the data, search, write
the run folder. Also the data split a search scores on (shared with the pipeline).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import tblog
from ..errors import SposError
from ..nn.supernet import SuperNet
from ..runs import RunLock, check_writable, write_run_info
from ..runtime import start_process
from ..space import SearchSpace
from .config import SearchConfig
from .evaluator import SearchData
from .evolution import SearchResult, search


def trained_holdout(train_config: dict, n: int) -> tuple[int, int] | None:
    """``(size, seed)`` of the holdout a supernet's training left out of ``n`` train images,
    from the ``config`` its file carries (spos.train: ``holdout`` fraction or count, ``seed``);
    None when the file does not say."""
    if "holdout" not in train_config or "seed" not in train_config:
        return None
    h = float(train_config["holdout"])
    return (round(h * n) if h < 1 else int(h)), int(train_config["seed"])


def load_search_data(
    data: str, space: SearchSpace, config: SearchConfig, train_config: dict | None = None,
    holdout_from: SearchData | None = None,
) -> SearchData:
    """Decode the recalibration subset and the held-out images of ``data``'s training set once.

    The holdout is the split supernet training left out (``spos.data.holdout_split`` with the
    size and seed in ``train_config``, the training's config): the search scores on
    ``config.holdout`` of those images, so it never scores on images the supernet trained on.
    Without a training config the split is ``holdout_split(n, config.holdout, holdout_seed or 0)``.
    The recalibration images are a subset of the rest drawn with ``config.seed``. Both use the
    eval transform (no augmentation). ``holdout_from``: data of the same split whose held-out
    images are reused (they do not depend on ``config.seed``), so only the recalibration images
    are decoded.
    """
    from ..data import to_tensors
    ds, recal_idx, holdout_idx = search_split(data, space, config, train_config)
    recal, _ = to_tensors(ds, recal_idx, batch_size=config.batch_size)
    if holdout_from is not None:
        return SearchData(recal, holdout_from.holdout_images, holdout_from.holdout_labels)
    images, labels = to_tensors(ds, holdout_idx, batch_size=config.batch_size)
    if tuple(images.shape[1:]) != (space.input_channels, space.input_size, space.input_size):
        raise SposError(f"data {data!r} gives {tuple(images.shape[1:])} images; the supernet expects "
                        f"{(space.input_channels, space.input_size, space.input_size)}: pass the data it was "
                        f"trained on")  # fmt: skip
    return SearchData(recal, images, labels.long())


def search_split(data: str, space: SearchSpace, config: SearchConfig, train_config: dict | None = None):
    """``(train dataset, recalibration indices, held-out indices)`` of a search, without decoding
    any image (see :func:`load_search_data`)."""
    from ..data import dataset, holdout_split
    ds = dataset(data, "train", train=False, input_size=space.input_size)
    n = len(ds)
    trained = trained_holdout(train_config or {}, n)
    size, seed = (config.holdout, 0) if trained is None else trained
    if config.holdout_seed is not None:
        seed = config.holdout_seed
    if trained is not None and config.holdout > size:
        raise SposError(f"the supernet was trained with {size} held-out images; --holdout {config.holdout} "
                        f"would score on images it trained on; pass --holdout {size} or less")  # fmt: skip
    train_idx, holdout_idx = holdout_split(n, size, seed)
    holdout_idx = sorted(random.Random(seed).sample(list(holdout_idx), config.holdout))
    if config.recal_images > len(train_idx):
        raise SposError(f"--recal-images {config.recal_images} is more than the {len(train_idx)} training "
                        f"images outside the holdout; lower it")  # fmt: skip
    recal_idx = random.Random(config.seed).sample(list(train_idx), config.recal_images)
    return ds, recal_idx, holdout_idx


def run_search(
    supernet_path: str | os.PathLike,
    data: str = "builtin",
    config: SearchConfig | None = None,
    out_dir: str | os.PathLike = "runs/search",
    *,
    resume: bool = False,
    device: str = "auto",
    latency_table: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    command: str = "",
    log: Callable[[str], None] | None = print,
    tensorboard: bool = False,
    store: str | os.PathLike | bool = True,
) -> SearchResult:
    """Load a supernet file (``final.pt`` or a training ``checkpoint.pt``) and ``data``, search,
    and write the run folder (config.yaml, run.json, search_state.json, candidates.csv,
    best.json, pareto.json, fitness.png, pareto.png). Works under ``torchrun``. ``tensorboard``:
    also log each generation's best and mean fitness to OUT/tensorboard. ``latency_table``:
    one file, or several for ``method: nsga2`` (each an objective; the first prices
    ``max_latency_ms``).

    ``store``: the SQLite candidate store (:mod:`spos.store`) whose scores of this supernet file
    are reused and which gets every new one; True (default) means ``OUT/../spos-store.sqlite``
    (beside the run folder, where ``spos fidelity`` looks too), False none."""
    config = config or SearchConfig()
    dev, rank, _ = start_process(device)
    lock = RunLock(out_dir) if rank == 0 else contextlib.nullcontext()
    with lock:
        return _run_search(supernet_path, data, config, out_dir, resume, dev, rank, latency_table, command, log,
                           tensorboard, store)  # fmt: skip


def _run_search(supernet_path, data, config, out_dir, resume, dev, rank, latency_table, command, log,
                tensorboard=False, store=True) -> SearchResult:  # fmt: skip
    from ..nn.io import model_from_checkpoint
    from ..runs import load_checkpoint

    ckpt = load_checkpoint(supernet_path, map_location="cpu")
    model, space, arch = model_from_checkpoint(ckpt, supernet_path)
    train_config = ckpt.get("config") or {}
    if arch is not None or not isinstance(model, SuperNet):
        raise SposError(f"{supernet_path} holds a subnet ({arch}); search needs a supernet file "
                        f"(final.pt of `spos train-supernet`)")  # fmt: skip
    tables = [latency_table] if isinstance(latency_table, (str, os.PathLike)) else list(latency_table or ())
    if len(tables) > 1 and config.method != "nsga2":
        raise SposError("several --latency-table files need --method nsga2 or --budget (one search prices one device)")
    from ..cost.latency import LatencyTable

    latencies = {str(p): LatencyTable.load(p) for p in tables}
    latency = next(iter(latencies.values()), None)
    if latency is None and config.max_latency_ms is not None:
        raise SposError("--max-latency-ms needs a latency table; pass --latency-table FILE")
    if rank == 0:
        check_writable(out_dir)
        write_run_info(out_dir, {"supernet": str(supernet_path), "data": data, "device": str(dev),
                                 "latency_table": [str(t) for t in tables], "resume": resume, **config.to_dict()},
                       command)  # fmt: skip
    search_data = load_search_data(data, space, config, train_config).to(dev)
    from ..store import Store, beside, config_hash, file_hash

    if tensorboard:
        tblog.require()
    on_generation = (lambda g, stats: tblog.log_generation(out_dir, g, stats)) if tensorboard and rank == 0 else None
    supernet_id = file_hash(supernet_path)
    db = None
    if store:
        db = Store(beside(out_dir) if store is True else store)
        if rank == 0:
            db.remember_supernet(supernet_id, str(Path(supernet_path).absolute()), config_hash(space.to_dict()))
    try:
        return search(model.to(dev), search_data, config, out_dir, resume=resume, latency=latency, log=log,
                      supernet_id=supernet_id, on_generation=on_generation, store=db,
                      latency_id=file_hash(tables[0]) if tables else None, latencies=latencies)  # fmt: skip
    finally:
        if db is not None:
            db.close()
