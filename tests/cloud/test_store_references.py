"""References of delta frames in the store, on both backends: round trip, idempotent, bounded per
device, survive reopening; frame rows carry frame type, reference and the degraded flag, also on
a SQLite file made before those columns existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from cloud.config import StoreConfig
from cloud.store import FrameRecord, ReferenceRecord, StoreError, make_store
from cloud.store.base import REFERENCES_KEPT
from cloud.store.images import encode_png


@pytest.fixture(params=["sqlite", "postgresql"])
def store_cfg(request, tmp_path: Path) -> StoreConfig:
    if request.param == "postgresql":
        return StoreConfig(url=request.getfixturevalue("pg_url"), image_dir=tmp_path / "frames")
    return StoreConfig(path=tmp_path / "db.sqlite", image_dir=tmp_path / "frames")


def reference(device: int, counter: int, seed: int = 0) -> ReferenceRecord:
    rng = np.random.default_rng(seed)
    coarse = np.stack([rng.integers(0, lv, (3, 4)) for lv in (7, 5, 5, 5)])
    known = rng.random((3, 4)) > 0.3
    return ReferenceRecord(device, counter, 3, 5, 8, 60, 40, rng.integers(0, 1024, (5, 8)), coarse, known,
                           sent=rng.random((5, 8)) > 0.5)


def record(device: int, counter: int, **kw) -> FrameRecord:
    base = dict(device_id=device, counter=counter, capture_ms=1, received_at=1.0, stored_at=2.0, tokenizer_id=3,
                width=64, height=64, grid_h=8, grid_w=8, wire_bytes=90, bpp=0.1, kept_ratio=0.5, lost_ratio=0.0,
                fragments_received=2, fragments_total=2, complete=True, restore_ms=3.0)
    base.update(kw)
    return FrameRecord(**base)


def png() -> bytes:
    return encode_png(np.zeros((8, 8, 3), np.uint8))


def test_reference_round_trips_is_idempotent_and_survives_reopening(store_cfg):
    ref = reference(4, 10)
    with make_store(store_cfg) as s:
        assert s.get_reference(4, 10) is None
        assert s.put_reference(ref) is True
        assert s.put_reference(reference(4, 10, seed=9)) is False  # a replayed key never replaces it
    with make_store(store_cfg) as s:  # a worker restart
        got = s.get_reference(4, 10)
    assert got is not None and (got.grid_h, got.grid_w, got.width, got.height, got.tokenizer_id) == (5, 8, 60, 40, 3)
    assert np.array_equal(got.tokens, ref.tokens) and np.array_equal(got.coarse, ref.coarse)
    assert np.array_equal(got.coarse_known, ref.coarse_known) and got.coarse_known.dtype == bool
    assert np.array_equal(got.sent, ref.sent) and got.sent.dtype == bool


def test_block_means_round_trip_with_the_lost_ones_marked(store_cfg):
    dc = np.full((3, 2, 2), 40, np.int64)
    dc[0] = 32
    dc[:, 1, 0] = -1
    ref = ReferenceRecord(**{**vars(reference(4, 10)), "dc": dc})
    with make_store(store_cfg) as s:
        s.put_reference(ref)
        assert np.array_equal(s.get_reference(4, 10).dc, dc)
        s.put_reference(reference(4, 11))
        assert s.get_reference(4, 11).dc is None


def test_a_reference_without_its_sent_map_still_round_trips(store_cfg):
    ref = reference(4, 10)
    ref = ReferenceRecord(**{**vars(ref), "sent": None})
    with make_store(store_cfg) as s:
        s.put_reference(ref)
        assert s.get_reference(4, 10).sent is None


def test_only_the_newest_references_of_a_device_are_kept(store_cfg):
    with make_store(store_cfg) as s:
        for c in range(1, REFERENCES_KEPT + 3):
            s.put_reference(reference(1, c))
        s.put_reference(reference(2, 1))
        assert s.get_reference(1, 1) is None and s.get_reference(1, 2) is None
        assert s.get_reference(1, 3) is not None and s.get_reference(1, REFERENCES_KEPT + 2) is not None
        assert s.get_reference(2, 1) is not None


def test_frame_rows_carry_type_reference_and_degraded(store_cfg):
    with make_store(store_cfg) as s:
        s.put_frame(record(1, 5), png(), png())
        s.put_frame(record(1, 6, frame_type=1, ref_counter=5, degraded=True), png(), png())
        key, delta = s.get_frame(1, 5), s.get_frame(1, 6)
        assert (key.frame_type, key.ref_counter, key.degraded) == (0, None, False)
        assert (delta.frame_type, delta.ref_counter, delta.degraded) == (1, 5, True)
        assert {f.counter: f.degraded for f in s.list_frames(1)} == {5: False, 6: True}


def test_corrupt_reference_bytes_are_a_store_error():
    with pytest.raises(StoreError, match="do not fit"):
        ReferenceRecord.from_blobs(1, 2, 3, 5, 8, 60, 40, b"\x00" * 10, b"", b"")


def test_a_sqlite_file_from_before_delta_frames_gains_the_columns(tmp_path):
    cfg = StoreConfig(path=tmp_path / "db.sqlite", image_dir=tmp_path / "frames")
    with make_store(cfg) as s:
        s.put_frame(record(1, 5), png(), png())
    db = sqlite3.connect(cfg.path)
    for col in ("frame_type", "ref_counter", "degraded"):
        db.execute(f"ALTER TABLE frames DROP COLUMN {col}")
    db.commit()
    db.close()
    with make_store(cfg) as s:
        assert s.get_frame(1, 5).frame_type == 0
        s.put_frame(record(1, 6, frame_type=1, ref_counter=5), png(), png())
        assert s.get_frame(1, 6).ref_counter == 5
