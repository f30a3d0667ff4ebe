"""Per-device AEAD sealing of fragments, cloud-side key store, and the replay window.

Cipher: AES-CCM (``cryptography``) because it allows short tags (4..16 bytes; default 8, the
LoRaWAN-sized trade-off between forgery odds 2**-64 and airtime). Keys are AES-128 or AES-256,
one per device. The 12-byte nonce is derived, never sent:

    device_id u32 BE || counter u32 BE || slice_start u16 BE || 0x00 0x01 (direction: uplink)

Fragments of one frame share the counter but have disjoint slices, so (counter, slice_start) is
unique per device as long as the edge never reuses a counter; ``Sealer`` refuses to seal a
(counter, slice_start) pair twice or to go backwards, and the edge must persist its counter
across restarts. The clear fragment header is the associated data, so every header bit is
authenticated.

Replay protection is separate from decryption (``ReplayWindow.check`` / ``accept``) so a worker
can authenticate and decode a frame first and record its counter only once the result is stored.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from link.errors import AuthenticationFailed, InvalidFrame, ReplayRejected, UnknownDevice

TAG_LENGTHS = (0, 4, 6, 8, 10, 12, 14, 16)  # index = 3-bit tag code in the header flags
DEFAULT_TAG_LEN = 8
KEY_LENGTHS = (16, 32)
DIRECTION_UPLINK = b"\x00\x01"


def tag_code(tag_len: int) -> int:
    try:
        return TAG_LENGTHS.index(tag_len)
    except ValueError:
        raise ValueError(f"tag length {tag_len} not supported; choose from {TAG_LENGTHS}") from None


def nonce(device_id: int, counter: int, slice_start: int, tail: bytes = DIRECTION_UPLINK) -> bytes:
    """``tail`` is 2 bytes: ``00 01`` for wire v1; wire v2 uses ``layer 02`` (link.header2) so its
    coarse and fine slices, and v1's, never share a nonce."""
    return device_id.to_bytes(4, "big") + counter.to_bytes(4, "big") + slice_start.to_bytes(2, "big") + tail


def parse_key(text: str | bytes, source: str = "key") -> bytes:
    """A key from hex (32/64 digits) or base64 text; raw 16/32-byte binary is accepted too."""
    if isinstance(text, bytes):
        if len(text) in KEY_LENGTHS:
            try:
                text.decode("ascii")
            except UnicodeDecodeError:
                return text
        text = text.decode("ascii", errors="replace")
    s = text.strip()
    key: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}", s):
        key = bytes.fromhex(s)
    else:
        try:
            key = base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) not in KEY_LENGTHS:
        raise ValueError(f"{source}: expected a 16- or 32-byte key as hex or base64")
    return key


def key_path(directory: str | Path, device_id: int) -> Path:
    return Path(directory) / f"{device_id}.key"


def load_key(path: str | Path) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read key ({exc.strerror})") from None
    return parse_key(data, str(path))


class Sealer:
    """Device side: seals fragments with this device's key; refuses nonce reuse."""

    def __init__(self, key: bytes, device_id: int, *, tag_len: int = DEFAULT_TAG_LEN) -> None:
        if len(key) not in KEY_LENGTHS:
            raise ValueError(f"key must be {KEY_LENGTHS} bytes, got {len(key)}")
        if tag_len == 0:
            raise ValueError("a Sealer needs a tag; pass sealer=None to send unsealed fragments")
        tag_code(tag_len)
        self.device_id = device_id
        self.tag_len = tag_len
        self._aead = AESCCM(key, tag_length=tag_len)
        self._counter: int | None = None
        self._starts: set[tuple[int, bytes]] = set()
        self._lock = threading.Lock()

    def seal(self, header: bytes, plaintext: bytes, *, device_id: int, counter: int, slice_start: int,
             tail: bytes = DIRECTION_UPLINK) -> bytes:
        if device_id != self.device_id:
            raise InvalidFrame(f"frame is for device {device_id} but this sealer holds device {self.device_id}'s key")
        with self._lock:
            if self._counter is not None and counter < self._counter:
                raise InvalidFrame(f"counter {counter} is below {self._counter}: would reuse a nonce")
            if counter != self._counter:
                self._counter, self._starts = counter, set()
            if (slice_start, tail) in self._starts:
                raise InvalidFrame(f"counter {counter} slice {slice_start} already sealed: would reuse a nonce")
            self._starts.add((slice_start, tail))
        return self._aead.encrypt(nonce(device_id, counter, slice_start, tail), plaintext, header)


