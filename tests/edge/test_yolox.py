"""The default detector: YOLOX decoding on hand-made outputs, NMS, tiling, the model file's checks,
the shipped model on a real photograph, and object masks tighter than the box."""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np
import pytest

from edge.segmenter import SegmenterConfig, create_segmenter, refine, yolox
from edge.segmenter.yolox import DEFAULT_MODEL, ModelFileError, cut_by_tile, decode, letterbox, tile_windows

S = 416
N = sum((S // s) ** 2 for s in yolox.STRIDES)  # 3549 anchor points
NC = 80


def row(stride: int, cx: int, cy: int) -> int:
    """Index of anchor cell (cx, cy) of the ``stride`` grid in the head's output."""
    offset = 0
    for s in yolox.STRIDES:
        if s == stride:
            return offset + cy * (S // s) + cx
        offset += (S // s) ** 2
    raise ValueError(stride)


def raw_outputs() -> np.ndarray:
    """Four candidates with known fates on an all-zero head output."""
    out = np.zeros((1, N, 5 + NC), np.float32)

    def put(i, dx, dy, w_cells, h_cells, obj, cls, p):
        out[0, i, :5] = (dx, dy, math.log(w_cells), math.log(h_cells), obj)
        out[0, i, 5 + cls] = p

    # a person on the stride-8 grid: centre ((10 + .5) * 8, (5 + .5) * 8) = (84, 44), 32 x 64 px
    put(row(8, 10, 5), 0.5, 0.5, 4, 8, 0.9, 0, 1.0)
    # the same person seen again by the stride-16 grid, slightly larger, weaker: NMS removes it
    put(row(16, 5, 2), 0.25, 0.75, 2.25, 4.25, 0.8, 0, 0.9)
    # a car on the stride-32 grid: centre (96, 64), 64 x 64 px
    put(row(32, 3, 2), 0.0, 0.0, 2, 2, 0.8, 2, 0.75)
    # a dog below the threshold (0.5 x 0.4 = 0.2 < 0.25)
    put(row(8, 40, 40), 0.0, 0.0, 2, 2, 0.5, 16, 0.4)
    return out


def test_decode_hand_made_outputs_gives_known_boxes():
    boxes, scores, ids = decode(raw_outputs(), S, 0.25)
    order = np.argsort(-scores)
    boxes, scores, ids = boxes[order], scores[order], ids[order]
    assert ids.tolist() == [0, 0, 2]
    assert scores == pytest.approx([0.9, 0.72, 0.6])
    assert boxes[0] == pytest.approx([68, 12, 100, 76])
    assert boxes[1] == pytest.approx([84 - 18, 44 - 34, 84 + 18, 44 + 34])
    assert boxes[2] == pytest.approx([64, 32, 128, 96])
    only_cars = np.zeros(NC, bool)
    only_cars[2] = True
    assert decode(raw_outputs(), S, 0.25, only_cars)[2].tolist() == [2]
    with pytest.raises(yolox.BackendError, match="expected 3549"):
        decode(raw_outputs()[:, :100], S, 0.25)


def test_letterbox_top_left_and_bgr_input():
    img = np.zeros((100, 200, 3), np.uint8)
    img[..., 0] = 255  # pure red
    sq, r = letterbox(img, S)
    assert r == pytest.approx(S / 200) and sq.shape == (S, S, 3)
    assert (sq[:208, :, 0] == 255).all() and (sq[208:] == 114).all()
    x = yolox.to_input(sq)
    assert x.shape == (1, 3, S, S) and x.dtype == np.float32
    assert x[0, 2, 0, 0] == 255.0 and x[0, 0, 0, 0] == 0.0  # channel 2 is red: BGR order, 0..255


@pytest.fixture(scope="module")
def crafted(build, tmp_path_factory):
    path = tmp_path_factory.mktemp("yolox") / "crafted.onnx"
    return build.constant(path, "images", [1, 3, S, S], {"output": raw_outputs()})


def test_crafted_graph_through_onnxruntime_nms_and_frame_coordinates(crafted):
    cfg = SegmenterConfig(model=crafted, mask_mode="box", tiling="never")
    with create_segmenter(cfg) as seg:
        inst = seg.segment(np.zeros((208, 832, 3), np.uint8))  # ratio 0.5: frame = 2 x input pixels
    assert [(i.class_name, round(i.score, 2)) for i in inst] == [("person", 0.9), ("car", 0.6)]
    assert inst[0].box == pytest.approx((136, 24, 200, 152))
    assert inst[1].box == pytest.approx((128, 64, 256, 192))
    assert inst[0].mask[24:152, 136:200].all() and inst[0].mask.sum() == 64 * 128
    cfg = SegmenterConfig(model=crafted, mask_mode="box", tiling="never", classes=["car"], conf_threshold=0.5)
    with create_segmenter(cfg) as seg:
        assert [i.class_name for i in seg.segment(np.zeros((208, 832, 3), np.uint8))] == ["car"]
    with pytest.raises(ValueError, match="unknown class names \\['lorry'\\]"):
        create_segmenter(SegmenterConfig(classes=["lorry"]))


def test_missing_or_altered_model_file_is_a_clear_error(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    with pytest.raises(ModelFileError, match="not found"):
        create_segmenter(SegmenterConfig(model=tmp_path / "nope.onnx")).load()
    assert "not found" in caplog.text
    altered = tmp_path / "yolox.onnx"
    shutil.copyfile(DEFAULT_MODEL, altered)
    with altered.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    cfg = SegmenterConfig(model=altered, model_sha256=yolox.DEFAULT_SHA256)
    with pytest.raises(ModelFileError, match="sha256 .* expected e8af0749"):
        create_segmenter(cfg).load()
    assert "altered or truncated" in caplog.text


def test_the_shipped_file_is_pinned(monkeypatch, tmp_path):
    copy = tmp_path / "yolox_nano_coco.onnx"
    copy.write_bytes(DEFAULT_MODEL.read_bytes()[:-10])  # truncated
    monkeypatch.setattr(yolox, "DEFAULT_MODEL", copy)
    with pytest.raises(ModelFileError, match="altered or truncated"):
        create_segmenter(SegmenterConfig()).load()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut())  # 512 x 512, one person (public domain, NASA)


@pytest.fixture(scope="module")
def detector():
    with create_segmenter(SegmenterConfig()) as seg:
        yield seg


def test_shipped_detector_finds_the_person_in_a_photograph(detector, astronaut):
    found = detector.segment(astronaut)
    people = [i for i in found if i.class_name == "person"]
    assert people and people[0].score > 0.5
    x1, y1, x2, y2 = people[0].box
    assert x1 < 200 < x2 and y1 < 100 < y2  # the face (about (200..260, 70..150)) is inside the box
    box_area = (x2 - x1) * (y2 - y1)
    assert 0.3 * box_area < people[0].mask.sum() < 0.95 * box_area  # refined: tighter than the box


def test_tiles_cover_the_frame_and_overlap():
    wins = tile_windows(1080, 1920, 3, 3, 0.2)
    assert len(wins) == 9 and wins[0][:2] == (0, 0) and wins[-1][2:] == (1920, 1080)
    covered = np.zeros((1080, 1920), bool)
    for x0, y0, x1, y1 in wins:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert wins[1][0] < wins[0][2]  # neighbours overlap
    boxes = np.array([[10, 10, 50, 50], [600, 10, 700, 60], [700, 10, 760, 60]], float)  # tile 0 ends at x 738
    assert cut_by_tile(boxes, wins[0], 1080, 1920).tolist() == [False, False, True]


def test_tiling_finds_small_people_in_a_large_frame(detector, astronaut):
    import cv2

    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)  # a person 1/9 of the height
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    spots = [(100, 150), (900, 500), (1700, 850)]
    for x, y in spots:
        frame[y : y + 128, x : x + 128] = small
    assert detector.windows(1080, 1920) and not detector.windows(512, 768)
    tiled = [i for i in detector.segment(frame) if i.class_name == "person"]
    detector.config.tiling = "never"
    try:
        whole = [i for i in detector.segment(frame) if i.class_name == "person"]
    finally:
        detector.config.tiling = "auto"

    def hits(found):
        return sum(any(i.box[0] < x + 64 < i.box[2] and i.box[1] < y + 64 < i.box[3] for i in found) for x, y in spots)

    assert hits(tiled) >= 2 and hits(whole) == 0


@pytest.mark.parametrize("cls", [0, 2, None])
def test_colour_mask_follows_a_distinct_object(cls):
    img = np.full((120, 160, 3), (40, 160, 40), np.uint8)  # green field
    import cv2

    cv2.ellipse(img, (80, 60), (20, 40), 0, 0, 360, (200, 40, 40), -1)  # a red upright blob
    box = np.array([50.0, 15.0, 110.0, 105.0])  # loose box around it
    m = refine.box_mask((120, 160), box, "colour", img, cls)
    blob = np.all(img == (200, 40, 40), -1)
    inter, union = (m & blob).sum(), (m | blob).sum()
    assert inter / union > 0.8
    assert inter / union > (blob.sum() / (60 * 90)) + 0.2  # well above the box's own IoU


def test_config_class_weights_change_the_kept_tokens(graphs, astronaut):
    from edge.pipeline import EdgePipeline, PipelineConfig
    from edge.sampler import BudgetConfig
    from link.config import from_dict

    def kept(weights: dict[str, float]):
        cfg = from_dict(PipelineConfig, {"importance": {"class_weights": weights, "default_weight": 0.0}})
        cfg.encoder, cfg.budget, cfg.tokenizer_id = graphs["encoder"], BudgetConfig("bytes", 700), 1
        cfg.recoverability.scorer = graphs["scorer"]
        with EdgePipeline.from_config(cfg) as pipe:
            assert pipe.config.segmenter.backend == "yolox"
            return pipe.select(astronaut)

    people, nobody = kept({"person": 1.0}), kept({"person": 0.0})
    person = next(i for i in people.instances if i.class_name == "person")
    x1, y1, x2, y2 = (int(v) // 8 for v in person.box)
    inside = np.zeros_like(people.kept)
    inside[y1 : y2 + 1, x1 : x2 + 1] = True
    assert people.n_semantic > 0 and nobody.n_semantic == 0
    share = (people.kept & inside).sum() / people.kept.sum(), (nobody.kept & inside).sum() / nobody.kept.sum()
    assert share[0] > share[1] + 0.2  # the person's tokens win the budget only when people weigh


def test_edge_service_runs_with_the_default_detector(tmp_path, build, astronaut):
    import threading

    from PIL import Image

    from edge.assemble import build_service
    from edge.config import load_edge_config
    from edge.service import RunLimits
    from link.packet import open_fragment
    from link.security import KeyStore, Opener
    from link.transports.loopback import channel

    key = bytes(range(16))
    build.encoder(tmp_path / "encoder.onnx")
    (tmp_path / "cam").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "cam" / "000.png")
    (tmp_path / "5.key").write_text(key.hex())
    (tmp_path / "5.key").chmod(0o600)
    name = f"edge-yolox-{tmp_path.name}"
    (tmp_path / "edge.toml").write_text(f"""
[device]
id = 5
key_file = "5.key"
[capture]
source = "images"
[capture.images]
path = "cam"
[pipeline]
encoder = "{tmp_path / 'encoder.onnx'}"
tokenizer_id = 1
[pipeline.recoverability]
scorer = "{tmp_path / 'no-scorer.onnx'}"
[pipeline.budget]
unit = "bytes"
value = 400.0
[outbox]
path = "state/outbox.sqlite"
[transport]
type = "loopback"
[transport.loopback]
channel = "{name}"
""")
    cfg = load_edge_config(tmp_path / "edge.toml")
    assert cfg.pipeline.segmenter.backend == "yolox"
    with build_service(cfg, threading.Event()) as service:
        assert service.run(RunLimits(max_frames=1, drain_timeout_s=10)) == 0
    got = []
    while (data := channel(name).cloud.recv(timeout=0)) is not None:
        got.append(data)
    assert got and sum(len(d) for d in got) <= 400
    opener = Opener(KeyStore({5: key}))
    assert {open_fragment(d, opener).header.counter for d in got} == {1}


@pytest.mark.parametrize("bad", [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.float32),
                                 np.zeros((0, 32, 3), np.uint8), np.zeros((32, 32, 4), np.uint8)])
def test_bad_frames_are_a_typed_error_and_a_log_line(detector, bad, caplog):
    caplog.set_level(logging.ERROR)
    with pytest.raises(ValueError, match="expected an RGB uint8"):
        detector.segment(bad)
    assert "refused a frame" in caplog.text
