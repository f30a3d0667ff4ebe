"""The worker on in-process input: stored once, bad input quarantined by reason, partial frames, acks."""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import numpy as np
import pytest
from cloudkit import DEVICES, IMAGE, Edge, device_key, make_frame
from PIL import Image

from cloud.store import StoreFull, make_store
from cloud.worker import DUPLICATE, REJECTED, STAGED, Delivery, TransportSource, Worker
from link.frame import Frame
from link.packet import pack
from link.security import Sealer
from link.transports.loopback import LoopbackLink


@pytest.fixture
def worker(cfg, codec):
    store = make_store(cfg.store)
    w = Worker(cfg, store, {1: codec})
    yield w
    store.close()


class Acks:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def delivery(self, i: int, payload: bytes) -> Delivery:
        return Delivery(payload, lambda: self.acked.append(i))


def test_fragments_from_many_devices_stored_once_with_images(worker, edges):
    frags = [f for d in DEVICES for c in range(1, 6) for f in edges[d].fragments(c)]
    deliveries = frags + frags[::3]  # a third delivered twice
    random.Random(0).shuffle(deliveries)
    acks = Acks()
    outcomes = worker.ingest([acks.delivery(i, p) for i, p in enumerate(deliveries)])
    assert outcomes.count(STAGED) == len(frags) and outcomes.count(DUPLICATE) == len(frags[::3])
    assert sorted(acks.acked) == list(range(len(deliveries)))  # every delivery acked once durable
    stored = worker.drain()
    assert len(stored) == 20 and worker.store.count_frames() == 20
    assert all(r.complete and r.lost_ratio == 0 for r in stored)
    rec = worker.store.get_frame(2, 3)
    sent = make_frame(2, 3)
    assert rec.kept_ratio == pytest.approx(sent.kept.mean())
    assert rec.fragments_received == rec.fragments_total >= 2
    paths = worker.store.frame_paths(2, 3)
    assert Image.open(paths.image).size == (IMAGE, IMAGE) and Image.open(paths.mask).size == (IMAGE, IMAGE)
    # a redelivery after storing: acked, dropped, counted as duplicate, nothing re-stored
    again = acks.delivery(999, frags[0])
    assert worker.ingest([again]) == [DUPLICATE] and 999 in acks.acked
    assert worker.drain() == [] and worker.store.count_frames() == 20
    assert worker.metrics.value("tokencast_duplicates_total") == len(frags[::3]) + 1
    assert worker.metrics.value("tokencast_frames_stored_total", complete="true") == 20
    assert sum(d.duplicates for d in worker.store.list_devices()) == len(frags[::3]) + 1


def test_restore_keeps_the_sent_tokens(worker, codec, edges):
    for f in edges[1].fragments(1, keep=0.4):
        worker.submit(f)
    worker.drain()
    sent = make_frame(1, 1, keep=0.4)
    # decode the sent tokens where kept: the stored picture must agree with a restore that kept them
    img = np.asarray(Image.open(worker.store.frame_paths(1, 1).image))
    grid = codec.restore([np.where(sent.kept, sent.index_grid(), 0)], [sent.kept], seed=0)[0]
    assert (grid[sent.kept] == sent.indices).all()
    assert np.array_equal(img, codec.decode([grid], [(IMAGE, IMAGE)])[0])


def test_bad_input_is_quarantined_by_reason_and_the_worker_keeps_going(cfg, codec, edges, tmp_path):
    cfg.security.replay_window = 4
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {1: codec})
    good = edges[1].fragments(1)
    tampered = bytearray(good[0])
    tampered[-1] ^= 0x01
    stranger = Edge(99).fragments(1)[0]  # no key provisioned for device 99
    wrong_key = Edge(2, key=bytes(16)).fragments(1)[0]
    unsealed = pack(make_frame(3, 1), mtu=51, sealer=None)[0]
    other_tok = pack(Frame.from_index_grid(np.zeros((4, 4), int), np.ones((4, 4), bool), device_id=3, counter=2,
                                           capture_ms=1, width=64, height=64, tokenizer_id=2),
                     mtu=200, sealer=Sealer(device_key(3), 3))[0]
    unknown_tok = bytearray(good[1])
    unknown_tok[10] = 77
    bad = {"malformed": good[0][:9], "auth": bytes(tampered), "unknown_device": stranger}
    outcomes = worker.ingest([Delivery(p) for p in bad.values()] + [Delivery(wrong_key), Delivery(unsealed),
                             Delivery(other_tok), Delivery(bytes(unknown_tok))])
    assert outcomes == [REJECTED] * 7
    for f in good:
        assert worker.submit(f) == STAGED
    assert [r.key for r in worker.drain()] == [(1, 1)]
    # replay: counters 2..7 stored, then counter 1's fragments come again -> stored, so duplicate;
    # counter 2 of a never-stored frame that is older than the window -> replay
    for c in range(3, 8):
        for f in edges[1].fragments(c):
            worker.submit(f)
    worker.drain()
    assert worker.submit(good[0]) == DUPLICATE
    old = Edge(1)  # a fresh sealer: counter 2 was never sent, and is now older than the window
    assert worker.submit(old.fragments(2)[0]) == REJECTED
    counts = store.quarantine_counts()
    assert counts == {"malformed": 1, "auth": 3, "unknown_device": 1, "tokenizer": 2, "replay": 1}
    assert worker.metrics.value("tokencast_link_rejected_total", reason="auth") == 3
    assert store.count_frames() == 6
    store.close()


