"""The edge's VQ encoder as ONNX for the demo: the shipped file, or an export cached on the fly.

The demo runs with the ``cloud`` extra, which has torch but not the ``onnx`` package that
``export/`` validates with, so this exports with ``torch.onnx.export`` alone, the same graph
and tensor names as ``export.onnx_export`` (``image`` -> ``indices``, dynamic spatial axes).
The cache key is the sha256 of the tokenizer's weights, so a retrained or random-init
tokenizer never meets an encoder exported from other weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "TOKENCAST_CACHE_DIR"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokencast"


def weights_digest(module: object) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():  # type: ignore[attr-defined]
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_encoder(tokenizer: object, path: Path) -> None:
    import torch

    from models.tokenizer import EncoderExport
    from models.tokenizer2 import Encoder2Export, TwoLayerTokenizer

    layered = isinstance(tokenizer, TwoLayerTokenizer)
    module = (Encoder2Export(tokenizer) if layered else EncoderExport(tokenizer)).eval().cpu()  # type: ignore[arg-type]
    outputs = ["indices", "coarse"] if layered else ["indices"]
    axes = {"image": {2: "height", 3: "width"}, "indices": {1: "grid_h", 2: "grid_w"}}
    if layered:
        axes["coarse"] = {2: "coarse_h", 3: "coarse_w"}
    example = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings are expected here
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=outputs, dynamic_axes=axes,
                          do_constant_folding=True)
    os.replace(tmp, path)


def ensure_encoder(tokenizer: object, shipped: Path, cache_dir: Path, *, use_shipped: bool = True) -> Path:
    """``shipped`` if it exists (and may be used), else an ONNX export of ``tokenizer`` in ``cache_dir``."""
    if use_shipped and shipped.is_file():
        return shipped
    digest = weights_digest(tokenizer)[:16]
    path = cache_dir / f"{shipped.name.removesuffix('.onnx')}.{digest}.onnx"
    why = f"encoder ONNX {shipped} is missing" if use_shipped else "random-init weights"
    if path.is_file():
        log.info("%s: using the export from the torch tokenizer cached at %s", why, path)
    else:
        export_encoder(tokenizer, path)
        log.info("%s: exported it from the torch tokenizer to %s", why, path)
    return path
