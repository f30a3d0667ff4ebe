"""Downlink control messages (link/control.py): golden bytes, the documented nonce, typed errors for
truncated, forged, another device's and replayed messages, no confusion with uplink fragments."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from link.control import (
    ACK,
    KEY_REQUEST,
    REASON_INCOMPLETE_KEY,
    REASON_MISSING_REFERENCE,
    ControlOpener,
    ControlSealer,
    ack,
    key_request,
    parse,
    seal,
)
from link.errors import AuthenticationFailed, LinkError, MalformedPacket, ReplayRejected, UnsupportedVersion
from link.packet import open_fragment, pack
from link.security import KeyStore, Sealer

KEY = bytes(range(16))
DEV = 0x01020304
GOLDEN_REQUEST = bytes.fromhex("81 60 01 01020304 00000005 01 f94dc7cbcae47bc5")
GOLDEN_ACK = bytes.fromhex("81 60 02 01020304 00000007 03 ef6de78e9e6b2a45")


def test_golden_bytes_as_documented_in_the_readme():
    assert seal(key_request(DEV, 5, REASON_MISSING_REFERENCE), KEY) == GOLDEN_REQUEST
    assert seal(ack(DEV, 7), KEY) == GOLDEN_ACK
    # the tag is AES-CCM over no plaintext, the header as associated data, under the documented nonce
    nonce = bytes.fromhex("01020304 00000005 01 01 81 80")
    assert AESCCM(KEY, tag_length=8).encrypt(nonce, b"", GOLDEN_REQUEST[:12]) == GOLDEN_REQUEST[12:]


def test_round_trip_and_what_parse_sees():
    opener = ControlOpener(KEY, DEV)
    msg = opener.open(GOLDEN_REQUEST)
    assert (msg.type, msg.device_id, msg.counter, msg.detail) == (KEY_REQUEST, DEV, 5, REASON_MISSING_REFERENCE)
    assert "missing reference" in msg.describe()
    got = opener.open(GOLDEN_ACK)
    assert (got.type, got.counter, got.detail) == (ACK, 7, 3) and "coarse+fine" in got.describe()
    sealer = ControlSealer(KeyStore({9: KEY}), tag_len=16)
    data = sealer.seal(key_request(9, 100, REASON_INCOMPLETE_KEY))
    assert len(data) == 12 + 16 and parse(data)[1] == 16
    assert ControlOpener(KEY, 9, tag_len=16).open(data).counter == 100


def test_replays_are_rejected_per_type_and_older_than_the_window():
    opener = ControlOpener(KEY, DEV, window=4)
    opener.open(seal(key_request(DEV, 10, 1), KEY))
    with pytest.raises(ReplayRejected, match="already accepted"):
        opener.open(seal(key_request(DEV, 10, 1), KEY))
    opener.open(seal(ack(DEV, 10), KEY))  # another type: its own sequence
    opener.open(seal(key_request(DEV, 8, 1), KEY))  # late, inside the window, new: accepted
    opener.open(seal(key_request(DEV, 20, 1), KEY))
    with pytest.raises(ReplayRejected, match="older than the window"):
        opener.open(seal(key_request(DEV, 12, 1), KEY))


@pytest.mark.parametrize(("data", "error", "text"), [
    (b"", MalformedPacket, "empty"),
    (GOLDEN_REQUEST[:11], MalformedPacket, "truncated"),
    (GOLDEN_REQUEST[:-1], MalformedPacket, "truncated or trailing"),
    (GOLDEN_REQUEST + b"\x00", MalformedPacket, "truncated or trailing"),
    (b"\x02" + GOLDEN_REQUEST[1:], UnsupportedVersion, "uplink fragment"),
    (GOLDEN_REQUEST[:1] + b"\x61" + GOLDEN_REQUEST[2:], MalformedPacket, "reserved"),
    (GOLDEN_REQUEST[:2] + b"\x07" + GOLDEN_REQUEST[3:], MalformedPacket, "control type 7"),
    (GOLDEN_REQUEST[:11] + b"\x00" + GOLDEN_REQUEST[12:], MalformedPacket, "reason 0"),
    (GOLDEN_ACK[:11] + b"\x07" + GOLDEN_ACK[12:], MalformedPacket, "reserved bits"),
])
def test_malformed_messages_raise_typed_errors(data, error, text):
    with pytest.raises(error, match=text):
        ControlOpener(KEY, DEV).open(data)


def test_forged_other_device_unsealed_and_wrong_tag_length_fail_authentication():
    opener = ControlOpener(KEY, DEV)
    forged = bytearray(GOLDEN_REQUEST)
    forged[10] ^= 0x01  # frame counter 5 -> 4: the tag no longer matches
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        opener.open(bytes(forged))
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        opener.open(seal(key_request(DEV, 5, 1), bytes(16)))  # someone else's key
    with pytest.raises(AuthenticationFailed, match="for device 9"):
        opener.open(seal(key_request(9, 5, 1), KEY))
    with pytest.raises(AuthenticationFailed, match="unsealed"):
        opener.open(GOLDEN_REQUEST[:1] + b"\x00" + GOLDEN_REQUEST[2:12])
    with pytest.raises(AuthenticationFailed, match="expected 8"):
        opener.open(seal(key_request(DEV, 5, 1), KEY, tag_len=4))
    assert opener.open(GOLDEN_REQUEST).counter == 5  # failures recorded nothing: the real one still passes


def test_uplink_fragments_and_control_messages_never_pass_for_each_other():
    import numpy as np

    from link.frame import Frame

    frame = Frame.from_index_grid(np.arange(8).reshape(2, 4), np.ones((2, 4), bool), device_id=DEV, counter=5,
                                  capture_ms=1, width=32, height=16, tokenizer_id=1)
    for fragment in pack(frame, mtu=200, sealer=Sealer(KEY, DEV)):
        with pytest.raises(UnsupportedVersion):
            ControlOpener(KEY, DEV).open(fragment)
    with pytest.raises(LinkError):
        open_fragment(GOLDEN_REQUEST, None)


@settings(max_examples=300)
@given(st.binary(max_size=40), st.integers(0, 11), st.integers(0, 255))
def test_fuzz_mutated_messages_raise_only_link_errors(junk, pos, value):
    opener = ControlOpener(KEY, DEV, window=4)
    for data in (junk, GOLDEN_ACK[:pos] + bytes((value,)) + GOLDEN_ACK[pos + 1:]):
        try:
            msg = opener.open(data)
        except LinkError:
            continue
        assert data == GOLDEN_ACK and msg.counter == 7  # only the unchanged message authenticates
