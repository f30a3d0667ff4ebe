"""Downlink control messages, cloud -> camera: KEY_REQUEST and ACK, sealed with the device's key.

A camera with a downlink (MQTT: ``<prefix>/<device_id>/ctl``) hears two things from the cloud:

* **KEY_REQUEST**: send a key frame next (a delta named a reference the cloud lacks, or a key
  frame arrived with fragments missing), with the reason;
* **ACK**: frame N is stored *complete enough to serve as a reference*: its whole coarse layer
  and every fine fragment arrived (the cloud sends ACKs only for such key frames).

Wire layout (all of it is the AEAD associated data; there is no ciphertext, nothing here is
secret, only its origin and freshness matter):

    off  size  field
    0    1     version 0x81: b7 set = downlink (uplink fragments are 0x01 and 0x02), b6..b0 format 1
    1    1     flags: b7..b5 tag code (link.security.TAG_LENGTHS; 0, unsealed, is refused), b4..b0 reserved 0
    2    1     type: 1 KEY_REQUEST, 2 ACK (ids are constants, never reused)
    3    4     device id, u32 BE
    7    4     frame counter, u32 BE: the uplink frame the message is about
    11   1     detail: KEY_REQUEST: reason (REASONS); ACK: layers complete, b0 coarse, b1 fine (always 0x03)
    12   t     AES-CCM tag (t = the tag length of the uplink, same key)

Nonce, never sent: device id u32 | frame counter u32 | type | detail | 0x81 | 0x80. Its last
byte is the direction: uplink nonces end in 0x01 (wire v1) or 0x02 (wire v2), so no control
message shares a nonce with any uplink fragment under the same key, and the version byte in
the associated data makes an uplink fragment unparseable here (and a control message
unparseable as a fragment). Every header field except the tag length is in the nonce, so a
nonce repeats only for a byte-identical message: two workers of a group that report the same
event produce the same bytes, and no counter has to be shared between them.

Freshness: the receiving camera keeps, per message type, the highest frame counter it accepted
and a window below it (``link.security.ReplayWindow``); a message seen before, or older than the
window, raises ``ReplayRejected``. Errors are the link's typed ones: ``MalformedPacket`` (truncated,
bad field), ``UnsupportedVersion``, ``AuthenticationFailed`` (forged, another device's, unsealed,
wrong tag length), ``ReplayRejected``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from link.errors import AuthenticationFailed, MalformedPacket, ReplayRejected, UnsupportedVersion
from link.security import DEFAULT_TAG_LEN, KEY_LENGTHS, TAG_LENGTHS, KeyStore, ReplayWindow, tag_code

VERSION = 0x81
DIRECTION_DOWNLINK = 0x80  # last nonce byte; uplink nonces end in 0x01 / 0x02
HEADER_LEN = 12
KEY_REQUEST, ACK = 1, 2
TYPES = {KEY_REQUEST: "key_request", ACK: "ack"}
REASON_MISSING_REFERENCE, REASON_INCOMPLETE_KEY, REASON_OPERATOR = 1, 2, 3
REASONS = {REASON_MISSING_REFERENCE: "missing reference", REASON_INCOMPLETE_KEY: "incomplete key frame",
           REASON_OPERATOR: "operator"}
ACK_COARSE, ACK_FINE = 0x01, 0x02
ACK_COMPLETE = ACK_COARSE | ACK_FINE
U32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class ControlMessage:
    type: int
    device_id: int
    counter: int  # the uplink frame counter the message is about
    detail: int  # KEY_REQUEST: reason; ACK: layers complete (ACK_COMPLETE)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise MalformedPacket(f"control type {self.type}; valid: {_names(TYPES)}")
        for name, value, hi in (("device id", self.device_id, U32), ("frame counter", self.counter, U32),
                                ("detail", self.detail, 0xFF)):
            if not 0 <= value <= hi:
                raise MalformedPacket(f"control {name} {value} out of range 0..{hi}")
        if self.type == KEY_REQUEST and self.detail == 0:
            raise MalformedPacket(f"key request reason 0; valid: {_names(REASONS)} (others: newer clouds' reasons)")
        if self.type == ACK and self.detail & ~ACK_COMPLETE:
            raise MalformedPacket(f"ack layers 0x{self.detail:02x} has reserved bits set; valid bits 0x01 coarse, "
                                  "0x02 fine")

    @property
    def name(self) -> str:
        return TYPES[self.type]

    def describe(self) -> str:
        if self.type == KEY_REQUEST:
            return f"key request about frame {self.counter} ({REASONS.get(self.detail, f'reason {self.detail}')})"
        layers = "+".join(n for bit, n in ((ACK_COARSE, "coarse"), (ACK_FINE, "fine")) if self.detail & bit)
        return f"ack of frame {self.counter} ({layers or 'no layer'} complete)"


def key_request(device_id: int, counter: int, reason: int) -> ControlMessage:
    return ControlMessage(KEY_REQUEST, device_id, counter, reason)


def ack(device_id: int, counter: int) -> ControlMessage:
    """Frame ``counter`` is stored with its coarse layer and every fine fragment: a reference."""
    return ControlMessage(ACK, device_id, counter, ACK_COMPLETE)


def _names(table: dict[int, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in table.items())


def header(msg: ControlMessage, tag_len: int) -> bytes:
    return (bytes((VERSION, tag_code(tag_len) << 5, msg.type)) + msg.device_id.to_bytes(4, "big")
            + msg.counter.to_bytes(4, "big") + bytes((msg.detail,)))


def nonce(msg: ControlMessage) -> bytes:
    return (msg.device_id.to_bytes(4, "big") + msg.counter.to_bytes(4, "big")
            + bytes((msg.type, msg.detail, VERSION, DIRECTION_DOWNLINK)))


def seal(msg: ControlMessage, key: bytes, *, tag_len: int = DEFAULT_TAG_LEN) -> bytes:
    """The message's bytes: clear header + AES-CCM tag over it."""
    if tag_len == 0:
        raise ValueError("control messages are always sealed; tag_len 0 is not allowed")
    ad = header(msg, tag_len)
    return ad + AESCCM(key, tag_length=tag_len).encrypt(nonce(msg), b"", ad)


