"""Reassembly: loss marks exactly the lost slices, duplicates are harmless, memory is bounded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from link.errors import LimitExceeded, LinkError, ReplayRejected
from link.header import parse_header
from link.packet import pack
from link.reassembly import Reassembler, unpack
from link.security import KeyStore, Opener, ReplayWindow, Sealer

KEY = bytes(range(16))


def sealed(frame, mtu=51):
    return pack(frame, mtu=mtu, sealer=Sealer(KEY, frame.device_id))


def opener(*devices):
    return Opener(KeyStore({d: KEY for d in devices}))


@pytest.mark.parametrize("lost_ids", [[], [0], [3], [1, 2, 5], "last", "all_but_one"])
def test_loss_marks_exactly_the_lost_slices(frame_factory, lost_ids):
    frame = frame_factory(11)
    frags = sealed(frame)
    if lost_ids == "last":
        lost_ids = [len(frags) - 1]
    elif lost_ids == "all_but_one":
        lost_ids = list(range(1, len(frags)))
    r = Reassembler(opener(frame.device_id), timeout_s=5)
    done = []
    for i, f in enumerate(frags):
        if i not in lost_ids:
            done += r.feed(f, now=0.0)
    if not lost_ids:
        assert len(done) == 1 and done[0].complete and done[0].to_frame() == frame
        return
    assert done == [] and r.expire(now=4.9) == []
    (got,) = r.expire(now=5.0)
    expect_lost = np.zeros(frame.n_positions, dtype=bool)
    for i in lost_ids:
        h = parse_header(frags[i])
        expect_lost[h.slice_start : h.slice_end] = True
    assert np.array_equal(got.lost.ravel(), expect_lost)
    assert not got.complete and got.fragments_received == len(frags) - len(lost_ids)
    assert got.fragments_received < got.fragments_total <= len(frags)
    known = ~expect_lost.reshape(frame.kept.shape)
    assert np.array_equal(got.kept, frame.kept & known)
    grid = got.index_grid()
    assert np.array_equal(grid[known], frame.index_grid()[known])
    assert (grid[~known] == -1).all()
    assert (got.capture_ms is None) == (0 in lost_ids)
    assert (got.width, got.height) == (frame.width, frame.height)
    assert r.pending_bytes == 0 and r.pending_frames == 0


def test_duplicates_and_order_are_harmless(frame_factory):
    frame = frame_factory(12)
    frags = sealed(frame)
    r = Reassembler(opener(frame.device_id))
    order = list(reversed(frags)) + frags[:3]
    out = [x for f in order for x in r.feed(f, 0.0)]
    assert len(out) == 1 and out[0].to_frame() == frame
    assert all(r.feed(f, 1.0) == [] for f in frags)  # late duplicates of a delivered frame
    assert r.stats.duplicates == 3 + len(frags) and r.pending_frames == 0


def test_replay_check_then_accept(frame_factory):
    frame = frame_factory(13)
    frags = sealed(frame, mtu=65536)
    replay = ReplayWindow()
    r = Reassembler(opener(frame.device_id), replay=replay)
    (got,) = r.feed(frags[0], 0.0)
    replay.accept(got.device_id, got.counter)  # the worker records after storing
    fresh = Reassembler(opener(frame.device_id), replay=replay)  # e.g. another worker
    with pytest.raises(ReplayRejected):
        fresh.feed(frags[0], 1.0)


def test_limits(frame_factory):
    frames = [frame_factory(20 + i, counter=i + 1) for i in range(4)]
    r = Reassembler(opener(7), max_frames_per_device=2)
    evicted = []
    for f in frames:
        evicted += r.feed(sealed(f)[0], 0.0)
    assert [e.counter for e in evicted] == [1, 2] and not any(e.complete for e in evicted)
    assert r.pending_frames == 2 and r.stats.evicted == 2
    small = Reassembler(opener(7), max_total_bytes=15_000)  # ~6.5 kB per pending 64x96 frame
    small.feed(sealed(frames[0])[0], 0.0)
    small.feed(sealed(frames[1])[0], 0.0)
    with pytest.raises(LimitExceeded) as err:
        small.feed(sealed(frames[2])[0], 0.0)
    assert err.value.reason == "limit"
    assert len(small.flush()) == 2 and small.pending_bytes == 0


def test_unpack_rejects_mixed_frames(frame_factory):
    a, b = frame_factory(1, counter=1), frame_factory(2, counter=2)
    with pytest.raises(LinkError):
        unpack(sealed(a)[:1] + sealed(b)[1:2], opener(7))


FRAMES = [pack(__import__("tests.conftest", fromlist=["make_frame"]).make_frame(30 + i, grid=(8, 12), counter=i + 1), mtu=60, sealer=None)
          for i in range(3)]


@settings(max_examples=800)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(-1, 300), st.integers(0, 255)),
                max_size=30),
       st.floats(0, 100))
def test_fuzz_reassembler(ops, expire_at):
    r = Reassembler(None, timeout_s=10, max_frames_per_device=2, max_total_bytes=4000)
    now = 0.0
    for frame_i, frag_i, pos, value in ops:
        frags = FRAMES[frame_i]
        data = bytearray(frags[frag_i % len(frags)])
        if pos >= 0:
            data[pos % len(data)] = value
        now += 1.0
        try:
            for got in r.feed(bytes(data), now):
                assert got.lost.shape == got.kept.shape
                assert not (got.lost & got.kept).any()
        except LinkError as exc:
            assert exc.reason
    for got in r.expire(now + expire_at) + r.flush():
        assert got.fragments_received <= got.fragments_total
    assert r.pending_bytes == 0
