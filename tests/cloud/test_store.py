"""SQLite store: idempotent puts, quarantine, staging and leased claims, the dashboard's read API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud.config import StoreConfig
from cloud.store import FrameRecord, StagedFragment, StoreError, make_store
from cloud.store.images import encode_png, mask_overlay


def record(device: int, counter: int, t: float = 100.0, **kw) -> FrameRecord:
    base = dict(device_id=device, counter=counter, capture_ms=1, received_at=t, stored_at=t + 1, tokenizer_id=1,
                width=64, height=64, grid_h=8, grid_w=8, wire_bytes=90, bpp=90 * 8 / 4096, kept_ratio=0.5,
                lost_ratio=0.0, fragments_received=2, fragments_total=2, complete=True, restore_ms=3.0)
    base.update(kw)
    return FrameRecord(**base)


@pytest.fixture
def store(tmp_path: Path):
    s = make_store(StoreConfig(path=tmp_path / "db.sqlite", image_dir=tmp_path / "frames"))
    yield s
    s.close()


def png(value: int) -> bytes:
    return encode_png(np.full((64, 64, 3), value, dtype=np.uint8))


def test_put_frame_is_idempotent(store):
    assert store.put_frame(record(1, 5), png(10), png(20)) is True
    first = store.frame_paths(1, 5)
    assert first.image.read_bytes() == png(10)
    assert store.put_frame(record(1, 5, restore_ms=99.0), png(200), png(200)) is False  # no-op
    assert store.count_frames() == 1
    assert store.get_frame(1, 5).restore_ms == 3.0
    assert first.image.read_bytes() == png(10)  # images not overwritten by the losing put
    assert store.has_frame(1, 5) and not store.has_frame(1, 6)
    assert not list(first.image.parent.glob("*.tmp"))


def test_quarantine_keeps_reason_payload_and_counts(store):
    qid = store.quarantine("auth", 3, b"\x01\x02bad", "tag mismatch", counter=9, now=5.0)
    store.quarantine("malformed", None, b"zz", "too short")
    rows = store.list_quarantine()
    assert [r.reason for r in rows] == ["malformed", "auth"]
    assert store.quarantine_payload(qid) == b"\x01\x02bad"
    assert store.quarantine_counts() == {"auth": 1, "malformed": 1}
    assert [r.id for r in store.list_quarantine(reason="auth")] == [qid]


def staged(device, counter, start, length, n=64, t=10.0):
    return StagedFragment(device, counter, start, length, n, bytes([start]) * 4, t)


def test_staging_claims_complete_frames_once_and_leases_expire(store):
    assert store.stage([staged(1, 1, 0, 32), staged(1, 1, 0, 32), staged(2, 1, 0, 10)]) == [True, False, True]
    assert store.ready(now=11.0, timeout_s=30) == (0, None)  # nothing complete, nothing timed out
    assert store.stage([staged(1, 1, 32, 32, t=12.0)]) == [True]
    assert store.ready(now=12.5, timeout_s=30) == (1, 12.0)
    claims = store.claim(13.0, timeout_s=30, owner="a", lease_s=5, limit=10)
    assert [(c.key, c.complete, len(c.fragments)) for c in claims] == [((1, 1), True, 2)]
    assert store.claim(14.0, timeout_s=30, owner="b", lease_s=5, limit=10) == []  # leased to a
    # a's lease runs out (a died): b takes the frame over; the partial frame of device 2 has timed out too
    taken = store.claim(19.0, timeout_s=5, owner="b", lease_s=5, limit=10)
    assert sorted((c.key, c.complete) for c in taken) == [((1, 1), True), ((2, 1), False)]
    assert store.put_frame(record(1, 1), png(1), png(2)) is True
    assert store.pending_frames() == 1
    # a late fragment of a stored frame is not staged again
    assert store.stage([staged(1, 1, 0, 32, t=20.0)]) == [False]
    store.release([(2, 1)], "b")
    assert [c.key for c in store.claim(20.0, timeout_s=5, owner="c", lease_s=5, limit=10)] == [(2, 1)]


def test_read_api_lists_devices_with_link_stats(store):
    store.stage([staged(7, 1, 0, 64, t=50.0), staged(8, 1, 0, 64, t=60.0)])
    store.put_frame(record(7, 1, t=50.0, lost_ratio=0.25, fragments_received=3, fragments_total=4,
                           complete=False), png(1), png(2))
    store.put_frame(record(7, 2, t=70.0), png(1), png(2))
    store.count_duplicates({7: 3})
    store.quarantine("replay", 7, b"x", "old counter")
    devs = {d.device_id: d for d in store.list_devices()}
    assert set(devs) == {7, 8}
    d7 = devs[7]
    assert (d7.frames, d7.complete_frames, d7.duplicates, d7.rejects, d7.last_counter) == (2, 1, 3, 1, 2)
    assert d7.fragment_loss == pytest.approx(1 - 5 / 6)
    assert d7.mean_lost_ratio == pytest.approx(0.125)
    assert devs[8].frames == 0 and devs[8].last_seen == 60.0
    assert [f.counter for f in store.list_frames(7)] == [2, 1]  # newest first
    assert [f.counter for f in store.list_frames(7, limit=1, offset=1)] == [1]
    assert [f.key for f in store.list_frames(since=60.0)] == [(7, 2)]
    assert store.device_stats(99) is None
    store.set_psnr(7, 2, 31.5)
    assert store.get_frame(7, 2).psnr == 31.5


def test_unknown_backend_names_the_choices(tmp_path):
    with pytest.raises(StoreError, match="choose from sqlite"):
        make_store(StoreConfig(type="postgres", path=tmp_path / "x"))


def test_mask_overlay_tints_generated_cells():
    rgb = np.full((16, 16, 3), 100, dtype=np.uint8)
    kept = np.array([[True, False], [False, True]])
    lost = np.array([[False, False], [True, False]])
    out = mask_overlay(rgb, kept, lost)
    assert (out[:8, :8] == 100).all() and (out[8:, 8:] == 100).all()  # kept cells untouched
    assert out[0, 8, 2] > out[0, 8, 0]  # masked: blue
    assert out[8, 0, 0] > out[8, 0, 2]  # lost: red
