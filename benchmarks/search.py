"""Search cost per candidate vs a pure forward pass, and evolution vs equal-budget random search.

    python benchmarks/search.py [--candidates 8] [--supernet CKPT] [--threads 2]
    python benchmarks/search.py --compare --supernet runs/supernet/final.pt \
        [--population 20 --generations 5]

Timing (default): on the built-in data (Fashion-MNIST, decoded once), each candidate costs
subnet extraction + exact BN recalibration on ``--recal-images`` + top-1 on ``--holdout``
images. The reference is the pure forward time of the same subnet over the same images
(eval mode, no grad, same batch size, channels_last like the evaluator). Goal: ratio <= 1.3. Without ``--supernet`` the small
preset's supernet (5 blocks (1,1,2,1), width 0.5, 16-ch stem stride 2, 28x28 grey) is randomly
initialised: cost does not depend on the weights.

Compare (``--compare``): on a trained supernet, evolutionary search vs a random search that
evaluates as many candidates; prints both best held-out accuracies.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

from spos.genes import sample
from spos.nn.io import load_model
from spos.nn.supernet import SuperNet
from spos.runs import load_checkpoint
from spos.search.config import SearchConfig
from spos.search.evaluator import Evaluator
from spos.search.evolution import search
from spos.search.run import load_search_data
from spos.space import SearchSpace


def small_preset() -> SearchSpace:
    return SearchSpace.preset("oneshot", width=0.5, stage_depths=(1, 1, 2, 1), input_size=28, input_channels=1,
                              num_classes=10, stem_channels=16, stem_stride=2)  # fmt: skip


def _forward_time(net: torch.nn.Module, images: torch.Tensor, batch_size: int) -> float:
    net.eval()
    t = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            net(images[start : start + batch_size])
    return time.perf_counter() - t


def timing(args: argparse.Namespace) -> None:
    if args.supernet:
        supernet, space, _ = load_model(args.supernet)
        train_config = load_checkpoint(args.supernet).get("config") or {}
    else:
        space, train_config = small_preset(), {}
        torch.manual_seed(0)
        supernet = SuperNet(space)
    config = SearchConfig(recal_images=args.recal_images, holdout=args.holdout, batch_size=args.batch_size)
    t = time.perf_counter()
    data = load_search_data("builtin", space, config, train_config)
    decode = time.perf_counter() - t
    evaluator = Evaluator(supernet.eval(), data, args.batch_size)
    both = torch.cat([data.recal_images, data.holdout_images])
    cl = torch.channels_last  # the evaluator's layout, so the reference is a like-for-like forward
    both = both.contiguous(memory_format=cl)
    rng = random.Random(0)
    archs = [sample(space, rng) for _ in range(args.candidates)]
    evaluator.accuracy(archs[0])  # warm-up: first-call allocations
    _forward_time(supernet.subnet(archs[0]).to(memory_format=cl), both, args.batch_size)
    rows = []
    for arch in archs:
        # Minimum over repeats, alternating the two measurements: on a shared machine other
        # processes only ever add time.
        t_cand = t_fwd = t_extract = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            evaluator.accuracy(arch)
            t_cand = min(t_cand, time.perf_counter() - t)
            t = time.perf_counter()
            net = supernet.subnet(arch).to(memory_format=cl)
            t_extract = min(t_extract, time.perf_counter() - t)
            t_fwd = min(t_fwd, _forward_time(net, both, args.batch_size))
        rows.append((t_cand, t_fwd, t_extract))
    print(f"space: small preset {list(space.stage_depths)} channels {list(space.stage_channels)}, "
          f"{space.input_size}x{space.input_size}x{space.input_channels}; "
          f"{'trained ' + args.supernet if args.supernet else 'random init'}; ISA {torch.backends.cpu.get_cpu_capability()}, torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"data: {args.recal_images} recal + {args.holdout} holdout images decoded once in {decode:.2f} s; "
          f"batch {args.batch_size}; {len(archs)} random candidates, best of {args.repeats} runs each")  # fmt: skip
    print(f"{'':<12}{'s/candidate':>12}{'pure fwd s':>12}{'ratio':>8}{'extract s':>11}")
    for i, (c, f, e) in enumerate(rows):
        print(f"{'cand ' + str(i):<12}{c:>12.3f}{f:>12.3f}{c / f:>8.2f}{e:>11.4f}")
    mean_c = sum(r[0] for r in rows) / len(rows)
    mean_f = sum(r[1] for r in rows) / len(rows)
    print(f"{'mean':<12}{mean_c:>12.3f}{mean_f:>12.3f}{mean_c / mean_f:>8.2f}   (goal <= 1.30)")
    print(f"candidates per minute: {60 / mean_c:.1f}")


def compare(args: argparse.Namespace) -> None:
    if not args.supernet:
        raise SystemExit("--compare needs --supernet CKPT (a supernet trained on the built-in data)")
    supernet, space, _ = load_model(args.supernet)
    train_config = load_checkpoint(args.supernet).get("config") or {}
    common = {"recal_images": args.recal_images, "holdout": args.holdout, "batch_size": args.batch_size,
              "seed": args.seed}  # fmt: skip
    common["genes"] = args.genes
    evo_cfg = SearchConfig(method="evolution", population=args.population, parents=args.parents,
                           generations=args.generations, **common)  # fmt: skip
    data = load_search_data("builtin", space, evo_cfg, train_config)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        evo = search(supernet, data, evo_cfg, f"{tmp}/evo", log=None)
        t_evo = time.perf_counter() - t
        budget = len(evo.candidates)
        rnd_cfg = SearchConfig(method="random", population=args.population, candidates=budget, **common)
        t = time.perf_counter()
        rnd = search(supernet, data, rnd_cfg, f"{tmp}/rnd", log=None)
        t_rnd = time.perf_counter() - t
    print(f"supernet {args.supernet}; genes {args.genes}; {args.recal_images} recal + {args.holdout} held-out "
          f"train images; population {args.population}, {args.generations} generations; budget {budget} "
          f"candidates each")  # fmt: skip
    print(f"{'method':<12}{'candidates':>11}{'best top-1':>12}{'mean top-1':>12}{'seconds':>9}  best arch")
    for name, r, secs in (("evolution", evo, t_evo), ("random", rnd, t_rnd)):
        mean = sum(c["accuracy"] for c in r.candidates) / len(r.candidates)
        print(f"{name:<12}{len(r.candidates):>11}{100 * r.best['accuracy']:>11.2f}%{100 * mean:>11.2f}%"
              f"{secs:>9.0f}  {r.best['arch']}")  # fmt: skip
    verdict = ">=" if evo.best["accuracy"] >= rnd.best["accuracy"] else "<"
    print(f"evolution best {verdict} random best")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", help="supernet file; default: randomly initialised small preset (timing only)")
    ap.add_argument("--compare", action="store_true", help="evolution vs equal-budget random search")
    ap.add_argument("--candidates", type=int, default=8, help="timing: candidates to time")
    ap.add_argument("--repeats", type=int, default=2, help="timing: best of this many runs per candidate")
    ap.add_argument("--recal-images", type=int, default=2000)
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--parents", type=int, default=5)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--genes", choices=("block", "channel", "joint"), default="joint",
                    help="compare: block for a supernet still in its block-only phase")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    compare(args) if args.compare else timing(args)


if __name__ == "__main__":
    main()
