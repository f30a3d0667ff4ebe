"""The quarantine's bounds: each entry capped, the whole kept within its quota, oldest out first."""

from __future__ import annotations

import pytest

from cloud.config import CloudConfig, QuarantineConfig
from cloud.store.base import QuarantinePolicy
from cloud.store.sqlite import SqliteStore
from link.config import ConfigError, from_dict


def test_clip_keeps_the_start_and_says_so():
    p = QuarantinePolicy(max_entry_bytes=4, max_total_bytes=10, max_entries=3)
    assert p.clip(b"abcdef") == (b"abcd", True) and p.clip(b"abc") == (b"abc", False)


@pytest.mark.parametrize("entries, total, sizes, expected", [
    (3, 9, [3, 3, 3], 0),      # within both bounds
    (4, 12, [3, 3, 3, 3], 1),  # one entry too many (and 2 bytes over)
    (2, 25, [20, 5], 1),       # bytes over: the big old one goes
    (2, 25, [5, 20], 2),       # dropping the small old one is not enough
])
def test_evictions_oldest_first_until_both_bounds_hold(entries, total, sizes, expected):
    p = QuarantinePolicy(max_entry_bytes=10, max_total_bytes=10, max_entries=3)
    assert p.evictions(entries, total, iter(sizes)) == expected


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        QuarantinePolicy(max_entry_bytes=100, max_total_bytes=10)
    with pytest.raises(ConfigError, match="quarantine"):
        from_dict(CloudConfig, {"store": {"quarantine": {"max_entries": 0}}}, "cloud.toml")


def test_sqlite_store_stays_within_the_policy_and_counts(tmp_path):
    policy = QuarantinePolicy(max_entry_bytes=100, max_total_bytes=1000, max_entries=50)
    with SqliteStore(tmp_path / "db.sqlite", tmp_path / "frames", quarantine=policy) as store:
        ids = [store.quarantine("malformed", None, bytes([i % 256]) * 5000, f"junk {i}", now=float(i))
               for i in range(40)]
        u = store.quarantine_usage()
        assert (u.entries, u.bytes, u.truncated, u.evicted) == (10, 1000, 40, 30)
        rows = store.list_quarantine(limit=100)
        assert sorted(r.id for r in rows) == ids[-10:]  # the newest kept
        assert all(r.size == 100 and r.original_size == 5000 for r in rows)
        assert store.quarantine_payload(ids[-1]) == bytes([39]) * 100
        small = store.quarantine("auth", 3, b"tiny", "small one")
        assert store.list_quarantine(limit=1)[0].original_size == 4
        assert store.quarantine_usage().evicted == 31 and small == ids[-1] + 1
    # the tally survives a reopen, and is what the table holds
    with SqliteStore(tmp_path / "db.sqlite", tmp_path / "frames", quarantine=policy) as store:
        u = store.quarantine_usage()
        assert u.entries == len(store.list_quarantine(limit=100)) == 10 and u.evicted == 31


def test_shipped_defaults(tmp_path):
    cfg = QuarantineConfig()
    assert QuarantinePolicy.from_config(cfg) == QuarantinePolicy()
    assert cfg.max_entry_bytes == 4096 and cfg.max_total_bytes == 16 * 2**20 and cfg.max_entries == 10_000


def test_worker_reports_the_quarantine_in_its_metrics(tmp_path):
    from benchmarks.load_test import NullCodec
    from cloud.store import make_store
    from cloud.worker import REJECTED, Worker
    from link.security import KeyStore

    cfg = CloudConfig(source="none", worker_id="q")
    cfg.store.path, cfg.store.image_dir = tmp_path / "store.db", tmp_path / "frames"
    cfg.store.quarantine = QuarantineConfig(max_entry_bytes=64, max_total_bytes=256, max_entries=100)
    cfg.metrics.enabled = cfg.dashboard.enabled = False
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {1: NullCodec()}, keys=KeyStore({1: bytes(16)}))
    try:
        for i in range(10):
            assert worker.submit(bytes([0x01, i]) * 5000) == REJECTED
        m = worker.metrics
        assert m.value("tokencast_quarantine_entries") == 4 and m.value("tokencast_quarantine_bytes") == 256
        assert m.value("tokencast_quarantine_truncated") == 10 and m.value("tokencast_quarantine_evicted") == 6
    finally:
        store.close()
