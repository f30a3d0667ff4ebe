"""A sender cannot make the cloud hold more than its bounds, whatever it sends.

Covered elsewhere: the reassembler's per-device frame cap and total byte cap on a few frames
(``tests/link/test_reassembly.py::test_limits``); the deframer's frame-size cap
(``tests/link/test_framing.py::test_oversized_resets_and_resyncs``); the dashboard's image cap
(``tests/cloud/test_dashboard.py::test_images_are_bounded_and_made_once``); the image-size claim
at the worker (``tests/reliability/test_hostile_input.py``). Here: floods.
"""

from __future__ import annotations

import numpy as np

from link.errors import LimitExceeded, LinkError
from link.frame import Frame
from link.header import parse_header
from link.packet import pack
from link.reassembly import Reassembler
from link.security import KeyStore, Opener

_FIRST: list[bytes] = []


def big_partial(device: int, counter: int) -> bytes:
    """The first fragment of a 255x255 grid (the largest the header can name), unsealed: about
    65 kB of reassembly bookkeeping for one small fragment. Packed once; the ids are patched in
    (an unsealed fragment has no tag to break, and the limits are checked before any key is)."""
    if not _FIRST:
        rng = np.random.default_rng(0)
        kept = rng.random((255, 255)) < 0.5
        f = Frame.from_index_grid(rng.integers(0, 1024, (255, 255)), kept, device_id=0, counter=0, capture_ms=1,
                                  width=2040, height=2040, tokenizer_id=1)
        _FIRST.append(pack(f, mtu=64, sealer=None)[0])
    frag = bytearray(_FIRST[0])
    frag[2:6], frag[6:10] = device.to_bytes(4, "big"), counter.to_bytes(4, "big")
    return bytes(frag)


def reassembler(**kw) -> Reassembler:
    return Reassembler(Opener(KeyStore(), allow_unsealed=True), **kw)


def test_one_device_flooding_partial_frames_holds_at_most_its_share():
    r = reassembler(max_frames_per_device=4, max_total_bytes=1 << 20)
    handed_out = []
    for c in range(1, 1001):
        handed_out += r.feed(big_partial(9, c), 0.0)
        assert r.pending_frames <= 4 and r.pending_bytes <= r.max_total_bytes
    assert len(handed_out) == 996 and r.stats.evicted == 996 and not any(f.complete for f in handed_out)
    assert r.feed(big_partial(10, 1), 0.0) == [] and r.pending_frames == 5  # other devices are not starved


def test_many_devices_cannot_exceed_the_total_byte_bound():
    r = reassembler(max_frames_per_device=4, max_total_bytes=1 << 20)
    refused = 0
    for d in range(1, 200):
        try:
            r.feed(big_partial(d, 1), 0.0)
        except LimitExceeded as exc:
            assert exc.reason == "limit"
            refused += 1
        assert r.pending_bytes <= r.max_total_bytes
    assert refused > 150 and r.pending_frames == 199 - refused
    r.flush()
    assert r.pending_bytes == 0 and r.pending_frames == 0


def test_header_bounds_grid_slices_and_fragment_counts():
    """Grid sides are one byte (<= 255); a slice must lie inside the grid; slices are disjoint,
    so a frame has at most grid_h * grid_w fragments, and a duplicate slice is dropped."""
    frag = bytearray(big_partial(3, 1))
    h = parse_header(bytes(frag))
    assert (h.grid_h, h.grid_w) == (255, 255)
    bad = bytearray(frag)
    bad[13:15] = (255 * 255).to_bytes(2, "big")  # slice start past the grid
    try:
        parse_header(bytes(bad))
        raise AssertionError("slice outside the grid accepted")
    except LinkError as exc:
        assert exc.reason == "malformed"
    r = reassembler()
    r.feed(bytes(frag), 0.0)
    before = r.pending_bytes
    r.feed(bytes(frag), 0.0)  # the same slice again: dropped, counted, no memory
    assert r.stats.duplicates == 1 and r.pending_bytes == before
