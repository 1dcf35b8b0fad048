"""Few-shot supernet probe (Zhao et al., ICML 2021) for issue #12: split a trained one-shot
supernet by the choice of one block and continue each copy on its own share of the space.

    python docs/fidelity/few_shot_probe.py BASE.pt OUT --block 0 --epochs 1      # 4 children
    python docs/fidelity/few_shot_probe.py BASE.pt OUT --epochs 4 --unsplit        # the control

BASE.pt is a supernet training checkpoint (``checkpoint.pt`` or a ``snap-eN.pt`` of
``snapshot-epochs.sh``: weights, optimizer, lr schedule and sampler state). Each child continues
that run exactly as the trainer would (same optimizer momentum, lr, data order, sampler stream,
channel warm-up epoch, holdout split) for ``--epochs`` more epochs, except that every sampled path
has block ``--block``'s type fixed to the child's choice (``OUT/b0`` … ``OUT/b3``, each with a
``final.pt`` of raw weights). ``--unsplit`` continues one copy with no constraint (``OUT/all``):
the same extra training without the split, so gains can be told from more epochs. Score with
``spos fidelity --supernet OUT/bV/final.pt`` per child, then combine with ``--combine``:

    python docs/fidelity/few_shot_probe.py --combine OUT --block 0 FID_b0.json ... FID_b3.json \
        --truth docs/fidelity/fidelity.json

which scores every random arch with the child of its own block choice and prints Kendall τ_b
against the stand-alone mean (``spos.fidelity.ranking_stats``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from spos.fidelity import ranking_stats
from spos.train.config import TrainConfig
from spos.train.trainer import Trainer


def continue_split(base: Path, out: Path, epochs: int, block: int | None, choice: int | None) -> None:
    ckpt = torch.load(base, map_location="cpu", weights_only=True)
    cfg = {**ckpt["config"], "ema": None, "out": str(out), "progress": False, "checkpoint_every": 0}
    t = Trainer(TrainConfig.from_dict(cfg))
    steps = int(ckpt["step"])
    done = steps // t.steps_per_epoch
    # The base's epochs so far plus the extra ones (the lr lambda reads total_steps when called).
    t.cfg.epochs = done + epochs
    t.total_steps = t.stop_step = t.cfg.epochs * t.steps_per_epoch
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    t.sampler.load_state_dict(ckpt["sampler"])
    t.step = steps
    if block is not None:
        draw = t.sampler._sample

        def fixed(allowed: np.ndarray) -> np.ndarray:
            genes = draw(allowed)
            genes[block] = choice
            return genes

        t.sampler._sample = fixed
    t.run()


def combine(block: int, files: list[str], truth_file: str) -> None:
    runs = [{r["arch"]: r for r in json.loads(Path(p).read_text())["rows"] if r["role"] == "random"} for p in files]
    truth = {r["arch"]: r for r in json.loads(Path(truth_file).read_text())["rows"]}
    archs = [a for a in runs[0] if a in truth]
    choice = [int(a.split(":")[0].replace("-", "")[block]) for a in archs]  # block genes, in order
    score = [runs[c][a]["supernet_score"] for c, a in zip(choice, archs, strict=True)]
    acc = np.array([truth[a]["standalone"] for a in archs], float)
    macs, params = [truth[a]["macs"] for a in archs], [truth[a]["params"] for a in archs]
    st = ranking_stats(score, acc, macs, params)
    print(f"{len(archs)} random archs, each scored by the child of its block-{block} choice: "
          f"tau_b {st['tau']:+.3f} [{st['tau_ci'][0]:+.2f}, {st['tau_ci'][1]:+.2f}]")  # fmt: skip
    for i, r in enumerate(runs):
        s = [r[a]["supernet_score"] for a in archs]
        print(f"  child {i} scoring every arch: tau_b {ranking_stats(s, acc, macs, params)['tau']:+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--block", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--unsplit", action="store_true")
    ap.add_argument("--combine", nargs="+", metavar="FIDELITY_JSON")
    ap.add_argument("--truth", default="docs/fidelity/fidelity.json")
    args = ap.parse_args()
    if args.combine:
        return combine(args.block, args.combine, args.truth)
    base, out = Path(args.base), Path(args.out)
    if args.unsplit:
        continue_split(base, out / "all", args.epochs, None, None)
        return None
    for choice in range(4):
        print(f"child b{choice}: block {args.block} fixed to type {choice}", file=sys.stderr, flush=True)
        continue_split(base, out / f"b{choice}", args.epochs, args.block, choice)
    return None


if __name__ == "__main__":
    main()
