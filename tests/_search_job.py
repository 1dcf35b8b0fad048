"""A tiny search run as a separate process by the resume and torchrun tests.

    python tests/_search_job.py OUT [--resume] [--pause-after G] [--method evolution|random] [--store DB]

Prints ``GENERATION g`` after each saved generation; with ``--pause-after G`` it then sleeps, so
a test can SIGKILL it at a known point between generations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from spos.nn.supernet import SuperNet
from spos.search.config import SearchConfig
from spos.search.evaluator import Evaluator, SearchData
from spos.search.evolution import search
from spos.space import SearchSpace

SPACE = SearchSpace(stage_depths=(1, 1, 2, 1), stage_channels=(24, 48, 96, 192), input_size=16,
                    input_channels=3, num_classes=10, stem_channels=8, stem_stride=1, last_channels=64)  # fmt: skip
CONFIG = {"population": 8, "parents": 3, "generations": 4, "candidates": 20, "recal_images": 48, "holdout": 64,
          "batch_size": 16}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--pause-after", type=int, default=None)
    ap.add_argument("--method", default="evolution")
    ap.add_argument("--store", default=None, help="a candidate store (supernet id 'job-net')")
    args = ap.parse_args()
    torch.set_num_threads(1)  # same arithmetic in every process, with or without torchrun
    torch.manual_seed(0)
    net = SuperNet(SPACE)
    g = torch.Generator().manual_seed(1)
    data = SearchData(torch.randn(48, 3, 16, 16, generator=g), torch.randn(64, 3, 16, 16, generator=g),
                      torch.randint(0, 10, (64,), generator=g))  # fmt: skip

    def on_generation(gen: int, stats: dict) -> None:
        print(f"GENERATION {gen}", flush=True)
        if gen == args.pause_after:
            time.sleep(120)

    evaluated = []
    score = Evaluator.score
    Evaluator.score = lambda self, arch: evaluated.append(str(arch)) or score(self, arch)

    config = SearchConfig(method=args.method, **CONFIG)
    store = None
    if args.store:
        from spos.store import Store

        store = Store(args.store)
    search(net, data, config, args.out, resume=args.resume, on_generation=on_generation, log=None,
           store=store, supernet_id="job-net" if store else None)
    if not torch.distributed.is_initialized() and args.store:
        (Path(args.out) / "evaluated.json").write_text(json.dumps(evaluated))
    if torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(evaluated))
        end_distributed()


if __name__ == "__main__":
    from spos.runtime import end_distributed, init_distributed

    init_distributed(torch.device("cpu"))
    sys.exit(main())
