"""Fused or cheaper batch norm for the supernet step: does any BN path beat eager ``F.batch_norm``?

    python benchmarks/bn_paths.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bn_paths.py

``benchmarks/step_profile.py`` puts batch norm at 18-29% of a small-preset supernet step. This
script measures what replacing it would give, on the real step (the `fashion-mnist` preset's
supernet, uniform paths, batch 128, channels_last, SGD with Nesterov, label smoothing). Every
``F.batch_norm`` call of the step (sliced and full-width blocks alike) goes through one of:

- ``eager``: ``F.batch_norm`` as shipped (ATen's CPU kernel, forward + backward);
- ``decomposed``: the same maths in eager tensor ops (``var_mean``, one multiply-add), the
  "cheaper formulation" candidate;
- ``compiled``: ``torch.compile`` (inductor, ``dynamic=True`` so every sliced width shares one
  kernel) of the batch norm alone; inductor fuses the statistics, the affine and the backward
  into generated C++ loops;
- ``compiled+relu``: the same, with the ReLU that follows a BN in the ShuffleNet blocks fused in
  (patched at the block level: each ``BatchNorm2d`` directly followed by ``ReLU``).

Rounds interleave the paths (alternating the order); the figures are medians over rounds of the
time of the same path pool. Compile time is printed apart and not counted. Each method trains its
own copy of the supernet from the same initial weights; its last loss is printed (the same maths
up to float rounding, so the losses drift apart over the steps but stay finite and close).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

import spos  # noqa: F401  (sets oneDNN's kernel cache size before the first conv)
from spos.configs import load_config
from spos.genes import sample
from spos.nn.supernet import SuperNet
from spos.space import SearchSpace

EAGER_BN = F.batch_norm


def decomposed_bn(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch norm in eager tensor ops (training: batch statistics, running stats updated)."""
    if training:
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        if running_mean is not None:
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                running_mean.lerp_(mean.detach(), momentum)
                running_var.lerp_(var.detach() * (n / max(n - 1, 1)), momentum)
    else:
        mean, var = running_mean, running_var
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1))


def _bn(x, running_mean, running_var, weight, bias, training, momentum, eps):
    return EAGER_BN(x, running_mean, running_var, weight, bias, training, momentum, eps)


def _bn_relu(x, running_mean, running_var, weight, bias, training, momentum, eps):
    return torch.relu(EAGER_BN(x, running_mean, running_var, weight, bias, training, momentum, eps))


class Patched:
    """Route every ``F.batch_norm`` of the step through ``fn`` while the context is open."""

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        F.batch_norm = self.fn
        torch.nn.modules.batchnorm.F.batch_norm = self.fn

    def __exit__(self, *exc):
        F.batch_norm = EAGER_BN
        torch.nn.modules.batchnorm.F.batch_norm = EAGER_BN


def positional(fn):
    """``fn`` with ``F.batch_norm``'s signature (its callers pass some arguments by keyword)."""

    def call(
        x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
    ):
        if torch.compiler.is_compiling():  # inductor's own tracing of batch norm lands here too
            return EAGER_BN(x, running_mean, running_var, weight, bias, training, momentum, eps)
        return fn(x, running_mean, running_var, weight, bias, training, momentum, eps)

    return call


def relu_fused(net: torch.nn.Module, bn, bn_relu):
    """A ``F.batch_norm`` stand-in that runs ``bn_relu`` for the BNs of ``net`` directly followed
    by a ReLU (those ReLUs become identities) and ``bn`` for the others. A BN is recognised by
    its weight's storage, which every sliced view shares."""
    fused = set()
    for seq in net.modules():
        if isinstance(seq, torch.nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], torch.nn.BatchNorm2d) and isinstance(
                    seq[i + 1], torch.nn.ReLU
                ):
                    fused.add(seq[i].weight.data_ptr())
                    seq[i + 1] = torch.nn.Identity()

    def call(
        x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
    ):
        if torch.compiler.is_compiling():  # inductor's own tracing of batch norm lands here too
            return EAGER_BN(x, running_mean, running_var, weight, bias, training, momentum, eps)
        fn = bn_relu if weight is not None and weight.data_ptr() in fused else bn
        return fn(x, running_mean, running_var, weight, bias, training, momentum, eps)

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.from_options(load_config("fashion-mnist")["space"])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,), generator=g)
    rng = random.Random(0)
    pool = [sample(space, rng) for _ in range(args.paths)]

    # Channel counts get specialised despite dynamic=True (channels_last strides), so every width
    # of the pool may need its own kernel: a bounded set (multiples of 16 up to the widest block).
    torch._dynamo.config.recompile_limit = 512
    torch._dynamo.config.accumulated_recompile_limit = 4096
    compiled_bn = torch.compile(_bn, dynamic=True)
    methods = {
        "eager": EAGER_BN,
        "decomposed": decomposed_bn,
        "compiled": positional(compiled_bn),
        "compiled+relu": None,
    }
    nets, opts = {}, {}
    for name in methods:
        torch.manual_seed(0)
        nets[name] = SuperNet(space).to(memory_format=torch.channels_last).train()
        opts[name] = torch.optim.SGD(nets[name].parameters(), lr=0.05, momentum=0.9, nesterov=True)
    methods["compiled+relu"] = relu_fused(
        nets["compiled+relu"], compiled_bn, torch.compile(_bn_relu, dynamic=True)
    )

    def run(name: str, arches) -> float:
        net, opt = nets[name], opts[name]
        loss = torch.zeros(())
        with Patched(methods[name]):
            for arch in arches:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(x, arch), y, label_smoothing=0.1)
                loss.backward()
                opt.step()
        return loss.item()

    for name in methods:  # warm-up: the compiled variants compile here, for every width of the pool
        t0 = time.perf_counter()
        run(name, pool)
        print(f"  warm-up {name:<13} {time.perf_counter() - t0:6.1f} s (compile included)")
    times = {name: [] for name in methods}
    losses = {}
    for r in range(args.rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            t0 = time.perf_counter()
            losses[name] = run(name, pool)
            times[name].append(time.perf_counter() - t0)
    isa = torch.backends.cpu.get_cpu_capability()
    print(f"ISA {isa}, {args.threads} threads; {args.paths} uniform paths x {args.rounds} rounds, batch 128, "
          "channels_last, full training step; median img/s:")  # fmt: skip
    base = statistics.median(times["eager"])
    for name in methods:
        t = statistics.median(times[name])
        ips = 128 * args.paths / t
        print(
            f"  {name:<13} {ips:7.0f} img/s   {base / t:5.2f}x eager   last loss {losses[name]:.4f}"
        )


if __name__ == "__main__":
    main()
