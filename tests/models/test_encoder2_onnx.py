"""Tokenizer v2's edge encoder in ONNX Runtime agrees with torch: fine ids and coarse levels.

Random-init weights always (the export path itself), and the shipped ONNX against the shipped
tokenizer v2 weights when both are on disk."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from models.registry import files_for  # noqa: E402
from models.tokenizer2 import Encoder2Export, TwoLayerTokenizer  # noqa: E402


def photos(size: tuple[int, int], n: int = 2) -> list[np.ndarray]:
    from export.calib import load_images, to_batch

    return [to_batch(im) for im in load_images(None, size)[:n]]


def agreement(onnx_path, module: Encoder2Export, images: list[np.ndarray]) -> tuple[float, float]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    fine, coarse = [], []
    for x in images:
        got = sess.run(["indices", "coarse"], {"image": x})
        with torch.no_grad():
            ref = [t.numpy() for t in module(torch.from_numpy(x))]
        assert got[0].shape == ref[0].shape and got[1].shape == ref[1].shape
        assert got[0].dtype == np.int64 and got[1].dtype == np.int64
        fine.append(np.mean(got[0] == ref[0]))
        coarse.append(np.mean(got[1] == ref[1]))
    return float(np.mean(fine)), float(np.mean(coarse))


def test_random_init_export_agrees_with_torch_at_two_sizes(tmp_path):
    from export.onnx_export import export_onnx
    from export.sources import load_source

    src = load_source("encoder2", random_init=True)
    path = tmp_path / "encoder2.onnx"
    export_onnx(src, path, (64, 96))
    for size in ((64, 96), (96, 128)):  # dynamic axes: a size it was not traced at
        fine, coarse = agreement(path, src.module, photos(size))
        assert fine >= 0.99 and coarse >= 0.99, (size, fine, coarse)


def test_shipped_encoder_onnx_agrees_with_shipped_tokenizer():
    files = files_for(3)
    onnx_path, weights = files.path("encoder_onnx"), files.path("tokenizer")
    if not (onnx_path.is_file() and weights.is_file()):
        pytest.skip("tokenizer v2 weights or its encoder ONNX not on disk")
    from models.checkpoints import load_weights
    from models.tokenizer2 import Tokenizer2Config

    state, meta = load_weights(weights)
    tok = TwoLayerTokenizer(Tokenizer2Config.from_dict(meta["config"]))
    tok.load_state_dict(state)
    fine, coarse = agreement(onnx_path, Encoder2Export(tok.eval()).eval(), photos((256, 384)))
    assert fine >= 0.99 and coarse >= 0.99, (fine, coarse)
