"""A fragment cut short is ``malformed`` (a transmission or capture fault), not ``auth`` (a forgery).

v1 has no length field, so the receiver bounds what the header promises: a raw mask of
``slice_len`` bits, ``slice_len`` raw indices when all are kept, and the tag.
"""

from __future__ import annotations

import numpy as np
import pytest

from link.errors import AuthenticationFailed, MalformedPacket
from link.frame import Frame
from link.header import parse_header
from link.packet import min_payload_bits, open_fragment, pack
from link.security import KeyStore, Opener, Sealer

KEY = bytes(range(16))


def frames(kept: np.ndarray) -> list[bytes]:
    f = Frame.from_index_grid(np.arange(kept.size).reshape(kept.shape) % 1024, kept, device_id=9, counter=3,
                              capture_ms=1, width=kept.shape[1] * 8, height=kept.shape[0] * 8, tokenizer_id=1)
    return pack(f, mtu=60, sealer=Sealer(KEY, 9, tag_len=8))


@pytest.mark.parametrize("kept", [np.ones((4, 6), bool), np.eye(4, 6, dtype=bool), np.zeros((4, 6), bool)])
def test_every_cut_is_malformed_until_the_body_could_hold_a_payload_and_tag(kept):
    opener = Opener(KeyStore({9: KEY}), tag_len=8)
    for frag in frames(kept):
        h = parse_header(frag)
        whole = len(frag) - h.size
        need = h.tag_len + (min_payload_bits(h) + 7) // 8
        assert need <= whole
        assert open_fragment(frag, opener).header.counter == 3  # uncut: fine
        for cut in range(h.size, len(frag)):
            with pytest.raises((MalformedPacket, AuthenticationFailed)) as err:
                open_fragment(frag[:cut], opener)
            body = cut - h.size
            assert (err.value.reason == "malformed") == (body < need), (cut, need, err.value)


def test_all_kept_raw_bound_is_exact():
    (frag, *_) = frames(np.ones((2, 3), bool))
    h = parse_header(frag)
    assert len(frag) - h.size - h.tag_len == (min_payload_bits(h) + 7) // 8
