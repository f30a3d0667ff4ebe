"""The whole selection pipeline on tiny ONNX graphs: encode -> segment -> score -> select."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.pipeline import EdgePipeline, PipelineConfig, Selection
from edge.runtime import BackendError
from edge.sampler import BudgetConfig
from edge.segmenter import Instance, NoSegmenter
from link.config import ConfigError, load_config


def fake_cost(width: int, height: int, unit: str):
    def size(kept: np.ndarray, indices: np.ndarray) -> float:
        nbytes = 20 + math.ceil((kept.size + 10 * indices.size) / 8)
        return nbytes / 100.0 if unit == "seconds" else nbytes  # 100 B/s "radio"

    return size


def config(graphs, **kw) -> PipelineConfig:
    kw.setdefault("tokenizer_id", 1)  # the tiny test encoder is one-layer (wire v1)
    cfg = PipelineConfig(encoder=graphs["encoder"], budget=BudgetConfig("bytes", 1500), **kw)
    cfg.segmenter.backend = "none"
    cfg.recoverability.scorer = graphs["scorer"]
    return cfg


def test_select_returns_a_frame_ready_selection(graphs, build):
    img = build.photo(100, 150)  # not a multiple of 8: padded by edge replication
    with EdgePipeline.from_config(config(graphs), cost_fn=fake_cost) as pipe:
        sel = pipe.select(img)
    assert isinstance(sel, Selection)
    assert (sel.grid_h, sel.grid_w, sel.width, sel.height, sel.tokenizer_id) == (13, 19, 150, 100, 1)
    assert sel.kept.shape == (13, 19) and sel.kept.dtype == bool
    assert sel.indices.dtype == np.int64 and sel.indices.size == sel.kept.sum()
    assert set(sel.timings) == {"encode", "segment", "score", "wait", "select"}
    assert sel.size_bytes == fake_cost(0, 0, "bytes")(sel.kept, sel.indices) <= 1500
    # the indices are the encoder's, at the kept positions in row-major order
    with EdgePipeline.from_config(config(graphs), cost_fn=fake_cost) as pipe:
        full = pipe.encode(np.pad(img, ((0, 4), (0, 2), (0, 0)), mode="edge"))
    assert np.array_equal(sel.indices, full[sel.kept])


def test_budget_units(graphs, build):
    img = build.photo(64, 96)
    with EdgePipeline.from_config(config(graphs), cost_fn=fake_cost) as pipe:
        small = pipe.select(img, BudgetConfig("bpp", 0.5))
        assert small.size_bytes <= 0.5 * 64 * 96 / 8 and small.unit == "bytes"
        timed = pipe.select(img, BudgetConfig("seconds", 2.0))
        assert timed.unit == "seconds" and timed.cost <= 2.0 and timed.size_bytes <= 200


class OnePerson(NoSegmenter):
    def segment(self, image):
        mask = np.zeros(image.shape[:2], bool)
        mask[8:40, 16:32] = True
        return [Instance("person", 0, 0.9, (16, 8, 32, 40), mask)]


def test_semantic_tokens_are_kept_first(graphs, build):
    cfg = config(graphs)
    with EdgePipeline.from_config(cfg, cost_fn=fake_cost) as pipe:
        pipe.segmenter = OnePerson(cfg.segmenter)
        sel = pipe.select(build.photo(64, 96), BudgetConfig("bytes", 20 + 96 // 8 + 20))
    assert sel.n_semantic == 8 and sel.kept[1:5, 2:4].all() and sel.kept.sum() == 16


def test_real_link_sizing(graphs, build):
    pytest.importorskip("link.packet")
    with EdgePipeline.from_config(config(graphs)) as pipe:
        sel = pipe.select(build.photo(128, 192), BudgetConfig("bytes", 400))
        assert 0.98 * 400 <= sel.size_bytes <= 400
        timed = pipe.select(build.photo(128, 192), BudgetConfig("seconds", 1.0))  # SF8, 222-byte fragments
        assert 0.9 * 1.0 <= timed.cost <= 1.0 and timed.size_bytes < sel.size_bytes


def test_encoder_contract_is_checked(graphs, build, tmp_path):
    bad = build.scorer(tmp_path / "not-an-encoder.onnx")  # float output
    cfg = config(graphs)
    cfg.encoder = bad
    with EdgePipeline.from_config(cfg, cost_fn=fake_cost) as pipe, pytest.raises(BackendError, match="encoder returned"):
        pipe.select(build.photo(64, 64))
    with EdgePipeline.from_config(config(graphs), cost_fn=fake_cost) as pipe, pytest.raises(ValueError, match="RGB uint8"):
        pipe.select(np.zeros((64, 64), np.uint8))


def test_pipeline_config_from_toml(tmp_path, graphs):
    toml = tmp_path / "edge.toml"
    toml.write_text(f"""
encoder = "{graphs['encoder']}"
[encoder_runtime]
backend = "onnxruntime"
providers = ["tensorrt", "cuda", "cpu"]
intra_op_threads = 2
[segmenter]
backend = "opencv"
mask_mode = "box"
[importance.class_weights]
person = 1.0
boat = 0.7
[recoverability]
scorer = "{graphs['scorer']}"
scorer_weight = 0.5
[sampler]
lattice_share = 0.4
[budget]
unit = "seconds"
value = 20
[packet]
mtu = 115
tag_len = 8
[packet.radio]
sf = 9
mtu = 115
""")
    cfg = load_config(PipelineConfig, toml)
    assert cfg.encoder_runtime.providers == ["tensorrt", "cuda", "cpu"]
    assert cfg.importance.class_weights == {"person": 1.0, "boat": 0.7}
    assert cfg.budget.unit == "seconds" and cfg.packet.radio.sf == 9
    toml.write_text("[sampler]\nlattice_shar = 0.4\n")
    with pytest.raises(ConfigError, match="sampler.lattice_shar"):
        load_config(PipelineConfig, toml)
