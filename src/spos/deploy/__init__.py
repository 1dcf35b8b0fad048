"""Deployment (SPEC §6): the graph that ships (BN folded, int8-friendly), ONNX export checked
against PyTorch, int8 quantisation, and what an arch costs (count and op-by-op profile).

Units: latencies are milliseconds per forward pass of one batch (batch 1 unless said); accuracy
is top-1 as a fraction in [0, 1]. ONNX files take one input ``input`` (N, C, H, W, float32,
normalised as in training; N is dynamic) and give ``logits`` (N, num_classes).
"""

from .export import (
    GRAPHS,
    Exported,
    deployable,
    export_checked,
    export_onnx,
    export_source,
    load_for_export,
)
from .profile import Profile, count_arch, profile_arch
from .quantize import QuantizeReport, load_images, quantize_and_measure, quantize_onnx

__all__ = [
    "GRAPHS",
    "Exported",
    "Profile",
    "QuantizeReport",
    "count_arch",
    "deployable",
    "export_checked",
    "export_onnx",
    "export_source",
    "load_for_export",
    "load_images",
    "profile_arch",
    "quantize_and_measure",
    "quantize_onnx",
]
