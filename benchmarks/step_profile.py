"""Where a small-preset supernet training step spends its time, by op family (torch.profiler).

    python benchmarks/step_profile.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/step_profile.py

16 sliced steps (batch 128, channels_last, SGD with Nesterov) of uniform paths of the
`fashion-mnist` preset's supernet after 4 warm-up steps; prints the self CPU time of convolution,
batch norm, activations, matmul and the optimizer as shares of the whole, then the top ops. It
bounds what a fused BN/activation kernel could save.
"""

from __future__ import annotations

import argparse
import random

import torch
from torch.profiler import ProfilerActivity, profile

from spos.configs import load_config
from spos.genes import sample
from spos.nn.supernet import SuperNet
from spos.space import SearchSpace

GROUPS = {
    "convolution": ("convolution", "conv", "mkldnn", "DepthwiseTaps"),
    "batch norm": ("batch_norm",),
    "activations": ("relu", "threshold", "hardswish", "hardsigmoid", "sigmoid"),
    "matmul/linear": ("mm", "addmm", "linear", "bmm"),
    "optimizer": ("_foreach", "Optimizer.step"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.from_options(load_config("fashion-mnist")["space"])
    net = SuperNet(space).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,), generator=g)
    rng = random.Random(0)
    paths = [sample(space, rng) for _ in range(args.steps)]

    def step(arch) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x, arch), y, label_smoothing=0.1).backward()
        opt.step()

    for arch in paths[:4]:
        step(arch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for arch in paths:
            step(arch)
    self_time = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_time.values())
    print(f"ISA {torch.backends.cpu.get_cpu_capability()}, {args.threads} threads, {args.steps} sliced steps, "
          "batch 128, channels_last; self CPU time by op family:")  # fmt: skip
    for name, keys in GROUPS.items():
        t = sum(v for k, v in self_time.items() if any(s in k for s in keys))
        print(f"  {name:<14} {100 * t / total:5.1f}%")
    for k, v in sorted(self_time.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {k:<45} {100 * v / total:5.1f}%")


if __name__ == "__main__":
    main()
