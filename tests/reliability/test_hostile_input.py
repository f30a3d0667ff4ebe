"""Hostile fragments at the worker: rejected, counted, logged with the reason; others keep flowing.

Already shown elsewhere (not repeated here): a tampered last byte, an unknown device, a wrong
key, an unsealed fragment, unknown tokenizers and an out-of-window counter, each quarantined by
reason (``tests/cloud/test_worker.py::test_bad_input_is_quarantined_by_reason_and_the_worker_keeps_going``);
tampering and wrong keys at the packet layer (``tests/link/test_packet.py::test_tampering_and_wrong_key``,
``::test_fuzz_mutated_sealed``); the replay window (``tests/link/test_security.py::test_replay_window``).

Added here: a flip of *any* bit at *any* byte position of a sealed fragment (hypothesis) is
rejected at the worker with a typed reason, logged, and never reaches the store, while the same
frame's genuine fragments and other devices' frames are stored; a device sealing with its own key
under another device's id; replays of stored and never-stored counters interleaved with an
honest stream; a fragment whose MQTT topic names another device; an image-size claim larger than
the grid (the worker's decode-size limit).
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.load_test import NullCodec, device_key, make_frame
from cloud.config import CloudConfig
from cloud.store import make_store
from cloud.worker import DUPLICATE, REJECTED, STAGED, Delivery, Worker
from link.frame import Frame
from link.packet import pack
from link.security import KeyStore, Sealer

DEVICES = (1, 2, 3)
REASONS = {"auth", "malformed", "version", "tokenizer", "unknown_device", "limit", "replay", "prior"}


def new_worker(root: Path, replay_window: int = 256) -> Worker:
    cfg = CloudConfig(source="none", worker_id="hostile")
    cfg.store.path, cfg.store.image_dir = root / "store.db", root / "frames"
    cfg.security.replay_window = replay_window
    cfg.metrics.enabled = cfg.dashboard.enabled = False
    return Worker(cfg, make_store(cfg.store), {1: NullCodec()},
                  keys=KeyStore({d: device_key(d) for d in DEVICES}))


class Fleet:
    """Honest devices with their own sealers and counters."""

    def __init__(self) -> None:
        self.sealers = {d: Sealer(device_key(d), d) for d in DEVICES}
        self.counters = {d: itertools.count(1) for d in DEVICES}

    def frame(self, d: int, mtu: int = 51) -> tuple[int, list[bytes]]:
        c = next(self.counters[d])
        return c, pack(make_frame(d, c, 1_700_000_000_000 + c), mtu=mtu, sealer=self.sealers[d])


_state: dict[str, object] = {}


def shared_worker() -> tuple[Worker, Fleet]:
    """One worker and fleet for all hypothesis examples (each example uses fresh counters)."""
    if not _state:
        _state["dir"] = tempfile.TemporaryDirectory(prefix="tokencast-hostile-")
        _state["worker"] = new_worker(Path(_state["dir"].name))  # type: ignore[union-attr]
        _state["fleet"] = Fleet()
    return _state["worker"], _state["fleet"]  # type: ignore[return-value]


@pytest.fixture(scope="module", autouse=True)
def _close_shared():
    yield
    if _state:
        _state["worker"].store.close()  # type: ignore[union-attr]
        _state["dir"].cleanup()  # type: ignore[union-attr]
        _state.clear()


@settings(max_examples=80)
@given(st.data())
def test_any_flipped_bit_anywhere_is_rejected_with_a_reason_and_others_flow(data):
    worker, fleet = shared_worker()
    c1, frags = fleet.frame(1)
    # drawn independently of the frame (its fragment count and sizes vary with the counter)
    i = data.draw(st.integers(0, 2), label="fragment") % len(frags)
    pos = data.draw(st.integers(0, 63), label="byte") % len(frags[i])
    bit = data.draw(st.integers(0, 7), label="bit")
    bad = bytearray(frags[i])
    bad[pos] ^= 1 << bit
    c2, other = fleet.frame(2)
    before = dict(worker.stats.rejected)
    outcomes = worker.ingest([Delivery(f) for f in other[:1]] + [Delivery(bytes(bad))] +
                             [Delivery(f) for f in other[1:]])
    assert outcomes[1] == REJECTED and set(outcomes[:1] + outcomes[2:]) == {STAGED}
    [reason] = [r for r in worker.stats.rejected if worker.stats.rejected[r] != before.get(r, 0)]
    assert reason in REASONS
    # the genuine fragment arrives later: the frame is whole, the forgery never touched it
    assert worker.submit(frags[i]) == STAGED
    for j, f in enumerate(frags):
        if j != i:
            assert worker.submit(f) == STAGED
    stored = {r.key for r in worker.drain()}
    assert stored == {(1, c1), (2, c2)}
    rec = worker.store.get_frame(1, c1)
    assert rec.complete and rec.fragments_received == len(frags)


def test_rejects_are_counted_logged_and_quarantined_by_reason_while_a_stream_flows(tmp_path, caplog):
    worker = new_worker(tmp_path, replay_window=8)
    fleet = Fleet()
    hostile: list[tuple[str, bytes]] = []
    # device 3 seals with its own key but claims to be device 1
    impostor = Sealer(device_key(3), 1)
    hostile.append(("auth", pack(make_frame(1, 900, 1), mtu=51, sealer=impostor)[0]))
    # a truncated fragment, a wrong version byte, garbage
    _, frags = fleet.frame(3)
    hostile += [("malformed", frags[0][:12]), ("version", b"\x09" + frags[0][1:]), ("malformed", b"\x00" * 3)]  # 2 is wire v2
    # an image claimed far larger than its grid decodes to: 65535 x 65535 on an 8x8 grid
    big = Frame.from_index_grid(np.zeros((8, 8), int), np.ones((8, 8), bool), device_id=3, counter=500, capture_ms=1,
                                width=65535, height=65535, tokenizer_id=1)
    hostile.append(("limit", pack(big, mtu=51, sealer=Sealer(device_key(3), 3))[0]))
    caplog.set_level(logging.WARNING, logger="cloud.worker")
    stored_expected = set()
    for k in range(20):  # an honest stream from device 2, with hostile input in between
        c, frags2 = fleet.frame(2)
        stored_expected.add((2, c))
        for f in frags2:
            assert worker.submit(f) == STAGED
        if k < len(hostile):
            assert worker.submit(hostile[k][1]) == REJECTED
        if k % 5 == 4:
            worker.drain()
    worker.drain()
    # replays: a stored frame again is a harmless duplicate; a counter older than the window never stored
    _, again = fleet.frame(1)
    for f in again:
        worker.submit(f)
    worker.drain()
    fleet.counters[1] = itertools.count(20)  # counters 2..19 are never sent
    for _ in range(10):
        _, frags1 = fleet.frame(1)
        for f in frags1:
            worker.submit(f)
    worker.drain()
    assert worker.submit(again[0]) == DUPLICATE
    stale = pack(make_frame(1, 5, 1), mtu=51, sealer=Sealer(device_key(1), 1))[0]  # never sent, out of the window
    assert worker.submit(stale) == REJECTED
    # a fragment delivered on another device's MQTT topic
    assert worker.ingest([Delivery(frags1[0], topic_device=2)]) == [REJECTED]
    counts = worker.store.quarantine_counts()
    assert counts == {"auth": 1, "malformed": 3, "version": 1, "limit": 1, "replay": 1}
    assert worker.stats.rejected == counts
    assert sum(worker.metrics.value("tokencast_link_rejected_total", reason=r) for r in counts) == sum(counts.values())
    logged = [r.getMessage() for r in caplog.records if "rejected fragment" in r.getMessage()]
    assert len(logged) == sum(counts.values()) and all(any(f"({r})" in m for r in counts) for m in logged)
    assert stored_expected <= {(f.device_id, f.counter) for f in worker.store.list_frames(2, limit=100)}
    assert worker.store.count_frames(2) == 20 and worker.store.count_frames(3) == 0
    print(f"\nhostile input: rejected by reason {counts}; device 2 stored {worker.store.count_frames(2)}/20")
    worker.store.close()
