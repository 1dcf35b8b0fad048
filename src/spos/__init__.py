"""spos: Single Path One-Shot neural architecture search."""

import os

# oneDNN, PyTorch's CPU convolution library, keeps 1,024 compiled kernels ("primitives") by
# default. A supernet's sliced convs have thousands of shapes (20 positions x 4 blocks x 8
# widths, forward and backward), so that cache thrashes and kernels are recompiled every step
# (0.3 ms each); 16,384 holds them all: 7-10% faster CPU training. Read at the first conv, so
# setting it here works even after ``import torch``; a value the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

__version__ = "0.1.0"

__all__ = ["__version__", "create_model"]


def __getattr__(name: str):
    # ``spos.create_model`` without importing torch at ``import spos`` (the CLI starts faster).
    if name == "create_model":
        from .nn.create import create_model

        return create_model
    raise AttributeError(f"module 'spos' has no attribute {name!r}")
