"""BN-recalibrated top-1 of random paths of a trained supernet on the whole built-in test split.

The trainer's per-epoch validation looks at three paths (largest, smallest, middle of the window)
on a subset; this checks the issue's aim (several random paths >= 80% on the test split) on all
10,000 Fashion-MNIST test images. Paths are drawn by the constrained `random` sampler inside the
run's own MACs/params window (or uniformly when the run had none); each is extracted, its BN
statistics recomputed on 2,000 training images, then evaluated.

    python benchmarks/supernet_paths.py runs/demo/supernet/final.pt --paths 8
"""

from __future__ import annotations

import argparse
import statistics

import torch

from spos.cost.bounds import Bounds
from spos.data import builtin, to_tensors
from spos.nn.io import load_model
from spos.runs import load_checkpoint
from spos.sampling.samplers import build_sampler
from spos.search.evaluator import Evaluator, SearchData


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("supernet", help="a supernet run's final.pt or checkpoint.pt (built-in data)")
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--recal-images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    torch.set_num_threads(2)
    supernet, space, arch = load_model(args.supernet)
    if arch is not None:
        raise SystemExit(f"{args.supernet} holds a subnet; pass a supernet run's final.pt")
    window = (load_checkpoint(args.supernet).get("config") or {}).get("window")
    sampler = build_sampler(space, "random" if window else "uniform", seed=args.seed,
                            window=Bounds(**window) if window else None)  # fmt: skip
    train, test = builtin("train", False), builtin("val", False)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))
    recal, _ = to_tensors(train, order[: args.recal_images].tolist())
    images, labels = to_tensors(test, list(range(len(test))))
    evaluator = Evaluator(supernet.eval(), SearchData(recal, images, labels), batch_size=500)
    print(f"{args.supernet}: {args.paths} random paths, window {window}, {len(labels)} test images")
    accs = []
    for _ in range(args.paths):
        path = sampler.sample()
        accs.append(evaluator.accuracy(path))  # extract, recalibrate BN, top-1
        print(f"  {path!s:<28}{100 * accs[-1]:6.2f}%", flush=True)
    print(
        f"min {100 * min(accs):.2f}%  mean {100 * statistics.mean(accs):.2f}%  "
        f"max {100 * max(accs):.2f}%  (chance 10%; aim >= 80%)"
    )


if __name__ == "__main__":
    main()
