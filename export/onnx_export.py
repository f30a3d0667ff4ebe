"""torch -> ONNX for the four models we own, with the tensor names the edge and the cloud look up.

Uses the TorchScript exporter (``dynamo=False``): it needs no onnxscript, is deterministic for
the same weights, and keeps the node names (``/MatMul``, ``/ArgMax``) readable for the FP16 block
list and the INT8 exclusion list. Shapes are dynamic on the spatial axes (one file serves every
camera resolution) unless ``dynamic=False`` pins them to the input size.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from .sources import CODE_PICKERS, MASKGIT_WINDOW, Source, codebook_size

DEFAULT_OPSET = 17


@dataclass(frozen=True)
class GraphSpec:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]


GRAPHS: dict[str, GraphSpec] = {
    "encoder": GraphSpec(("image",), ("indices",),
                         {"image": {2: "height", 3: "width"}, "indices": {1: "grid_h", 2: "grid_w"}}),
    # tokenizer v2's edge encoder: H, W multiples of 16; fine ids at /8, FSQ coarse levels at /16
    "encoder2": GraphSpec(("image",), ("indices", "coarse"),
                          {"image": {2: "height", 3: "width"}, "indices": {1: "grid_h", 2: "grid_w"},
                           "coarse": {2: "coarse_h", 3: "coarse_w"}}),
    "encoder2fast": GraphSpec(("image",), ("indices", "coarse"),
                              {"image": {2: "height", 3: "width"}, "indices": {1: "grid_h", 2: "grid_w"},
                               "coarse": {2: "coarse_h", 3: "coarse_w"}}),
    "scorer": GraphSpec(("image",), ("difficulty",),
                        {"image": {2: "height", 3: "width"}, "difficulty": {2: "grid_h", 3: "grid_w"}}),
    "decoder": GraphSpec(("indices",), ("image",),
                         {"indices": {1: "grid_h", 2: "grid_w"}, "image": {2: "height", 3: "width"}}),
    # MaskGIT step on one fixed 16x16 window; the batch of windows is dynamic.
    "maskgit": GraphSpec(("ids",), ("logits",), {"ids": {0: "batch"}, "logits": {0: "batch"}}),
}


def example_input(source: Source, size: tuple[int, int]) -> torch.Tensor:
    """A traceable input; deterministic so the exported file is too."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    if source.name in (*CODE_PICKERS, "scorer"):
        return torch.rand(1, 3, h, w, generator=g)
    if source.name == "decoder":
        return torch.randint(0, codebook_size(source), (1, h // 8, w // 8), generator=g)
    return torch.randint(0, codebook_size(source) + 1, (1, MASKGIT_WINDOW, MASKGIT_WINDOW), generator=g)


def export_onnx(source: Source, path: Path, size: tuple[int, int], *, opset: int = DEFAULT_OPSET,
                dynamic: bool = True) -> onnx.ModelProto:
    """Export ``source`` to ``path`` (a single self-contained file) and return the checked graph."""
    spec = GRAPHS[source.name]
    buf = io.BytesIO()
    # nn.MultiheadAttention's eval fast path traces to a fused op with no ONNX symbolic
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic are expected here
            torch.onnx.export(
                source.module, (example_input(source, size),), buf, dynamo=False, opset_version=opset,
                input_names=list(spec.inputs), output_names=list(spec.outputs),
                dynamic_axes=spec.dynamic_axes if dynamic else None, do_constant_folding=True,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    model = onnx.load_from_string(buf.getvalue())
    if source.name != "maskgit":
        # the batch of one is part of the contract; the tracer leaves output batch dims symbolic
        for out in model.graph.output:
            dim0 = out.type.tensor_type.shape.dim[0]
            if not dim0.HasField("dim_value"):
                dim0.dim_value = 1
    model.producer_name = "tokencast-export"
    model.producer_version = "1"  # fixed, so the bytes do not depend on the torch version string
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return model
