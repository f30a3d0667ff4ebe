"""TensorRT path: pure helpers everywhere; a real engine build only where TensorRT and a GPU exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import build_engines, tensorrt_build
from export.tensorrt_build import Profile, builder_flags, profiles, trtexec_command

README = Path(__file__).resolve().parents[2] / "hw" / "README.md"


def test_profiles_from_input_size():
    (p,) = profiles("encoder", (480, 640))
    assert p == Profile("image", (1, 3, 64, 64), (1, 3, 480, 640), (1, 3, 1088, 1920))
    (big,) = profiles("scorer", (1200, 2000))
    assert big.max == (1, 3, 1200, 2000) and big.opt == big.max
    (d,) = profiles("decoder", (480, 640))
    assert (d.name, d.min, d.opt, d.max) == ("indices", (1, 8, 8), (1, 60, 80), (1, 136, 240))
    (m,) = profiles("maskgit", (480, 640))
    assert (m.min, m.opt, m.max) == ((1, 16, 16), (8, 16, 16), (32, 16, 16))
    (s,) = profiles("segmenter", (640, 640), "images", fixed_shape=(1, 3, 640, 640))
    assert s.min == s.opt == s.max == (1, 3, 640, 640)
    with pytest.raises(ValueError, match="valid: encoder"):
        profiles("yolo", (64, 64))


def test_builder_flags():
    assert builder_flags("fp32") == []
    assert builder_flags("fp16")[0] == "FP16"
    assert builder_flags("int8") == ["INT8", "FP16"]
    with pytest.raises(ValueError, match="valid: fp32, fp16, int8"):
        builder_flags("bf16")


def test_trtexec_lines_match_the_readme():
    readme = README.read_text().replace("\\\n  ", "")
    assert "## Building TensorRT engines" in readme
    for model, onnx_prec, prec in (("encoder", "fp32", "fp16"), ("encoder", "int8", "int8"),
                                   ("decoder", "fp32", "fp16"), ("maskgit", "fp32", "fp16")):
        line = trtexec_command(f"engines/{model}.{onnx_prec}.onnx", f"engines/{model}.{prec}.engine", prec,
                               profiles(model, (480, 640)))
        assert line in readme, line


def test_missing_tensorrt_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tensorrt_build, "available", lambda: None)
    assert build_engines.main(["--out", str(tmp_path), "--tensorrt", "--models", "segmenter"]) == 0
    assert "TensorRT not available: skipped" in capsys.readouterr().out.splitlines()


@pytest.mark.gpu
def test_build_and_run_encoder_engine(built, tmp_path):
    pytest.importorskip("tensorrt")
    from edge.runtime import create_backend
    from edge.runtime.base import RuntimeConfig
    from edge.runtime.tensorrt import missing_libraries

    if missing_libraries():
        pytest.skip(missing_libraries())
    out, _, _ = built
    engine = tmp_path / "encoder.fp16.engine"
    tensorrt_build.build_engine(out / "encoder.fp32.onnx", engine, "fp16", profiles("encoder", (64, 64)),
                                timing_cache=tmp_path / "timing.cache", float32_layers=["/MatMul", "/ArgMax"])
    assert engine.stat().st_size > 0 and (tmp_path / "timing.cache").is_file()
    image = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with create_backend(engine, RuntimeConfig(backend="tensorrt")) as backend:
        idx = np.asarray(next(iter(backend.run({"image": image}).values())))
    assert idx.shape == (1, 8, 8) and idx.min() >= 0 and idx.max() < 1024
