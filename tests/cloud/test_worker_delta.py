"""Delta frames in the worker: resolved against the stored reference (the key frame's sent tokens,
the delta's over them, the key frame's coarse layer; also after a restart and within one batch), degraded and never resolved against a wrong reference when it is missing,
and a replayed old key frame never replaces a reference."""

from __future__ import annotations

import numpy as np
import pytest
from cloudkit import device_key

from cloud.references import COARSE_SHARE, changed_blocks
from cloud.store import make_store
from cloud.worker import DUPLICATE, REJECTED, STAGED, Worker
from link.frame import FRAME_DELTA, Frame
from link.packet import pack
from link.security import Sealer

DEV = 2
GH, GW = 6, 8  # fine grid; coarse 3 x 4


class RecordingCodec:
    """The TokenCodec2 call contract, recording its inputs; known tokens come back, others 0."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def reconstruct(self, grids, known, coarse, coarse_known, sizes, seed=0):
        for g, k, c, ck in zip(grids, known, coarse, coarse_known, strict=True):
            self.calls.append({"grid": np.array(g), "known": np.array(k), "coarse": np.array(c), "ck": np.array(ck)})
        tokens = [np.where(k, g, 7) for g, k in zip(grids, known, strict=True)]
        return tokens, [np.zeros((h, w, 3), np.uint8) for h, w in sizes]


def key_frame(counter: int, seed: int = 0, keep: float = 0.5) -> Frame:
    rng = np.random.default_rng(seed)
    coarse = np.stack([rng.integers(0, lv, (3, 4)) for lv in (7, 5, 5, 5)])
    kept = rng.random((GH, GW)) < keep
    return Frame.from_index_grid(rng.integers(0, 1024, (GH, GW)), kept, device_id=DEV, counter=counter,
                                 capture_ms=1, width=GW * 8, height=GH * 8, tokenizer_id=3, coarse=coarse)


def delta_frame(counter: int, ref: int, kept: np.ndarray, value: int = 1000) -> Frame:
    return Frame.from_index_grid(np.full((GH, GW), value), kept, device_id=DEV, counter=counter, capture_ms=2,
                                 width=GW * 8, height=GH * 8, tokenizer_id=3, frame_type=FRAME_DELTA, ref_counter=ref)


def corner() -> np.ndarray:
    k = np.zeros((GH, GW), bool)
    k[:2, :3] = True
    return k


@pytest.fixture
def setup(cfg):
    codec = RecordingCodec()
    store = make_store(cfg.store)
    yield cfg, store, codec, Worker(cfg, store, {3: codec})
    store.close()


def send(worker: Worker, frame: Frame, mtu: int = 60) -> list[str]:
    return [worker.submit(f) for f in pack(frame, mtu=mtu, sealer=Sealer(device_key(DEV), DEV))]


def test_delta_takes_its_references_tokens_and_coarse_layer(setup):
    _, store, codec, worker = setup
    key = key_frame(1)
    send(worker, key)
    worker.drain()
    send(worker, delta_frame(2, 1, corner()))
    (rec,) = worker.drain()
    call = codec.calls[-1]
    known = key.kept | corner()  # what came over the link, in the key frame or the delta
    want = key.index_grid()
    want[corner()] = 1000
    assert np.array_equal(call["known"], known) and np.array_equal(call["grid"][known], want[known])
    # the key frame's coarse layer, except the cells over the corner the delta re-sent (it moved there)
    assert np.array_equal(call["coarse"], key.coarse)
    assert np.array_equal(call["ck"], ~changed_blocks(corner(), 2, call["ck"].shape, COARSE_SHARE))
    assert not call["ck"].all() and call["ck"].sum() >= call["ck"].size - 4
    assert (rec.frame_type, rec.ref_counter, rec.degraded) == (1, 1, False)
    assert store.get_frame(DEV, 2).kept_ratio == pytest.approx(corner().mean())  # the record tells the wire
    assert not store.get_frame(DEV, 2).degraded


def test_missing_reference_restores_without_it_and_marks_degraded(setup, caplog):
    _, store, codec, worker = setup
    send(worker, key_frame(1))
    worker.drain()
    send(worker, delta_frame(3, 2, corner()))  # 2 was never a key frame here
    (rec,) = worker.drain()
    call = codec.calls[-1]
    assert rec.degraded and store.get_frame(DEV, 3).degraded
    assert np.array_equal(call["known"], corner()) and not call["ck"].any()  # coarse unknown everywhere
    assert "reference 2 not in the store" in caplog.text
    assert worker.stats.degraded == 1 and worker.metrics.value("tokencast_frames_degraded_total") == 1


def test_a_delta_never_references_another_delta(setup):
    _, store, codec, worker = setup
    send(worker, key_frame(1))
    send(worker, delta_frame(2, 1, corner()))
    worker.drain()
    send(worker, delta_frame(3, 2, corner()))
    (rec,) = worker.drain()
    assert rec.degraded


def test_key_and_delta_in_one_batch_and_after_a_restart(setup, cfg):
    _, store, codec, worker = setup
    send(worker, delta_frame(2, 1, corner()))  # arrives first
    send(worker, key_frame(1))
    recs = {r.counter: r for r in worker.drain()}
    assert set(recs) == {1, 2} and not recs[2].degraded
    store.close()
    with make_store(cfg.store) as again:  # a new worker process on the same store
        codec2 = RecordingCodec()
        w2 = Worker(cfg, again, {3: codec2})
        send(w2, delta_frame(4, 1, corner(), value=5))
        (rec,) = w2.drain()
        assert not rec.degraded and np.array_equal(codec2.calls[-1]["coarse"], key_frame(1).coarse)


def test_a_replayed_old_key_frame_never_replaces_the_reference(setup):
    cfg, store, codec, worker = setup
    send(worker, key_frame(1, seed=1))
    send(worker, key_frame(3, seed=3))
    worker.drain()
    before = store.get_reference(DEV, 1)
    assert set(send(worker, key_frame(1, seed=1))) == {DUPLICATE}  # a redelivery: dropped
    worker.drain()
    assert np.array_equal(store.get_reference(DEV, 1).tokens, before.tokens)
    far = cfg.security.replay_window + 10
    send(worker, key_frame(far, seed=4))
    worker.drain()
    assert set(send(worker, key_frame(2, seed=9))) == {REJECTED}  # never stored, older than the window
    assert worker.stats.rejected.get("replay", 0) >= 1 and store.get_reference(DEV, 2) is None


def test_lost_coarse_cells_of_a_key_frame_stay_unknown_for_its_deltas(setup):
    _, store, codec, worker = setup
    frags = pack(key_frame(1), mtu=40, sealer=Sealer(device_key(DEV), DEV))
    assert frags[0][1] & 0x08  # the first fragment is a coarse one
    results = [worker.submit(f) for f in frags[1:]]
    assert set(results) == {STAGED}
    worker.process(force=True)
    send(worker, delta_frame(2, 1, corner()))
    (rec,) = worker.drain()
    ck = codec.calls[-1]["ck"]
    assert not rec.degraded and ck.any() and not ck.all()


def test_a_delta_waits_for_a_late_key_frame_instead_of_degrading(cfg):
    t = [1000.0]
    codec = RecordingCodec()
    with make_store(cfg.store) as store:
        worker = Worker(cfg, store, {3: codec}, clock=lambda: t[0])
        key = pack(key_frame(1), mtu=60, sealer=Sealer(device_key(DEV), DEV))
        worker.submit(key[0])  # the key frame loses its tail for now...
        send(worker, delta_frame(2, 1, corner()))  # ...and its delta completes first
        assert worker.process() == [] and worker.stats.deferred == 1
        for f in key[1:]:
            worker.submit(f)  # the rest of the key frame arrives
        t[0] += 1
        assert [r.counter for r in worker.process()] == [1]
        t[0] += cfg.reassembly.lease_s + 1  # the delta's claim runs out
        (rec,) = worker.process()
        assert rec.counter == 2 and not rec.degraded


def test_a_reference_that_never_comes_degrades_the_delta_after_the_timeout(cfg):
    t = [1000.0]
    with make_store(cfg.store) as store:
        worker = Worker(cfg, store, {3: RecordingCodec()}, clock=lambda: t[0])
        send(worker, delta_frame(2, 1, corner()))
        assert worker.process() == []
        t[0] += cfg.reassembly.lease_s + 1
        (rec,) = worker.process()
        assert rec.degraded and worker.stats.deferred == 1