def test_partial_frame_is_restored_after_the_timeout_with_lost_slices(cfg, codec, edges):
    cfg.reassembly.timeout_s = 0.3
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {1: codec})
    frags = edges[4].fragments(1, mtu=36)
    assert len(frags) >= 3
    for f in frags[:1] + frags[2:]:
        worker.submit(f)
    assert worker.process() == []  # waiting for the missing fragment
    time.sleep(0.35)
    [rec] = worker.process()
    assert not rec.complete and 0 < rec.lost_ratio < 1
    assert rec.fragments_received == len(frags) - 1
    assert worker.submit(frags[1]) == DUPLICATE  # the late fragment of a stored frame
    store.close()


def test_worker_loop_on_a_loopback_link(cfg, codec, edges):
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {1: codec})
    link = LoopbackLink()
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop, TransportSource(link.cloud)))
    t.start()
    try:
        for c in range(1, 11):
            for d in DEVICES:
                for f in edges[d].fragments(c):
                    link.edge.send(f)
        deadline = time.monotonic() + 60
        while store.count_frames() < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(30)
    assert store.count_frames() == 40
    assert worker.stats.batches >= 40 // cfg.batch.max_batch
    assert worker.metrics.value("tokencast_batch_frames_count") == worker.stats.batches
    store.close()


def fill_to_the_brim(store) -> None:
    """Cap the database at its current size (PRAGMA max_page_count), then use up the free space
    of the tables the worker writes with rows of a dummy device 0 (removed by ``make_room``)."""
    store.set_max_page_count(store._read("PRAGMA page_count")[0][0])
    inserts = {
        "staged": "INSERT INTO staged VALUES (0, ?, 0, 0, randomblob(?))",
        "frames": "INSERT INTO frames VALUES (0, ?, 0, 0, 0, 1, 8, 8, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, NULL, '', "
                  "randomblob(?), '', 0, NULL, 0)",
    }
    i = 0
    for sql in inserts.values():
        for size in (2000, 200, 20, 1):
            try:
                while True:
                    i += 1
                    store._db.execute(sql, (i, size))
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)


def make_room(store) -> None:
    store._db.execute("DELETE FROM staged WHERE device_id = 0")
    store._db.execute("DELETE FROM frames WHERE device_id = 0")
    store.set_max_page_count(0)


def test_disk_full_holds_the_ack_and_recovers_without_corruption(cfg, codec, edges):
    store = make_store(cfg.store)
    worker = Worker(cfg, store, {1: codec})
    for c in (1, 2):
        for f in edges[1].fragments(c):
            worker.submit(f)
    assert len(worker.drain()) == 2
    fill_to_the_brim(store)  # the "disk" is now full: any growth fails
    acks = Acks()
    frags = [f for c in range(3, 9) for f in edges[2].fragments(c)]
    outcomes = worker.ingest([acks.delivery(i, f) for i, f in enumerate(frags)])
    assert set(outcomes) == {"held"} and acks.acked == []  # not acked: the broker keeps them
    assert worker.held == len(frags)
    assert worker.metrics.value("tokencast_store_errors_total", reason="disk_full") >= 1
    assert not worker.retry_held(force=True) and acks.acked == []  # still full
    make_room(store)  # space freed
    assert worker.retry_held(force=True)
    assert sorted(acks.acked) == list(range(len(frags)))
    # full again while storing results: the batch fails cleanly, its claims are released
    fill_to_the_brim(store)
    with pytest.raises(StoreFull):
        worker.process(force=True)
    assert store.count_frames(2) == 0 and store.pending_frames() == 6
    assert not list((cfg.store.image_dir / "2").glob("*.png"))  # no orphan images
    make_room(store)
    assert len(worker.drain()) == 6
    assert store.count_frames() == 8 and store.integrity_ok()
    store.close()
