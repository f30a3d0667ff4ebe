"""Torch model definitions, training scripts and shipped checkpoints.

Only the cloud, the exporters and the benchmarks import this package; the edge runs the
exported ONNX graphs instead, so nothing here may be imported from ``edge/`` or ``link/``.
"""
