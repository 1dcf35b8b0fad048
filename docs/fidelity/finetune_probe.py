"""Fine-tune-before-scoring probe for issue #12: does a short training of each arch's inherited
weights rank archs more like stand-alone training than the supernet's own score does?

    python docs/fidelity/finetune_probe.py SUPERNET.pt OUT.json --steps 0 25 100 400 --lr 0.01

SUPERNET.pt is a supernet file (``final.pt``) or a training ``checkpoint.pt`` (raw weights). For
every random arch of ``--truth`` (a ``fidelity.json``: its archs, their stand-alone means, costs)
the probe copies the arch's weights out of the supernet (``SuperNet.subnet``), trains them with
SGD (momentum 0.9, Nesterov, constant ``--lr``, weight decay 4e-5, label smoothing 0.1, batch
128) on training images outside the supernet's holdout, the same batches for every arch (seeded),
and after each of ``--steps`` scores the arch as the search does: exact BN recalibration on the
search's 2,000 recalibration images, top-1 and loss on its 3,000 held-out images
(``spos.search.run.load_search_data`` with the demo's scoring settings). Step 0 is the supernet
score the fidelity check stores. It prints Kendall tau_b (``spos.fidelity.ranking_stats``) of
each step's top-1 and loss against the stand-alone mean, and writes every score to OUT.json
(a partial file is resumed: archs already in it are skipped).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from spos.data import dataset, holdout_split, to_tensors
from spos.fidelity import ranking_stats
from spos.nn.supernet import SuperNet
from spos.search.config import SearchConfig
from spos.search.evaluator import Evaluator
from spos.search.run import load_search_data, trained_holdout
from spos.space import Arch, SearchSpace

SCORING = {"recal_images": 2000, "holdout": 3000, "batch_size": 500, "seed": 0}  # the demo's search


def load_supernet(path: Path) -> tuple[SuperNet, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    space = SearchSpace.from_dict(ckpt.get("space") or ckpt["config"]["space"])
    net = SuperNet(space)
    net.load_state_dict(ckpt["model"])
    return net.eval(), ckpt["config"]


def train_images(space: SearchSpace, train_config: dict, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` training images outside the supernet's holdout (eval transform), seeded."""
    ds = dataset("builtin", "train", train=False, input_size=space.input_size)
    size, split_seed = trained_holdout(train_config, len(ds))
    rest, _ = holdout_split(len(ds), size, split_seed)
    pick = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    images, labels = to_tensors(ds, [rest[i] for i in pick], batch_size=500)
    return images.contiguous(memory_format=torch.channels_last), labels.long()


def finetune_scores(supernet, arch, evaluator, images, labels, steps: list[int], lr: float, seed: int) -> dict:
    net = supernet.subnet(arch).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    order = torch.Generator().manual_seed(seed)
    out, done = {}, 0
    for target in sorted(steps):
        net.train()
        while done < target:
            idx = torch.randint(len(labels), (128,), generator=order)
            loss = F.cross_entropy(net(images[idx]), labels[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
        out[str(target)] = score(net, evaluator)
    return out


def score(net, evaluator: Evaluator) -> tuple[float, float]:
    """The Evaluator's score of an already-built subnet, on a copy (its BN is recalibrated)."""
    return evaluator.score_net(copy.deepcopy(net))


def report(rows: dict, truth: dict, steps: list[int]) -> None:
    archs = [a for a in truth if a in rows]
    acc = np.array([truth[a]["standalone"] for a in archs])  # archs x seeds
    macs, params = [truth[a]["macs"] for a in archs], [truth[a]["params"] for a in archs]
    for s in sorted(steps):
        top1 = [rows[a][str(s)][0] for a in archs]
        nll = [-rows[a][str(s)][1] for a in archs]
        st, sl = ranking_stats(top1, acc, macs, params), ranking_stats(nll, acc, macs, params)
        print(f"  {s:5d} steps: tau_b top-1 {st['tau']:+.3f} [{st['tau_ci'][0]:+.2f}, {st['tau_ci'][1]:+.2f}]"
              f"  loss {sl['tau']:+.3f}  mean top-1 {np.mean(top1):.4f}  ({len(archs)} archs)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("supernet", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--truth", type=Path, default=Path("docs/fidelity/fidelity.json"))
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 25, 100, 400])
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--images", type=int, default=20000, help="training images the batches come from")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    truth = {r["arch"]: r for r in json.loads(args.truth.read_text())["rows"] if r["role"] == "random"}
    supernet, train_config = load_supernet(args.supernet)
    space = supernet.space
    data = load_search_data("builtin", space, SearchConfig.from_dict(SCORING), train_config)
    evaluator = Evaluator(supernet, data, SCORING["batch_size"])
    images, labels = train_images(space, train_config, args.images, args.seed)
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = saved.get("rows", {})
    meta = {"supernet": str(args.supernet), "lr": args.lr, "steps": args.steps, "images": args.images,
            "seed": args.seed, "threads": torch.get_num_threads()}  # fmt: skip
    for i, a in enumerate(truth):
        if a in rows and all(str(s) in rows[a] for s in args.steps):
            continue
        t = time.perf_counter()
        rows[a] = finetune_scores(supernet, Arch.parse(a, space.stage_depths), evaluator, images, labels,
                                  args.steps, args.lr, args.seed)  # fmt: skip
        print(f"{i + 1}/{len(truth)} {a}: " + " ".join(f"{s}:{v[0]:.4f}" for s, v in rows[a].items())
              + f" ({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({**meta, "rows": rows}, indent=1))
        os.replace(tmp, args.out)
    report(rows, truth, args.steps)


if __name__ == "__main__":
    main()