class KeyStore:
    """Cloud side: device id -> key, from memory and/or a directory of ``<device_id>.key`` files.

    A key file missing at start-up is looked up again on first use, so provisioning a device is
    just dropping its key file in place.
    """

    def __init__(self, keys: dict[int, bytes] | None = None, directory: str | Path | None = None) -> None:
        self._keys: dict[int, bytes] = {}
        self.directory = Path(directory) if directory is not None else None
        for device_id, key in (keys or {}).items():
            self.add(device_id, key)

    def add(self, device_id: int, key: bytes) -> None:
        if len(key) not in KEY_LENGTHS:
            raise ValueError(f"key for device {device_id} must be {KEY_LENGTHS} bytes, got {len(key)}")
        self._keys[device_id] = bytes(key)

    def get(self, device_id: int) -> bytes:
        key = self._keys.get(device_id)
        if key is None and self.directory is not None:
            path = key_path(self.directory, device_id)
            if path.is_file():
                key = load_key(path)
                self._keys[device_id] = key
        if key is None:
            raise UnknownDevice(f"no key provisioned for device {device_id}")
        return key

    def __contains__(self, device_id: int) -> bool:
        try:
            self.get(device_id)
        except (UnknownDevice, ValueError):
            return False
        return True


class Opener:
    """Cloud side: verifies and decrypts fragments; requires exactly ``tag_len`` unless unsealed is allowed."""

    def __init__(self, keys: KeyStore, *, tag_len: int = DEFAULT_TAG_LEN, allow_unsealed: bool = False) -> None:
        tag_code(tag_len)
        self.keys = keys
        self.tag_len = tag_len
        self.allow_unsealed = allow_unsealed
        self._aeads: dict[tuple[int, bytes], AESCCM] = {}

    def open(self, header: bytes, sealed: bytes, *, device_id: int, counter: int, slice_start: int,
             tag_len: int, tail: bytes = DIRECTION_UPLINK) -> bytes:
        if tag_len == 0:
            if self.allow_unsealed:
                return sealed
            raise AuthenticationFailed(f"device {device_id}: unsealed fragment rejected")
        if tag_len != self.tag_len:
            raise AuthenticationFailed(f"device {device_id}: tag of {tag_len} bytes, expected {self.tag_len}")
        key = self.keys.get(device_id)
        aead = self._aeads.get((device_id, key))
        if aead is None:
            aead = self._aeads[(device_id, key)] = AESCCM(key, tag_length=tag_len)
        try:
            return aead.decrypt(nonce(device_id, counter, slice_start, tail), sealed, header)
        except (InvalidTag, ValueError):
            raise AuthenticationFailed(f"device {device_id} counter {counter}: authentication failed") from None


class ReplayWindow:
    """Per-device sliding window of accepted frame counters.

    A counter is fresh if it is above the highest accepted one, or within ``window`` below it and
    not yet accepted. ``check`` only looks; ``accept`` records (call it once the frame is stored).
    Fragments of one frame share a counter, so they all pass ``check`` until the frame is accepted.
    """

    def __init__(self, window: int = 256) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._highest: dict[int, int] = {}
        self._seen: dict[int, int] = {}  # bit i set: counter highest - i accepted
        self._lock = threading.Lock()

    def check(self, device_id: int, counter: int) -> None:
        with self._lock:
            highest = self._highest.get(device_id)
            if highest is None or counter > highest:
                return
            age = highest - counter
            if age >= self.window:
                raise ReplayRejected(f"device {device_id}: counter {counter} is older than the window "
                                     f"(highest accepted {highest}, window {self.window})")
            if (self._seen[device_id] >> age) & 1:
                raise ReplayRejected(f"device {device_id}: counter {counter} already accepted")

    def accept(self, device_id: int, counter: int) -> None:
        self.check(device_id, counter)
        with self._lock:
            highest = self._highest.get(device_id)
            mask = (1 << self.window) - 1
            if highest is None:
                self._highest[device_id], self._seen[device_id] = counter, 1
            elif counter > highest:
                self._seen[device_id] = ((self._seen[device_id] << (counter - highest)) | 1) & mask
                self._highest[device_id] = counter
            else:
                self._seen[device_id] |= 1 << (highest - counter)

    def highest(self, device_id: int) -> int | None:
        return self._highest.get(device_id)
