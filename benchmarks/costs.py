"""Lookup-table pricing vs counting the built model, per architecture (goal: >= 1000x).

    python benchmarks/costs.py [--archs 20]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from spos.cost.counting import count
from spos.cost.table import cost_table
from spos.genes import sample
from spos.nn.supernet import SubNet
from spos.space import SearchSpace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(2)
    space = SearchSpace()
    t = time.perf_counter()
    table = cost_table(space)
    build = time.perf_counter() - t
    archs = [sample(space, random.Random(i)) for i in range(args.archs)]

    t = time.perf_counter()
    for _ in range(100):
        lut = [table(a) for a in archs]
    t_lut = (time.perf_counter() - t) / (100 * len(archs))

    t = time.perf_counter()
    built = [count(SubNet(space, a)) for a in archs]  # build + count on CPU at 224x224
    t_count = (time.perf_counter() - t) / len(archs)

    t = time.perf_counter()
    with torch.device("meta"):
        meta = [count(SubNet(space, a)) for a in archs]  # build + count without weights
    t_meta = (time.perf_counter() - t) / len(archs)

    assert lut == built == meta, "lookup table disagrees with the counter"
    print(f"archs: {len(archs)} (oneshot space, 224x224); table built once in {build:.2f} s")
    print(f"{'method':<34}{'s/arch':>12}{'LUT speed-up':>14}")
    print(f"{'lookup table':<34}{t_lut:>12.2e}{1.0:>13.0f}x")
    print(f"{'count(built subnet, cpu)':<34}{t_count:>12.2e}{t_count / t_lut:>13.0f}x")
    print(f"{'count(built subnet, meta device)':<34}{t_meta:>12.2e}{t_meta / t_lut:>13.0f}x")


if __name__ == "__main__":
    main()
