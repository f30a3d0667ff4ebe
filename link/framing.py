"""Stream framing for byte pipes (UART radios, capture files): COBS + CRC-16, 0x00 delimited.

Wire layout of one frame::

    COBS( payload || CRC-16/CCITT-FALSE(payload) as 2 bytes big-endian ) || 0x00

COBS removes every 0x00 from the body, so the delimiter is unambiguous and a receiver that
starts mid-stream, or loses bytes, resynchronises at the next 0x00. The CRC catches the bit
errors a UART or a radio in transparent mode lets through (the AEAD tag would too, but only
after a key lookup; the CRC lets a gateway drop noise without keys). Both the encoder and the
``Deframer`` are pure: the serial transport only moves the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from link.errors import FramingError

DELIMITER = 0x00
CRC_LEN = 2
CRC16_INIT = 0xFFFF
CRC16_POLY = 0x1021


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC16_POLY) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection); ``crc16(b"123456789") == 0x29B1``."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: output has no 0x00 and is at most len/254 + 1 bytes longer."""
    out = bytearray()
    for block in data.split(b"\x00"):
        # each zero-free block is emitted in runs of at most 254 bytes behind a length code
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of ``cobs_encode``; raises FramingError on a zero byte or a code past the end."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FramingError("COBS body contains a zero byte")
        end = i + code
        if end > n:
            raise FramingError(f"COBS code {code} at offset {i} runs past the end ({n} bytes)")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def max_encoded_len(payload_len: int) -> int:
    """Bytes on the wire for a payload of this length, worst case (COBS overhead + CRC + delimiter)."""
    body = payload_len + CRC_LEN
    return body + body // 254 + 1 + 1


def max_payload(wire_mtu: int) -> int:
    """Largest payload whose encoded frame always fits in ``wire_mtu`` bytes."""
    n = max(0, wire_mtu - CRC_LEN - 2)
    while n > 0 and max_encoded_len(n) > wire_mtu:
        n -= 1
    return n


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload: COBS(payload || crc16) || 0x00."""
    body = bytes(payload) + crc16(payload).to_bytes(CRC_LEN, "big")
    return cobs_encode(body) + b"\x00"


def decode_frame(frame: bytes) -> bytes:
    """Decode one frame body (with or without its trailing delimiter); FramingError if corrupt."""
    if frame.endswith(b"\x00"):
        frame = frame[:-1]
    body = cobs_decode(frame)
    if len(body) < CRC_LEN:
        raise FramingError(f"frame of {len(body)} bytes is shorter than its CRC")
    payload, crc = body[:-CRC_LEN], int.from_bytes(body[-CRC_LEN:], "big")
    if crc16(payload) != crc:
        raise FramingError("CRC mismatch")
    return payload


@dataclass
class DeframerStats:
    frames: int = 0  # good frames returned
    corrupt: int = 0  # COBS errors and CRC mismatches
    oversized: int = 0  # frames longer than max_frame, discarded up to the next delimiter
    bytes_in: int = 0


class Deframer:
    """Incremental, pure: ``feed(bytes) -> [payload, ...]``; bad frames are dropped and counted.

    ``max_frame`` bounds the encoded frame (without delimiter); a longer one resets the parser
    and everything up to the next delimiter is discarded, so memory stays bounded whatever the
    line carries.
    """

    def __init__(self, max_frame: int = 4096) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be >= 1, got {max_frame}")
        self.max_frame = max_frame
        self.stats = DeframerStats()
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        self.stats.bytes_in += len(data)
        out: list[bytes] = []
        parts = bytes(data).split(b"\x00")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if not self._discarding:
                self._buf += part
                if len(self._buf) > self.max_frame:
                    self.stats.oversized += 1
                    self._buf.clear()
                    self._discarding = True
            if last:
                break  # no delimiter after this part yet
            if self._discarding:
                self._discarding = False
            elif self._buf:
                try:
                    out.append(decode_frame(bytes(self._buf)))
                    self.stats.frames += 1
                except FramingError:
                    self.stats.corrupt += 1
            self._buf.clear()
        return out


def split_frames(data: bytes) -> list[bytes]:
    """Strictly decode a whole buffer of frames (a capture file); FramingError on any bad one."""
    if not data.endswith(b"\x00"):
        raise FramingError("stream does not end with a frame delimiter")
    return [decode_frame(chunk) for chunk in data[:-1].split(b"\x00") if chunk]


def join_frames(payloads: list[bytes]) -> bytes:
    """The capture-file container: each payload framed, concatenated (what ``split_frames`` reads)."""
    return b"".join(encode_frame(p) for p in payloads)