def parse(data: bytes) -> tuple[ControlMessage, int]:
    """(message, tag length) from the clear header, *unauthenticated*: inspection and routing only."""
    data = bytes(data)
    if not data:
        raise MalformedPacket("empty control message")
    if data[0] != VERSION:
        what = " (an uplink fragment)" if data[0] in (1, 2) else ""
        raise UnsupportedVersion(f"control version 0x{data[0]:02x}{what}; this build speaks 0x{VERSION:02x}")
    if len(data) < HEADER_LEN:
        raise MalformedPacket(f"control message truncated: {len(data)} bytes, the header alone is {HEADER_LEN}")
    flags = data[1]
    if flags & 0x1F:
        raise MalformedPacket(f"control flags 0x{flags:02x}: reserved bits b4..b0 must be 0")
    tag_len = TAG_LENGTHS[flags >> 5]
    if len(data) != HEADER_LEN + tag_len:
        raise MalformedPacket(f"control message is {len(data)} bytes; header {HEADER_LEN} + tag {tag_len} "
                              f"= {HEADER_LEN + tag_len} (truncated or trailing bytes)")
    msg = ControlMessage(data[2], int.from_bytes(data[3:7], "big"), int.from_bytes(data[7:11], "big"), data[11])
    return msg, tag_len


class ControlSealer:
    """Cloud side: seals control messages with each device's key from the worker's ``KeyStore``."""

    def __init__(self, keys: KeyStore, *, tag_len: int = DEFAULT_TAG_LEN) -> None:
        tag_code(tag_len)
        self.keys, self.tag_len = keys, tag_len

    def seal(self, msg: ControlMessage) -> bytes:
        return seal(msg, self.keys.get(msg.device_id), tag_len=self.tag_len)


class ControlOpener:
    """Camera side: authenticates control messages for this device and rejects replays."""

    def __init__(self, key: bytes, device_id: int, *, tag_len: int = DEFAULT_TAG_LEN, window: int = 256) -> None:
        if len(key) not in KEY_LENGTHS:
            raise ValueError(f"key must be {KEY_LENGTHS} bytes, got {len(key)}")
        tag_code(tag_len)
        if tag_len == 0:
            raise ValueError("control messages are always sealed; tag_len 0 is not allowed")
        self.device_id, self.tag_len = device_id, tag_len
        self._aead = AESCCM(key, tag_length=tag_len)
        self._replay = ReplayWindow(window)  # keyed by message type: one counter sequence per type
        self._lock = threading.Lock()

    def open(self, data: bytes) -> ControlMessage:
        msg, tag_len = parse(data)
        if tag_len == 0:
            raise AuthenticationFailed(f"unsealed control message ({msg.describe()}) refused")
        if tag_len != self.tag_len:
            raise AuthenticationFailed(f"control tag of {tag_len} bytes, expected {self.tag_len}")
        if msg.device_id != self.device_id:
            raise AuthenticationFailed(f"control message for device {msg.device_id}; this is device {self.device_id}")
        try:
            self._aead.decrypt(nonce(msg), bytes(data[HEADER_LEN:]), bytes(data[:HEADER_LEN]))
        except (InvalidTag, ValueError):
            raise AuthenticationFailed(f"control message ({msg.describe()}): authentication failed") from None
        with self._lock:
            try:
                self._replay.accept(msg.type, msg.counter)
            except ReplayRejected as exc:
                raise ReplayRejected(f"{msg.describe()}: {str(exc).split(': ', 1)[-1]}") from None
        return msg


__all__ = ["ACK", "ACK_COMPLETE", "KEY_REQUEST", "REASONS", "REASON_INCOMPLETE_KEY", "REASON_MISSING_REFERENCE",
           "REASON_OPERATOR", "TYPES", "ControlMessage", "ControlOpener", "ControlSealer", "ack", "key_request",
           "parse", "seal"]
