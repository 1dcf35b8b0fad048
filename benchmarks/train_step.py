"""Supernet training speed: sliced channel selection (our SuperNet) vs a masked baseline.

The MXNet re-implementation ran every chosen block at full width and multiplied the main
branch's mid activations by a 0/1 channel mask, so it always paid for scale 2.0. Our SuperNet
slices the weights, so compute follows the sampled width (in channels_last on CPU, rounded up
to a multiple of 16 channels with the surplus masked out; see spos.nn.blocks). Each round trains
the same pool of uniform paths (4 blocks x channel scales 0.6-2.0) with each method, the same
optimizer step and order; rounds interleave the methods (alternating which goes first) and the
figures are medians over rounds, because the machine is shared. The MACs ratio of the pool is
the speed-up that pure arithmetic would give. Also: img/s of the largest path (all SXB-3 at 2.0)
vs the smallest (all SNB-3 at 0.6), sliced.

    python benchmarks/train_step.py                  # both sizes and layouts, ~5 min on 2 cores
    python benchmarks/train_step.py --rounds 3 --sizes small   # quick look

Sizes: ``224`` = oneshot space, 224x224 RGB, 1000 classes, batch 16; ``small`` = the small
preset (28x28 grey, width 0.5, stem stride 2, 5 blocks (1,1,2,1), 10 classes), batch 128.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import spos  # noqa: F401  (sets oneDNN's kernel cache size before the first conv)
from spos.cost.table import cost_table
from spos.genes import largest, smallest
from spos.nn.blocks import ChoiceBlock
from spos.nn.ops import channel_split
from spos.nn.supernet import SuperNet
from spos.sampling.samplers import build_sampler
from spos.space import Arch, SearchSpace, mid_channels

#: name -> (space, batch, default passes over the path pool per method per round)
SIZES = {
    "224": (SearchSpace(), 16, 1),
    "small": (SearchSpace.preset("oneshot", width=0.5, stage_depths=(1, 1, 2, 1), input_size=28,
                                 input_channels=1, num_classes=10, stem_stride=2), 128, 5),
}  # fmt: skip


def masked_block(block: ChoiceBlock, x: torch.Tensor, mid: int) -> torch.Tensor:
    """``block`` at full width with channels ``mid:`` of every mid activation zeroed (MXNet way).

    The mask goes in front of every pointwise conv that reads mid channels (all but the first),
    which makes the output equal to the sliced block's while every conv runs at full width.
    """
    if block.proj is None:
        x_proj, y = channel_split(x)
    else:
        x_proj, y = block.proj(x), x
    mask = (torch.arange(block.mid, device=x.device) < mid).to(x.dtype).view(1, -1, 1, 1)
    first_pw = True
    for m in block.main:
        if isinstance(m, nn.Conv2d) and m.groups == 1:
            if not first_pw:
                y = y * mask
            first_pw = False
        y = m(y)
    if block.se is not None:
        y = block.se(y)
    return torch.cat((x_proj, y), 1)


def masked_forward(net: SuperNet, x: torch.Tensor, arch: Arch) -> torch.Tensor:
    x = net.stem(x)
    for p, block, c in zip(net.space.positions(), net.chosen_blocks(arch), arch.channels):
        x = masked_block(block, x, mid_channels(p.out_channels, c))
    return net.classifier(net.head(x))


def sliced_forward(net: SuperNet, x: torch.Tensor, arch: Arch) -> torch.Tensor:
    return net(x, arch)


def check_equal(net: SuperNet, x: torch.Tensor, arch: Arch) -> float:
    """Max |sliced - masked| in eval mode: the baseline must compute the same function."""
    net.eval()
    with torch.no_grad():
        d = (sliced_forward(net, x, arch) - masked_forward(net, x, arch)).abs().max().item()
    net.train()
    return d


def train_steps(net, opt, forward, x, y, archs) -> float:
    """Seconds for one optimizer step per arch in ``archs``."""
    t = time.perf_counter()
    for arch in archs:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward(net, x, arch), y).backward()
        opt.step()
    return time.perf_counter() - t


def macs_ratio(space: SearchSpace, pool: list[Arch]) -> float:
    """MACs the masked baseline computes over the pool (every width at the widest) / sliced's."""
    table, widest = cost_table(space), space.channel_genes[-1]
    full = sum(table.macs(Arch(a.blocks, (widest,) * len(a.blocks), a.stage_depths)) for a in pool)
    return full / sum(table.macs(a) for a in pool)


