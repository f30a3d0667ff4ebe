"""AEAD sealing, key files, nonce-reuse refusal, and the replay window."""

from __future__ import annotations

import base64

import pytest

from link.errors import AuthenticationFailed, InvalidFrame, ReplayRejected, UnknownDevice
from link.security import KeyStore, Opener, ReplayWindow, Sealer, load_key, nonce, parse_key

HEADER = b"\x01\x70header"


def test_seal_open_round_trip():
    key = bytes(range(16))
    sealed = Sealer(key, 9).seal(HEADER, b"payload", device_id=9, counter=1, slice_start=0)
    assert len(sealed) == len(b"payload") + 8
    opener = Opener(KeyStore({9: key}))
    assert opener.open(HEADER, sealed, device_id=9, counter=1, slice_start=0, tag_len=8) == b"payload"
    for kwargs in ({"counter": 2}, {"slice_start": 1}, {"device_id": 8}):
        args = {"device_id": 9, "counter": 1, "slice_start": 0, **kwargs}
        with pytest.raises((AuthenticationFailed, UnknownDevice)):
            opener.open(HEADER, sealed, tag_len=8, **args)
    with pytest.raises(AuthenticationFailed):
        opener.open(HEADER + b"x", sealed, device_id=9, counter=1, slice_start=0, tag_len=8)
    with pytest.raises(AuthenticationFailed):
        opener.open(HEADER, sealed, device_id=9, counter=1, slice_start=0, tag_len=4)
    with pytest.raises(AuthenticationFailed):
        opener.open(HEADER, sealed, device_id=9, counter=1, slice_start=0, tag_len=0)


def test_nonce_is_unique_per_fragment():
    assert nonce(1, 2, 3) != nonce(1, 2, 4) != nonce(1, 3, 3)
    assert len(nonce(1, 2, 3)) == 12


def test_sealer_refuses_nonce_reuse():
    s = Sealer(bytes(16), 1)
    s.seal(b"", b"a", device_id=1, counter=5, slice_start=0)
    s.seal(b"", b"a", device_id=1, counter=5, slice_start=10)
    with pytest.raises(InvalidFrame):
        s.seal(b"", b"a", device_id=1, counter=5, slice_start=0)
    with pytest.raises(InvalidFrame):
        s.seal(b"", b"a", device_id=1, counter=4, slice_start=99)
    with pytest.raises(InvalidFrame):
        s.seal(b"", b"a", device_id=2, counter=6, slice_start=0)


def test_key_files(tmp_path):
    key = bytes(range(32))
    (tmp_path / "7.key").write_text(key.hex() + "\n")
    (tmp_path / "8.key").write_text(base64.b64encode(key[:16]).decode())
    (tmp_path / "9.key").write_text("not a key")
    store = KeyStore(directory=tmp_path)
    assert store.get(7) == key and store.get(8) == key[:16]
    assert 7 in store and 10 not in store
    with pytest.raises(UnknownDevice) as err:
        store.get(10)
    assert err.value.reason == "unknown_device"
    with pytest.raises(ValueError):
        load_key(tmp_path / "9.key")
    (tmp_path / "10.key").write_text(key.hex())  # provisioned while running
    assert store.get(10) == key
    assert parse_key(bytes(range(200, 216))) == bytes(range(200, 216))


def test_replay_window():
    w = ReplayWindow(window=8)
    w.check(1, 100)
    w.check(1, 100)  # fragments of one frame share the counter: checking does not record
    w.accept(1, 100)
    with pytest.raises(ReplayRejected) as err:
        w.check(1, 100)
    assert err.value.reason == "replay"
    w.accept(1, 98)  # late but inside the window
    with pytest.raises(ReplayRejected):
        w.accept(1, 98)
    with pytest.raises(ReplayRejected):
        w.check(1, 92)  # older than the window
    w.accept(1, 150)
    with pytest.raises(ReplayRejected):
        w.check(1, 100)
    w.check(2, 0)  # devices are independent
    assert w.highest(1) == 150
