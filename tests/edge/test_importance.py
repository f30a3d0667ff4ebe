"""Semantic scores on the token grid, complexity and recoverability (the two score inputs)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge.complexity import complexity_map, pad_to_multiple
from edge.importance import ImportanceConfig, semantic_scores
from edge.recoverability import Recoverability, RecoverabilityConfig, fuse
from edge.runtime import BackendError
from edge.segmenter import Instance
from link.config import ConfigError, from_dict

GH, GW, F = 8, 12, 8


def inst(name: str, score: float, y0: int, x0: int, y1: int, x1: int, h: int = GH * F, w: int = GW * F) -> Instance:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return Instance(name, 0, score, (x0, y0, x1, y1), mask)


def test_class_weights_confidence_and_coverage():
    s = semantic_scores([inst("person", 1.0, 0, 0, 16, 16), inst("car", 0.5, 32, 32, 48, 44)], GH, GW)
    assert s[:2, :2] == pytest.approx(1.0)
    assert s[4:6, 4] == pytest.approx(0.45)  # 0.9 x 0.5, fully covered
    assert s[4, 5] == pytest.approx(0.45)  # half covered, but one of the car's min_tokens = 4 best tokens
    one = semantic_scores([inst("car", 0.5, 32, 32, 48, 44)], GH, GW, config=ImportanceConfig(min_tokens=1))
    assert one[4, 5] == pytest.approx(0.225) and one[4, 4] == pytest.approx(0.45)
    assert s[0, 5] == 0 and s.dtype == np.float32
    assert semantic_scores([inst("sky", 1.0, 0, 0, 64, 96)], GH, GW, config=ImportanceConfig(default_weight=0)).max() == 0


def test_partial_coverage_scales_the_score():
    big = inst("dog", 1.0, 0, 0, 40, 40)  # token row 4 / col 4 are 8/8 covered; make one half covered
    big.mask[36:40] = False
    s = semantic_scores([big], GH, GW)
    assert s[0, 0] == pytest.approx(0.6) and s[4, 0] == pytest.approx(0.3)


def test_small_objects_never_vanish():
    # a drone view: twenty cars of 3x3 pixels each, straddling token borders
    instances = [inst("car", 0.4, 6 + 8 * (i // 5), 6 + 16 * (i % 5), 9 + 8 * (i // 5), 9 + 16 * (i % 5)) for i in range(20)]
    s = semantic_scores(instances, GH, GW)
    for i in instances:
        r0, c0 = int(i.box[1]) // F, int(i.box[0]) // F
        assert s[r0 : r0 + 2, c0 : c0 + 2].max() == pytest.approx(0.36)
    # an instance whose mask is empty (a sliver box) still marks its box centre
    sliver = Instance("person", 0, 0.9, (40.0, 20.0, 41.0, 21.0), np.zeros((GH * F, GW * F), bool))
    assert semantic_scores([sliver], GH, GW)[2, 5] == pytest.approx(0.9)


def test_weak_tokens_below_min_score_are_background():
    a = inst("chair", 0.5, 0, 0, 16, 17)  # column 2 is covered 1/8 -> 0.3 x 0.5 / 8 < 0.02
    s = semantic_scores([a], GH, GW)
    assert s[0, 2] == 0 and s[0, 0] == pytest.approx(0.15)


def test_importance_config_from_dict():
    cfg = from_dict(ImportanceConfig, {"class_weights": {"person": 1.0, "boat": 0.8}, "default_weight": 0.1})
    assert cfg.weight("boat") == 0.8 and cfg.weight("car") == 0.1
    with pytest.raises(ConfigError, match="class_weights.person"):
        from_dict(ImportanceConfig, {"class_weights": {"person": 2.0}})


def test_complexity_is_robust_and_bounded(build):
    img = build.photo(100, 150)
    c = complexity_map(img)
    assert c.shape == (13, 19) and c.dtype == np.float32
    assert 0.0 <= c.min() and c.max() <= 1.0
    assert c[8:12].mean() > 3 * c[:4].mean()  # textured bottom half beats the smooth sky
    flat = np.full((64, 64, 3), 128, np.uint8)
    flat += np.random.default_rng(0).integers(0, 2, flat.shape, dtype=np.uint8)  # sensor noise only
    assert complexity_map(flat).max() < 0.1  # the absolute floor stops noise being stretched to 1
    assert pad_to_multiple(img, 8).shape == (104, 152, 3)
    assert (pad_to_multiple(img, 8)[100:, :150] == img[99:100]).all()


def test_recoverability_with_and_without_scorer(graphs, build, tmp_path, caplog):
    img = pad_to_multiple(build.photo(100, 150), 8)
    caplog.set_level(logging.INFO)
    with Recoverability(RecoverabilityConfig(scorer=tmp_path / "none.onnx")) as rec:
        assert rec.scorer is None
        p0 = rec.priority(img)
    assert "complexity only" in caplog.text
    assert np.array_equal(p0, complexity_map(img))
    with Recoverability(RecoverabilityConfig(scorer=graphs["scorer"], scorer_weight=1.0)) as rec:
        d = rec.difficulty(img)
        p1 = rec.priority(img)
    assert d.shape == (13, 19) and p1.shape == (13, 19) and 0 <= p1.min() and p1.max() <= 1
    assert not np.array_equal(p0, p1)
    with pytest.raises(BackendError, match="not found"):
        Recoverability(RecoverabilityConfig(scorer=tmp_path / "none.onnx", require_scorer=True)).load()
    assert np.array_equal(fuse(p0, None, 0.7), p0)


def test_large_objects_are_discounted_and_small_ones_keep_min_tokens():
    gh, gw = 40, 60
    h, w = gh * F, gw * F
    big = inst("person", 1.0, 0, 0, 256, 256, h, w)  # 32 x 32 = 1024 tokens
    far = inst("person", 1.0, 300, 400, 310, 406, h, w)  # 10 x 6 px, straddling 2 x 1 tokens
    s = semantic_scores([big, far], gh, gw)
    assert s[10, 10] == pytest.approx((64 / 1024) ** 0.25)  # 0.5 inside the big one
    assert (s[:32, :32] == 1.0).sum() == 4  # its four centre tokens keep the full score
    assert s[37:39, 50].min() == pytest.approx(1.0)  # the far one outranks the big one's interior
    flat = semantic_scores([big, far], gh, gw, config=ImportanceConfig(size_exponent=0.0))
    assert flat[10, 10] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="min_tokens"):
        ImportanceConfig(min_tokens=0)
