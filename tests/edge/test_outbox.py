"""The outbox: order, bounds and policies, crash safety (kill -9) and a full disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge.outbox import FrameTooLarge, Outbox, OutboxFull, Packed

REPO = Path(__file__).resolve().parents[2]


def frags(counter: int, n: int = 2, size: int = 10) -> list[bytes]:
    return [bytes([counter % 256, i]) + bytes(size - 2) for i in range(n)]


def packer(n: int = 2, size: int = 10, semantic: float = 0.0):
    return lambda counter: Packed(frags(counter, n, size), semantic)


def drain(box: Outbox) -> list[tuple[int, int, bytes]]:
    sent = []
    while (p := box.peek()) is not None:
        for idx, data in p.fragments:
            sent.append((p.counter, idx, data))
            box.ack(p.counter, idx)
    return sent


def test_fifo_order_counters_and_ack(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        got = [box.enqueue(packer(), capture_ms=1000 + i).counter for i in range(3)]
        assert got == [1, 2, 3]
        first = box.peek()
        assert first.counter == 1 and first.capture_ms == 1000 and [i for i, _ in first.fragments] == [0, 1]
        box.ack(1, 0)  # half sent: the frame stays at the head with the rest
        assert box.peek().fragments == [(1, frags(1)[1])]
        sent = drain(box)
        assert [(c, i) for c, i, _ in sent] == [(1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
        assert box.stats().frames == 0 and box.stats().next_counter == 4


def test_build_failure_stores_nothing_and_never_reuses_its_counter(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        def boom(counter: int) -> Packed:
            raise RuntimeError("sealed slice 0, then broke")

        with pytest.raises(RuntimeError):
            box.enqueue(boom, capture_ms=0)
        assert box.stats().frames == 0
        # the sealer may have used counter 1 in this process: it is not handed out again
        assert box.enqueue(packer(), capture_ms=0).counter == 2
        assert box.stats().frames == 1


def test_drop_oldest_bounds_frames_and_bytes(tmp_path, caplog):
    with Outbox(tmp_path / "o.db", max_frames=3, max_bytes=10_000, policy="drop-oldest") as box:
        for _ in range(5):
            box.enqueue(packer(), capture_ms=0)
        assert box.peek().counter == 3
        assert box.stats().frames == 3
        assert "dropped frame 1" in caplog.text and "dropped frame 2" in caplog.text
    with Outbox(tmp_path / "b.db", max_frames=100, max_bytes=45, policy="drop-oldest") as box:
        for _ in range(4):
            box.enqueue(packer(n=2, size=10), capture_ms=0)  # 20 bytes a frame: 2 fit in 45
        assert box.stats().frames == 2 and box.stats().nbytes == 40
        assert [c for c, _, _ in drain(box)][::2] == [3, 4]


def test_keep_semantic_drops_least_semantic_oldest_first(tmp_path):
    with Outbox(tmp_path / "o.db", max_frames=3, policy="keep-semantic") as box:
        for s in (0.9, 0.1, 0.5, 0.1):  # counters 1..4; the 4th overflows
            box.enqueue(packer(semantic=s), capture_ms=0)
        # frame 2 (0.1, older than frame 4) goes first
        assert sorted({c for c, _, _ in drain(box)}) == [1, 3, 4]
        for s in (0.8, 0.7, 0.6, 0.05):  # the newcomer is the least semantic: it is the one dropped
            box.enqueue(packer(semantic=s), capture_ms=0)
        assert sorted({c for c, _, _ in drain(box)}) == [5, 6, 7]
        assert box.stats().next_counter == 9  # the dropped frame's counter is never reused


def test_empty_frame_is_refused(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        with pytest.raises(ValueError, match="no fragments"):
            box.enqueue(lambda c: Packed([]), capture_ms=0)
        assert box.peek() is None


def test_frame_larger_than_outbox(tmp_path):
    with Outbox(tmp_path / "o.db", max_bytes=15) as box:
        with pytest.raises(FrameTooLarge):
            box.enqueue(packer(n=2, size=10), capture_ms=0)
        assert box.stats().frames == 0 and box.next_counter == 2  # skipped, never reused


def test_survives_reopen(tmp_path):
    with Outbox(tmp_path / "o.db") as box:
        box.enqueue(packer(), capture_ms=5)
        box.enqueue(packer(), capture_ms=6)
        box.ack(1, 0)
    with Outbox(tmp_path / "o.db") as box:
        assert box.peek().fragments == [(1, frags(1)[1])]
        assert box.enqueue(packer(), capture_ms=7).counter == 3
    mode = sqlite3.connect(tmp_path / "o.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_disk_full_is_typed_leaves_data_intact_and_recovers(tmp_path, caplog):
    with Outbox(tmp_path / "o.db", max_bytes=10**9, max_frames=10**6) as box:
        box.enqueue(packer(n=1, size=100), capture_ms=0)
        pages = box._db.execute("PRAGMA page_count").fetchone()[0]
        box._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # emulate a nearly full disk
        with pytest.raises(OutboxFull):
            for _ in range(50):
                box.enqueue(packer(n=4, size=1500), capture_ms=0)
        stored = box.stats()
        assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # the failed enqueue stored nothing; its counter is skipped, not reused
        assert stored.next_counter == 2 + stored.frames
        box._db.execute("PRAGMA max_page_count = 1073741823")  # space is back
        after = box.enqueue(packer(n=4, size=1500), capture_ms=0)
        assert after.counter == stored.next_counter
        sent = drain(box)
        assert sorted({c for c, _, _ in sent}) == [*range(1, stored.frames + 1), after.counter]


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from edge.outbox import Outbox, Packed
    path, n_new, n_send = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    box = Outbox(path)
    for _ in range(n_new):
        box.enqueue(lambda c: Packed([f"frame{c}-frag{i}-".encode() + os.urandom(8) for i in range(3)]), capture_ms=0)
    with open(path + ".sent", "ab") as log:
        for _ in range(n_send):  # send fragments, logging each before its ack, as a radio would
            p = box.peek()
            idx, data = p.fragments[0]
            log.write(b"%d %d %s\\n" % (p.counter, idx, data.hex().encode()))
            log.flush(); os.fsync(log.fileno())
            box.ack(p.counter, idx)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _run_and_kill(path: Path, n_new: int, n_send: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(n_new), str(n_send)],
                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


def _sent_log(path: Path) -> list[tuple[int, int, bytes]]:
    log = Path(str(path) + ".sent")
    rows = log.read_text().split() if log.exists() else []
    return [(int(rows[i]), int(rows[i + 1]), bytes.fromhex(rows[i + 2])) for i in range(0, len(rows), 3)]


def test_survives_kill_9_between_enqueue_and_send(tmp_path):
    path = tmp_path / "outbox.db"
    _run_and_kill(path, n_new=3, n_send=4)  # 3 frames queued, frame 1 sent, frame 2 half sent
    before = _sent_log(path)
    assert [(c, i) for c, i, _ in before] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    _run_and_kill(path, n_new=2, n_send=0)  # a second life queues two more, then dies too
    with Outbox(path) as box:
        replay = drain(box)
        assert box.enqueue(lambda c: Packed([b"x"]), capture_ms=0).counter == 6
    # what is replayed is exactly what was queued before the kills: same counters, same bytes
    assert [(c, i) for c, i, _ in replay] == [(2, 1), (2, 2)] + [(c, i) for c in (3, 4, 5) for i in range(3)]
    everything = before + replay
    by_key: dict[tuple[int, int], bytes] = {}
    for c, i, data in everything:
        assert by_key.setdefault((c, i), data) == data  # nothing sent twice with different bytes
        assert data.startswith(f"frame{c}-frag{i}-".encode())  # and each payload under its own counter
    assert len(by_key) == len(everything)  # nothing sent twice at all
    assert sorted({c for c, _ in by_key}) == [1, 2, 3, 4, 5]


def test_concurrent_enqueue_and_drain_keeps_order(tmp_path):
    import threading

    with Outbox(tmp_path / "o.db") as box:
        sent: list[int] = []
        done = threading.Event()

        def consume() -> None:
            while not done.is_set() or box.peek() is not None:
                p = box.peek()
                if p is None:
                    time.sleep(0.001)
                    continue
                for idx, _ in p.fragments:
                    box.ack(p.counter, idx)
                sent.append(p.counter)

        t = threading.Thread(target=consume)
        t.start()
        for _ in range(50):
            box.enqueue(packer(), capture_ms=0)
        done.set()
        t.join(10)
        assert sent == list(range(1, 51))