def bench_size(
    name: str, rounds: int, passes: int | None, seed: int, channels_last: bool, pool_size: int,
) -> list[tuple[str, float]]:
    space, batch, default_passes = SIZES[name]
    passes = passes or default_passes
    torch.manual_seed(seed)
    net = SuperNet(space)
    # A tiny lr keeps weights sane over many random steps; speed does not depend on it.
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    x = torch.randn(batch, space.input_channels, space.input_size, space.input_size)
    y = torch.randint(0, space.num_classes, (batch,))
    if channels_last:  # as spos.train.Trainer does by default, on CPU too
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    sampler = build_sampler(space, "uniform", seed=seed, min_channel_gene=2)  # scales 0.6-2.0
    # Steady state: a fixed pool of paths that the warm-up runs once per method, so every conv
    # shape has its compiled oneDNN kernel cached, as in a long training run (spos raises
    # oneDNN's cache to 16,384 kernels; see spos/__init__.py). A round trains every pool path
    # once per method (same order for both), so each round's ratio is a throughput ratio over
    # the same mix of widths, not one path's.
    rng = random.Random(seed)
    pool = [sampler.sample() for _ in range(pool_size)]
    diff = check_equal(net, x[:2], pool[0])
    assert diff < 1e-4, f"masked baseline differs from the sliced supernet by {diff}"
    methods = {"sliced": sliced_forward, "masked": masked_forward}
    big, small = largest(space), smallest(space)
    paths = {"largest": [big] * 2, "smallest": [small] * 2}
    for method in (sliced_forward, masked_forward):
        train_steps(net, opt, method, x, y, pool)
    for archs in paths.values():
        train_steps(net, opt, sliced_forward, x, y, archs)
    speed: dict[str, list[float]] = {k: [] for k in (*methods, *paths)}
    for r in range(rounds):
        archs = [a for _ in range(passes) for a in rng.sample(pool, len(pool))]
        order = list(methods) if r % 2 == 0 else list(methods)[::-1]
        for m in order:
            speed[m].append(batch * len(archs) / train_steps(net, opt, methods[m], x, y, archs))
        order = list(paths) if r % 2 == 0 else list(paths)[::-1]
        for p in order:
            speed[p].append(batch * len(paths[p]) / train_steps(net, opt, sliced_forward, x, y, paths[p]))
    med = {k: statistics.median(v) for k, v in speed.items()}
    fmt = "channels_last" if channels_last else "NCHW"
    label = f"{name} (batch {batch}, {space.input_size}x{space.input_size}x{space.input_channels}, {fmt})"
    print(f"{label}: masked-vs-sliced max |diff| {diff:.1e}; {rounds} rounds, each training "
          f"{pool_size} uniform paths x {passes} per method; MACs masked / exactly sliced {macs_ratio(space, pool):.2f}x")
    for k, v in speed.items():
        spread = f"{min(v):.1f}-{max(v):.1f}"
        print(f"  {k:<30}{med[k]:>10.1f} img/s   (rounds {spread})")
    # Ratios within a round compare runs seconds apart, so they resist the load drifting
    # between rounds better than a ratio of medians; both are printed.
    paired = statistics.median(s / m for s, m in zip(speed["sliced"], speed["masked"]))
    size = statistics.median(s / b for s, b in zip(speed["smallest"], speed["largest"]))
    print(f"  {'speed-up sliced / masked':<30}{paired:>10.2f}x (median of per-round ratios; "
          f"ratio of medians {med['sliced'] / med['masked']:.2f}x)")
    print(f"  {'smallest / largest path':<30}{size:>10.2f}x (median of per-round ratios)")
    return [(name, paired)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median over them)")
    ap.add_argument("--passes", type=int, default=None,
                    help="passes over the pool per method per round (default: 1 at 224, 5 small)")
    ap.add_argument("--pool", type=int, default=8, help="distinct uniform paths a round trains")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--memory-format",
        choices=["channels_last", "contiguous", "both"],
        default="both",
        help="activation/weight layout (the trainer uses channels_last)",
    )
    ap.add_argument("--plain-convs", action="store_true",
                    help="route every conv to F.conv2d (spos.nn.ops.FAST_PATHS off), as before issue #15")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.plain_convs:
        from spos.nn import ops

        ops.FAST_PATHS = False
    isa = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, ISA {isa}, {args.threads} threads, uniform paths (scales 0.6-2.0)"
          f"{', plain F.conv2d (no CPU fast paths)' if args.plain_convs else ''}")  # fmt: skip
    ratios = []
    formats = {"channels_last": [True], "contiguous": [False], "both": [True, False]}
    for cl in formats[args.memory_format]:
        for name in args.sizes:
            t = time.perf_counter()
            for n, r in bench_size(name, args.rounds, args.passes, args.seed, cl, args.pool):
                ratios.append((f"{n}, {'channels_last' if cl else 'NCHW'}", r))
            print(f"  ({time.perf_counter() - t:.0f} s)")
    for name, ratio in ratios:
        goal = " (goal >= 1.4x)" if name.startswith("224") else ""
        print(f"sliced / masked at {name}: {ratio:.2f}x{goal}")


if __name__ == "__main__":
    main()
