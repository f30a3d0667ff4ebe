"""Counters never go back under one key, even when the outbox database is lost or replaced."""

from __future__ import annotations

import os

import pytest

from edge import counter_mark
from edge.counter_mark import CounterMark, CounterMarkError
from edge.outbox import Outbox, Packed, StorageError


def enqueue(outbox: Outbox, n: int) -> list[int]:
    return [outbox.enqueue(lambda c: Packed([c.to_bytes(4, "big")]), capture_ms=1).counter for _ in range(n)]


def test_outbox_database_lost_counters_continue_above_all_used(tmp_path):
    db, mark = tmp_path / "outbox.sqlite", tmp_path / "keep" / "counter"
    with Outbox(db, counter_file=mark) as outbox:
        used = enqueue(outbox, 70)
    assert used == list(range(1, 71))
    for f in tmp_path.glob("outbox.sqlite*"):
        f.unlink()  # the database is gone; the mark (elsewhere) is not
    with Outbox(db, counter_file=mark) as outbox:
        again = enqueue(outbox, 3)
    assert min(again) > max(used) and again == sorted(again)


def test_a_database_restored_from_an_older_copy_does_not_reuse_counters(tmp_path):
    db, mark = tmp_path / "outbox.sqlite", tmp_path / "counter"
    with Outbox(db, counter_file=mark) as outbox:
        enqueue(outbox, 2)
    old = {f.name: f.read_bytes() for f in tmp_path.glob("outbox.sqlite*")}
    with Outbox(db, counter_file=mark) as outbox:
        used = enqueue(outbox, 5)
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    with Outbox(db, counter_file=mark) as outbox:
        assert min(enqueue(outbox, 1)) > max(used)


def test_mark_is_written_ahead_in_blocks(tmp_path, monkeypatch):
    writes = []
    real = os.fsync
    monkeypatch.setattr(counter_mark.os, "fsync", lambda fd: (writes.append(fd), real(fd)))
    mark = CounterMark(tmp_path / "c", block=10)
    for c in range(1, 31):
        mark.reserve(c)
        assert mark.limit > c and int((tmp_path / "c").read_text()) == mark.limit
    assert len(writes) == 2 * 3  # file + folder, once per block of 10


@pytest.mark.parametrize("content", ["garbage", "-5", str(2**40)])
def test_an_unreadable_mark_refuses_to_start(tmp_path, content):
    (tmp_path / "c").write_text(content)
    with pytest.raises(CounterMarkError, match="counter mark"):
        CounterMark(tmp_path / "c")
    with pytest.raises(StorageError, match="counter mark"):
        Outbox(tmp_path / "o.sqlite", counter_file=tmp_path / "c")


def test_the_service_config_puts_a_mark_beside_the_outbox_by_default(tmp_path):
    from edge.config import OutboxConfig

    assert OutboxConfig(path=tmp_path / "o.sqlite").effective_counter_file() == tmp_path / "o.sqlite.counter"
    assert OutboxConfig(counter_file=tmp_path / "x").effective_counter_file() == tmp_path / "x"
