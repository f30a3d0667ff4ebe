"""The store suite, run on every backend: SQLite (embedded) and PostgreSQL (a real server from
the ``postgres_server`` fixture; skipped with the reason only when its binaries are absent).

Idempotent puts, quarantine, staging and leased claims, the dashboard's read API, the workers'
session registry, and what only shows with two store objects on one database: racing puts
and claims, concurrent opens."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cloud.config import StoreConfig
from cloud.store import FrameRecord, SessionRecord, StagedFragment, StoreError, StoreUnavailable, make_store
from cloud.store.images import encode_png, mask_overlay


def record(device: int, counter: int, t: float = 100.0, **kw) -> FrameRecord:
    base = dict(device_id=device, counter=counter, capture_ms=1, received_at=t, stored_at=t + 1, tokenizer_id=1,
                width=64, height=64, grid_h=8, grid_w=8, wire_bytes=90, bpp=90 * 8 / 4096, kept_ratio=0.5,
                lost_ratio=0.0, fragments_received=2, fragments_total=2, complete=True, restore_ms=3.0)
    base.update(kw)
    return FrameRecord(**base)


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_cfg(request, tmp_path: Path) -> StoreConfig:
    """One backend's config: a fresh SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "postgresql":
        return StoreConfig(url=request.getfixturevalue("pg_url"), image_dir=tmp_path / "frames")
    return StoreConfig(path=tmp_path / "db.sqlite", image_dir=tmp_path / "frames")


@pytest.fixture
def store(store_cfg: StoreConfig):
    s = make_store(store_cfg)
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
    with pytest.raises(StoreError, match="choose from sqlite, postgresql"):
        make_store(StoreConfig(type="mongo", path=tmp_path / "x"))
    with pytest.raises(ValueError, match="scheme 'mysql' unknown; choose from postgres, postgresql, sqlite"):
        StoreConfig(url="mysql://u:secret@h/db")


def test_mask_overlay_tints_generated_cells():
    rgb = np.full((16, 16, 3), 100, dtype=np.uint8)
    kept = np.array([[True, False], [False, True]])
    lost = np.array([[False, False], [True, False]])
    out = mask_overlay(rgb, kept, lost)
    assert (out[:8, :8] == 100).all() and (out[8:, 8:] == 100).all()  # kept cells untouched
    assert out[0, 8, 2] > out[0, 8, 0]  # masked: blue
    assert out[8, 0, 0] > out[8, 0, 2]  # lost: red


