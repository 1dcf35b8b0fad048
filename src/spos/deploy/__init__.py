"""Deployment (SPEC §6): the graph that ships (BN folded, int8-friendly), ONNX export and int8
quantisation.

Units: latencies are milliseconds per forward pass of one batch (batch 1 unless said); accuracy
is top-1 as a fraction in [0, 1]. ONNX files take one input ``input`` (N, C, H, W, float32,
normalised as in training; N is dynamic) and give ``logits`` (N, num_classes).
"""

from .export import GRAPHS, deployable, export_onnx
from .quantize import quantize_onnx

__all__ = ["GRAPHS", "deployable", "export_onnx", "quantize_onnx"]
