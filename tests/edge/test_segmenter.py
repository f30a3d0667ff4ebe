"""Segmenters: YOLO-seg decoding through real ONNX Runtime on a crafted graph, OpenCV fallback, benchmark."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from benchmarks import segmenter_recall
from edge.runtime import UnknownBackend
from edge.segmenter import SEGMENTERS, SegmenterConfig, create_segmenter
from edge.segmenter import opencv as ocv
from edge.segmenter.ops import batched_nms, box_iou, nms
from edge.segmenter.yolo import letterbox
from link.config import ConfigError, from_dict

S, NM = 64, 32
NAMES = ["person", "car", "dog"]


def yolo_outputs() -> dict[str, np.ndarray]:
    """Five candidates (columns) with known fates; prototypes give 'left half' and 'whole box' masks."""
    protos = np.zeros((1, NM, S // 4, S // 4), np.float32)
    protos[0, 0] = -10.0
    protos[0, 0, :, :8] = 10.0  # left half of the letterboxed square
    protos[0, 1] = 10.0
    cand = np.zeros((4 + len(NAMES) + NM, 5), np.float32)

    def put(j, box, cls, score, proto):
        cand[:4, j] = box
        cand[4 + cls, j] = score
        cand[4 + len(NAMES) + proto, j] = 1.0

    put(0, (32, 32, 32, 16), 0, 0.9, 0)  # person, kept: mask = left half of its box
    put(1, (33, 32, 32, 16), 0, 0.8, 1)  # same person slightly shifted: suppressed by NMS
    put(2, (32, 32, 32, 16), 1, 0.7, 1)  # a car on the same box: other class, kept
    put(3, (10, 10, 8, 8), 2, 0.1, 1)  # below confidence: dropped
    put(4, (56, 44, 8, 8), 2, 0.5, 1)  # small dog in the corner
    return {"output0": cand[None], "output1": protos}


@pytest.fixture(scope="module")
def yolo_model(build, tmp_path_factory):
    path = tmp_path_factory.mktemp("yolo") / "tiny-seg.onnx"
    return build.constant(path, "images", [1, 3, S, S], yolo_outputs())


def test_letterbox_centres_and_scales():
    img = np.full((64, 128, 3), 7, np.uint8)
    sq, r, pad = letterbox(img, 64)
    assert sq.shape == (64, 64, 3) and r == 0.5 and pad == (0, 16)
    assert (sq[:16] == 114).all() and (sq[16:48] == 7).all() and (sq[48:] == 114).all()


def test_nms_is_classwise_and_deterministic():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.9])
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert batched_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5).tolist() == [0, 3, 2]
    assert box_iou(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(90 / 110)


def test_yolo_seg_decodes_crafted_graph_through_onnxruntime(yolo_model):
    cfg = SegmenterConfig(backend="yolo-seg", model=yolo_model, class_names=NAMES)
    with create_segmenter(cfg) as seg:
        inst = seg.segment(np.zeros((64, 128, 3), np.uint8))
    assert [(i.class_name, round(i.score, 2)) for i in inst] == [("person", 0.9), ("car", 0.7), ("dog", 0.5)]
    person, car, dog = inst
    assert person.box == pytest.approx((32, 16, 96, 48))
    want = np.zeros((64, 128), bool)
    want[16:48, 32:64] = True  # the left half of the box: x < 64 in the original frame
    assert np.array_equal(person.mask, want)
    want[16:48, 32:96] = True
    assert np.array_equal(car.mask, want)
    assert dog.box == pytest.approx((104, 48, 120, 64)) and dog.mask.sum() == 16 * 16
    assert dog.mask[48:64, 104:120].all()


def test_yolo_seg_rejects_wrong_class_count(yolo_model):
    from edge.runtime import BackendError

    cfg = SegmenterConfig(backend="yolo-seg", model=yolo_model)  # 80 COCO names, model has 3
    with create_segmenter(cfg) as seg, pytest.raises(BackendError, match="check class_names"):
        seg.segment(np.zeros((64, 64, 3), np.uint8))


def test_registry_and_config():
    assert SEGMENTERS.names() == ["none", "opencv", "yolo-seg", "yolox"]
    assert SegmenterConfig().backend == "yolox"
    with pytest.raises(UnknownBackend, match="valid choices: none, opencv, yolo-seg, yolox"):
        create_segmenter(SegmenterConfig(backend="sam"))
    cfg = from_dict(SegmenterConfig, {"backend": "opencv", "mask_mode": "grabcut", "runtime": {"providers": ["cpu"]}})
    assert cfg.mask_mode == "grabcut"
    with pytest.raises(ConfigError, match="mask_mode"):
        from_dict(SegmenterConfig, {"mask_mode": "polygon"})
    with pytest.raises(ConfigError, match="conf_threshold"):
        from_dict(SegmenterConfig, {"conf_threshold": 1.5})


@pytest.mark.parametrize("mode", ["box", "ellipse", "colour", "grabcut"])
def test_box_masks_stay_inside_the_box(build, mode):
    img = build.photo(96, 128)
    m = ocv.box_mask((96, 128), np.array([40.0, 20.0, 80.0, 70.0]), mode, img)
    assert m.shape == (96, 128) and m.dtype == bool
    assert not m[:20].any() and not m[:, :40].any() and not m[70:].any() and not m[:, 80:].any()
    if mode not in ("grabcut", "colour"):
        assert m[45, 60]


def test_opencv_segmenter_runs_offline(build):
    with create_segmenter(SegmenterConfig(backend="opencv", hog_upscale=1.0)) as seg:
        assert len(seg.cascades) == 3
        inst = seg.segment(build.photo(120, 160))
    for i in inst:
        assert i.class_name == "person" and i.mask.shape == (120, 160)


def test_opencv_without_cv2_data_falls_back_to_hog(monkeypatch, caplog, build):
    monkeypatch.setattr(ocv, "cascade_dir", lambda: None)
    caplog.set_level(logging.WARNING)
    seg = create_segmenter(SegmenterConfig(backend="opencv", hog_upscale=1.0)).load()
    assert seg.cascades == [] and "HOG people detector only" in caplog.text
    seg.segment(build.photo(64, 64))


def test_recall_benchmark_writes_json(tmp_path, build):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    Image.fromarray(build.photo(96, 128)).save(tmp_path / "img" / "a.jpg")
    (tmp_path / "lab" / "a.txt").write_text("0 0.5 0.5 0.2 0.5\n2 0.1 0.1 0.1 0.1\n")
    out = tmp_path / "r.json"
    argv = ["--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"), "--out", str(out)]
    assert segmenter_recall.main([*argv, "--backend", "opencv", "--hog-upscale", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["gt_persons"] == 1 and 0.0 <= res["recall_iou50"] <= res["recall_any_overlap"] <= 1.0
    assert segmenter_recall.main(["--images", str(tmp_path / "nope"), "--labels", "x", "--out", str(out)]) == 2