def test_racing_puts_store_once_and_the_loser_leaves_no_files(store, store_cfg):
    other = make_store(store_cfg)  # a second worker's store object on the same database
    try:
        results = []
        threads = [threading.Thread(target=lambda s=s, v=v: results.append(s.put_frame(record(3, 1), png(v), png(v))))
                   for s, v in ((store, 1), (other, 2)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False] * 5 + [True]
        assert store.count_frames() == 1
        paths = store.frame_paths(3, 1)
        assert paths.image.read_bytes() in (png(1), png(2))
        assert sorted(p.name for p in store_cfg.image_dir.rglob("*.png")) == sorted([paths.image.name, paths.mask.name])
    finally:
        other.close()


def test_concurrent_claims_hand_each_frame_to_one_worker(store, store_cfg):
    store.stage([staged(d, c, 0, 64) for d in range(1, 6) for c in range(1, 9)])
    stores = [store] + [make_store(store_cfg) for _ in range(2)]
    got: dict[str, list[tuple[int, int]]] = {}
    try:
        def take(i: int, s) -> None:
            keys = []
            while batch := s.claim(20.0, timeout_s=30, owner=f"w{i}", lease_s=60, limit=3):
                keys += [c.key for c in batch]
            got[f"w{i}"] = keys

        threads = [threading.Thread(target=take, args=(i, s)) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores[1:]:
            s.close()
    everything = [k for keys in got.values() for k in keys]
    assert len(everything) == len(set(everything)) == 40


def test_session_registry_heartbeats_and_adopts_a_dead_session_once(store):
    store.put_session(SessionRecord("cloud-a", "host-1", "host", 1, heartbeat=100.0))
    store.put_session(SessionRecord("cloud-b", "host-2", "host", 2, heartbeat=100.0))
    assert store.heartbeat_session("cloud-a", "host-1", 130.0)
    assert not store.heartbeat_session("cloud-a", "someone-else", 130.0)
    assert store.adopt_stale_session("host-3", "host", 3, now=110.0, stale_s=15) is None  # nobody stale yet
    dead = store.adopt_stale_session("host-3", "host", 3, now=131.0, stale_s=15)
    assert dead == SessionRecord("cloud-b", "host-2", "host", 2, 100.0, False)
    assert store.adopt_stale_session("host-4", "host", 4, now=131.0, stale_s=15) is None  # taken by host-3
    assert store.get_session("cloud-b") == SessionRecord("cloud-b", "host-3", "host", 3, 131.0, True)
    assert not store.heartbeat_session("cloud-b", "host-2", 132.0)  # the dead one no longer holds it
    store.forget_session("cloud-b", "host-2")  # not the holder: no effect
    assert store.get_session("cloud-b") is not None
    store.forget_session("cloud-b", "host-3")
    assert store.get_session("cloud-b") is None and store.get_session("cloud-a").heartbeat == 130.0


def test_postgres_migrates_once_under_concurrent_starts(pg_url, tmp_path):
    import psycopg

    from cloud.store.pg_migrations import MIGRATIONS

    opened, errors = [], []

    def start() -> None:
        try:
            opened.append(make_store(StoreConfig(url=pg_url, image_dir=tmp_path / "frames", pool_size=1)))
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(opened) == 8
        assert {s.schema_version for s in opened} == {MIGRATIONS[-1][0]}
        with psycopg.connect(pg_url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [v for v, _, _ in MIGRATIONS]
    finally:
        for s in opened:
            s.close()


def test_postgres_unreachable_is_a_typed_error_naming_the_server_without_its_password(tmp_path):
    pytest.importorskip("psycopg", reason="psycopg 3 not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = StoreConfig(url=f"postgresql://u:hunter2@127.0.0.1:{port}/db", image_dir=tmp_path / "f", busy_timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        make_store(cfg)
    assert time.monotonic() - t0 < 15
    assert f"127.0.0.1:{port}" in str(err.value) and "hunter2" not in str(err.value)


def test_cloud_toml_takes_the_store_as_one_url(tmp_path):
    from cloud.config import load

    toml = tmp_path / "cloud.toml"
    toml.write_text('store = "postgresql://cloud@db.internal:5432/tokencast"\n')
    cfg = load(toml)
    assert (cfg.store.type, cfg.store.url) == ("postgresql", "postgresql://cloud@db.internal:5432/tokencast")
    toml.write_text('[store]\nurl = "postgresql://cloud:pw@db/tokencast"\npool_size = 8\nimage_dir = "/srv/frames"\n')
    cfg = load(toml)
    assert cfg.store.pool_size == 8 and cfg.store.describe() == "postgresql://cloud:***@db/tokencast"
    toml.write_text('store = "sqlite:///var/lib/tokencast/t.db"\n')
    assert load(toml).store.path == Path("/var/lib/tokencast/t.db")


def test_a_coarse_and_a_fine_slice_with_the_same_start_are_both_staged(store):
    coarse = StagedFragment(5, 1, 0, 16, 80, b"coarse", 10.0, layer=1)
    fine = StagedFragment(5, 1, 0, 64, 80, b"fine", 10.0, layer=0)
    assert store.stage([fine, coarse, fine]) == [True, True, False]  # the key is (device, counter, layer, slice)
    [claim] = store.claim(11.0, timeout_s=30, owner="a", lease_s=5, limit=10)
    assert claim.complete and claim.fragments == [b"coarse", b"fine"]  # coarse layer first


def test_sqlite_file_from_the_previous_schema_is_upgraded_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE staged (device_id INTEGER NOT NULL, counter INTEGER NOT NULL, "
                     "slice_start INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (device_id, counter, slice_start));"
                     "INSERT INTO staged VALUES (1, 7, 0, x'0102');")
    db.commit()
    db.close()
    s = make_store(StoreConfig(path=path, image_dir=tmp_path / "frames"))
    try:
        assert s._read("SELECT device_id, counter, layer, slice_start, payload FROM staged")[0][:] == (1, 7, 0, 0, b"\x01\x02")
        assert s.stage([StagedFragment(1, 7, 0, 4, 8, b"c", 1.0, layer=1)]) == [True]
    finally:
        s.close()


def test_quarantine_stays_within_the_policy_on_every_backend(store_cfg):
    """The bounds of issue 12 (``QuarantinePolicy``), held by each backend in its own transaction."""
    from cloud.config import QuarantineConfig

    store_cfg.quarantine = QuarantineConfig(max_entry_bytes=100, max_total_bytes=1000, max_entries=50)
    s = make_store(store_cfg)
    try:
        ids = [s.quarantine("malformed", None, bytes([i % 256]) * 5000, f"junk {i}", now=float(i)) for i in range(40)]
        u = s.quarantine_usage()
        assert (u.entries, u.bytes, u.truncated, u.evicted) == (10, 1000, 40, 30)
        rows = s.list_quarantine(limit=100)
        assert sorted(r.id for r in rows) == ids[-10:]  # the newest kept
        assert all(r.size == 100 and r.original_size == 5000 for r in rows)
        assert s.quarantine_payload(ids[-1]) == bytes([39]) * 100
        s.quarantine("auth", 3, b"tiny", "small one")
        assert s.list_quarantine(limit=1)[0].original_size == 4 and s.quarantine_usage().evicted == 31
    finally:
        s.close()
    again = make_store(store_cfg)  # the tally survives a reopen and matches the table
    try:
        u = again.quarantine_usage()
        assert u.entries == len(again.list_quarantine(limit=100)) == 10 and u.evicted == 31
    finally:
        again.close()


def test_sqlite_open_retries_a_locked_wal_switch_instead_of_failing(tmp_path, monkeypatch):
    """Two workers creating one file at once: SQLite answers the second WAL switch "database is
    locked" at once, without waiting out the busy timeout (the flaky two-worker start). Here the
    first two attempts get that answer; the store must retry, not give up."""
    import sqlite3

    import cloud.store.sqlite as sqlite_store

    real_connect = sqlite3.connect
    refusals = [2]

    class Flaky:
        def __init__(self, conn):
            self._conn = conn

        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL" and refusals[0]:
                refusals[0] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._conn, name)

    monkeypatch.setattr(sqlite_store.sqlite3, "connect", lambda *a, **kw: Flaky(real_connect(*a, **kw)))
    s = make_store(StoreConfig(path=tmp_path / "db.sqlite", image_dir=tmp_path / "frames", busy_timeout_s=5))
    try:
        assert refusals == [0] and s._read("PRAGMA journal_mode")[0][0] == "wal"
        assert s.stage([staged(1, 1, 0, 64)]) == [True]
    finally:
        s.close()
    monkeypatch.setattr(sqlite_store.sqlite3, "connect", real_connect)
    refusals[0] = 10**6  # locked for good: a typed error once the busy timeout is spent
    monkeypatch.setattr(sqlite_store.sqlite3, "connect", lambda *a, **kw: Flaky(real_connect(*a, **kw)))
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="database is locked"):
        make_store(StoreConfig(path=tmp_path / "new.sqlite", image_dir=tmp_path / "frames", busy_timeout_s=1))
    assert 0.5 < time.monotonic() - t0 < 5
