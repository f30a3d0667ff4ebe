"""Key and delta frames on the edge: what moved is sent, what did not is not, the budget holds,
key frames come on schedule, on scene change and on request, the event trigger gates frames.

The encoder is a fake with the real output contract (indices from 8x8 blocks, coarse levels
from 16x16 blocks), so a change in one corner of the picture changes tokens there only."""

from __future__ import annotations

import numpy as np
import pytest

from edge.codebook import CodebookError, code_distance, load_codebook
from edge.delta import delta_order
from edge.packer import LinkPacker
from edge.pipeline import EdgePipeline, PipelineConfig
from edge.recoverability import Recoverability, RecoverabilityConfig
from edge.reference import ReferenceKeeper, TemporalConfig
from edge.sampler import BudgetConfig
from edge.segmenter import Instance
from edge.temporal import TemporalSelector, TemporalUnsupported
from link.frame import FRAME_DELTA, FRAME_KEY
from link.header2 import parse_header2
from link.reassembly import unpack
from link.security import KeyStore, Opener, Sealer

KEY = bytes(range(16))


class FakeEncoder:
    input_names = ["image"]

    def run(self, feeds):
        x = next(iter(feeds.values()))[0]  # (3, H, W) in [0, 1]
        _, h, w = x.shape
        g = x.mean(0).reshape(h // 8, 8, w // 8, 8).mean((1, 3))
        idx = np.clip((g * 1023).round(), 0, 1023).astype(np.int64)
        c = x.mean(0).reshape(h // 16, 16, w // 16, 16).mean((1, 3))
        coarse = np.stack([np.clip((c * lv).astype(np.int64), 0, lv - 1) for lv in (7, 5, 5, 5)])
        return {"indices": idx[None], "coarse": coarse[None]}

    def close(self):
        pass


class FakeSegmenter:
    def __init__(self):
        self.instances: list[Instance] = []

    def segment(self, image):
        return list(self.instances)

    def close(self):
        pass


def make_pipeline(budget=BudgetConfig("bytes", 600)) -> tuple[EdgePipeline, FakeSegmenter]:
    cfg = PipelineConfig(tokenizer_id=3, budget=budget)
    seg = FakeSegmenter()
    rec = Recoverability(RecoverabilityConfig(scorer=None), 8).load()
    return EdgePipeline(cfg, FakeEncoder(), seg, rec), seg


def codebook() -> np.ndarray:
    # ids far apart in value are far apart in code space: a 1-d ramp on the unit circle
    t = np.linspace(0, np.pi, 1024)
    cb = np.zeros((1024, 8), np.float32)
    cb[:, 0], cb[:, 1] = np.cos(t), np.sin(t)
    return cb


def scene(seed=0, h=96, w=128) -> np.ndarray:
    rng = np.random.default_rng(seed)  # one grey level per 8x8 block: tokens spread over the codebook
    blocks = rng.integers(0, 256, (h // 8, w // 8, 1))
    return np.kron(blocks, np.ones((8, 8, 3))).astype(np.uint8)


def selector(config: TemporalConfig, budget=BudgetConfig("bytes", 600), clock=None):
    pipe, seg = make_pipeline(budget)
    kw = {"clock": clock} if clock else {}
    return TemporalSelector(pipe, config, codebook=codebook(), **kw), seg


def test_shipped_codebook_is_unit_and_shared_by_v1_and_v2_ids():
    cb = load_codebook()
    assert cb.shape == (1024, 8) and np.allclose(np.linalg.norm(cb, axis=1), 1.0, atol=1e-5)
    assert code_distance(cb, np.array([3]), np.array([3]))[0] == 0.0


def test_bad_codebook_is_a_typed_error_naming_the_file(tmp_path):
    bad = tmp_path / "cb.npy"
    np.save(bad, np.zeros((10, 8), np.float32))
    with pytest.raises(CodebookError, match="cb.npy.*shape"):
        load_codebook(bad)
    with pytest.raises(CodebookError, match="missing.npy"):
        load_codebook(tmp_path / "missing.npy")


def test_delta_order_puts_objects_first_then_moved_by_distance_and_drops_the_still_rest():
    moved = np.array([[True, False, True], [False, False, True]])
    dist = np.array([[0.5, 0.0, 0.9], [0.1, 0.0, 0.7]])
    sem = np.array([[0, 0, 0], [2.0, 0, 0]])
    assert delta_order(moved, dist, sem).tolist() == [3, 2, 5, 0]


def test_delta_order_skips_still_object_tokens_the_key_frame_sent():
    moved = np.array([[True, False, False]])
    dist = np.array([[0.5, 0.0, 0.0]])
    sem = np.array([[1.0, 1.0, 1.0]])
    sent = np.array([[True, True, False]])
    assert delta_order(moved, dist, sem, sent).tolist() == [0, 2]


def test_key_frames_get_the_key_budget_ratio_deltas_the_frame_budget():
    sel, _ = selector(TemporalConfig(enabled=True, threshold=0.05, scene_change=1.0, key_budget_ratio=3.0),
                      BudgetConfig("bytes", 150))
    img = scene()
    key = sel.select(img)
    assert key.frame_type == FRAME_KEY and 150 < key.size_bytes <= 450 and key.limit == 450
    sel.queued(key, 1)
    assert sel.keeper.reference.sent is not None and np.array_equal(sel.keeper.reference.sent, key.kept)
    d = sel.select(255 - img)
    assert d.frame_type == FRAME_DELTA and d.size_bytes <= 150 and d.limit == 150


def test_a_short_delta_goes_out_as_min_packets_copies_within_its_budget():
    sel, _ = selector(TemporalConfig(enabled=True, threshold=0.2, delta_min_packets=3), BudgetConfig("bytes", 600))
    img = scene()
    sel.queued(sel.select(img), 1)
    moved = img.copy()
    moved[:16, :32] = 255 - moved[:16, :32]
    d = sel.select(moved)
    frags = LinkPacker(7, 222, Sealer(KEY, 7))(d, 2, 1).fragments
    assert d.frame_type == FRAME_DELTA and d.min_packets == 3 and len(frags) == 3
    assert sum(map(len, frags)) == d.size_bytes <= 600 and len(set(frags)) < 3
    for one in set(frags):  # any one copy arriving makes the frame
        got = unpack([one], Opener(KeyStore({7: KEY})))
        assert got.ref_counter == 1 and np.array_equal(got.kept, d.kept)


def test_first_frame_is_key_then_deltas_send_only_what_moved():
    sel, _ = selector(TemporalConfig(enabled=True, threshold=0.2))
    img = scene()
    key = sel.select(img)
    assert key.frame_type == FRAME_KEY and key.reason == "no reference" and key.coarse is not None
    packer = LinkPacker(7, 222, Sealer(KEY, 7))
    frags = packer(key, 10, 1).fragments
    sel.queued(key, 10)
    same = sel.select(img)
    assert same.frame_type == FRAME_DELTA and same.ref_counter == 10 and not same.kept.any()
    moved = img.copy()
    moved[:16, :32] = 255 - moved[:16, :32]  # top-left 2x4 tokens change
    d = sel.select(moved)
    assert d.frame_type == FRAME_DELTA and d.coarse is None
    assert d.kept[:2, :4].sum() > 0 and not d.kept[2:].any() and not d.kept[:, 4:].any()
    frags_d = packer(d, 11, 2).fragments
    assert sum(map(len, frags_d)) == d.size_bytes < sum(map(len, frags))  # exact size, far below a key frame
    h = parse_header2(frags_d[0])
    assert h.frame_type == FRAME_DELTA and h.ref_counter == 10 and h.layer == 0
    got = unpack(frags_d, Opener(KeyStore({7: KEY})))
    assert got.complete and got.ref_counter == 10 and got.coarse is None
    assert np.array_equal(got.kept, d.kept) and np.array_equal(got.indices, d.indices)


def test_delta_stays_within_a_budget_smaller_than_what_moved():
    sel, _ = selector(TemporalConfig(enabled=True, threshold=0.05, scene_change=1.0), BudgetConfig("bytes", 90))
    img = scene()
    sel.queued(sel.select(img), 1)
    other = img.copy()
    other[:, :64] = 255 - other[:, :64]
    d = sel.select(other)
    assert d.frame_type == FRAME_DELTA and d.size_bytes <= 90 and d.kept.any()
    assert sum(map(len, LinkPacker(7, 222, Sealer(KEY, 7))(d, 2, 1).fragments)) == d.size_bytes


def test_scene_change_schedule_and_request_make_key_frames():
    sel, _ = selector(TemporalConfig(enabled=True, key_interval=3, threshold=0.2, scene_change=0.5))
    img = scene()
    sel.queued(sel.select(img), 1)
    assert sel.select(255 - img).reason == "scene change"
    s = sel.select(img)
    sel.queued(s, 2)
    assert s.frame_type == FRAME_DELTA
    s = sel.select(img)
    sel.queued(s, 3)
    assert s.frame_type == FRAME_DELTA
    s = sel.select(img)
    assert (s.frame_type, s.reason) == (FRAME_KEY, "schedule")
    sel.queued(s, 4)
    assert sel.select(img).frame_type == FRAME_DELTA
    sel.keeper.request_key()
    s = sel.select(img)
    assert (s.frame_type, s.reason) == (FRAME_KEY, "requested")
    sel.queued(s, 6)
    d = sel.select(img)
    assert d.frame_type == FRAME_DELTA and d.ref_counter == 6


def test_still_semantic_tokens_ride_on_deltas_unless_the_key_frame_sent_them():
    sel, seg = selector(TemporalConfig(enabled=True, threshold=0.2))
    img = scene()
    key = sel.select(img)
    sent_map = np.zeros_like(key.kept)
    sent_map[5, 8:10] = True  # say the key frame sent the upper two of the object's four cells
    sel.keeper.key_sent(1, key.tokens, key.coarse, scale=1, width=key.width, height=key.height, sent=sent_map)
    sent = sent_map[5:7, 8:10]
    mask = np.zeros(img.shape[:2], bool)
    mask[40:56, 64:80] = True
    seg.instances = [Instance("person", 0, 0.9, (64, 40, 80, 56), mask)]
    d = sel.select(img)
    assert d.frame_type == FRAME_DELTA and np.array_equal(d.kept[5:7, 8:10], ~sent)
    assert d.n_semantic == int((~sent).sum()) and d.kept.sum() == d.n_semantic


def test_event_trigger_sends_nothing_without_the_class_then_a_heartbeat():
    now = [100.0]
    cfg = TemporalConfig(enabled=True, threshold=0.2, event_classes=["person"], heartbeat_s=60)
    sel, seg = selector(cfg, clock=lambda: now[0])
    img = scene()
    sel.queued(sel.select(img), 1)  # the first frame is a key frame whatever it shows
    now[0] += 10
    assert sel.select(img) is None
    now[0] += 60
    hb = sel.select(img)
    assert hb.reason == "heartbeat" and hb.frame_type == FRAME_DELTA and not hb.kept.any()
    sel.queued(hb, 2)
    now[0] += 1
    mask = np.zeros(img.shape[:2], bool)
    mask[:16, :16] = True
    seg.instances = [Instance("person", 0, 0.9, (0, 0, 16, 16), mask)]
    ev = sel.select(img)
    # the event goes out; the person's still tokens the key frame already sent are not repeated
    assert ev.reason == "event person" and np.array_equal(ev.kept[:2, :2], ~sel.keeper.reference.sent[:2, :2])


def test_with_a_downlink_only_an_acknowledged_key_frame_becomes_the_reference():
    sel, _ = selector(TemporalConfig(enabled=True, use_ack=True, threshold=0.2))
    img = scene()
    sel.queued(sel.select(img), 1)
    s = sel.select(img)
    assert (s.frame_type, s.reason) == (FRAME_KEY, "unacknowledged")
    sel.queued(s, 2)
    assert not sel.keeper.acknowledge(9)  # never sent as a key frame: ignored
    assert sel.keeper.acknowledge(2)
    d = sel.select(img)
    assert d.frame_type == FRAME_DELTA and d.ref_counter == 2
    assert not sel.keeper.acknowledge(1)  # older than the reference: never moves it back


def test_keeper_and_config_reject_nonsense():
    with pytest.raises(ValueError, match="threshold"):
        TemporalConfig(threshold=0)
    with pytest.raises(ValueError, match="key_interval"):
        TemporalConfig(key_interval=0)
    assert ReferenceKeeper(TemporalConfig()).key_reason() == "no reference"


def test_one_layer_tokenizer_is_refused():
    cfg = PipelineConfig(tokenizer_id=1)
    pipe = EdgePipeline(cfg, FakeEncoder(), FakeSegmenter(), Recoverability(RecoverabilityConfig(scorer=None), 8).load())
    with pytest.raises(TemporalUnsupported, match="two-layer"):
        TemporalSelector(pipe, TemporalConfig(enabled=True), codebook=codebook())
