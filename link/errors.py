"""Typed link errors: every decoder, reassembler and deframer raises only these on bad input.

Each class carries a short, stable ``reason`` string that the cloud uses as a metrics label
(``tokencast_link_rejected_total{reason="auth"}``), so the strings are part of the public API:
add new ones, never rename old ones.
"""

from __future__ import annotations


class LinkError(Exception):
    """Base of every error the link layer raises for bad bytes, keys or limits."""

    reason = "link"


class MalformedPacket(LinkError):
    """The bytes do not parse as a v1 fragment (truncated, bad field, trailing garbage)."""

    reason = "malformed"


class UnsupportedVersion(MalformedPacket):
    """The version byte names a wire format this build does not speak."""

    reason = "version"


class UnknownTokenizer(LinkError, KeyError):
    """A tokenizer id that is not in ``link.tokenizers.TOKENIZERS``."""

    reason = "tokenizer"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown tokenizer"


class PriorMismatch(LinkError):
    """The fragment was entropy coded against a prior this receiver does not hold."""

    reason = "prior"


class InvalidFrame(LinkError, ValueError):
    """A Frame (or its packing parameters) is inconsistent; raised on the sending side."""

    reason = "invalid"


class AuthenticationFailed(LinkError):
    """AEAD verification failed: wrong key, tampered bytes, or an unsealed fragment where a seal is required."""

    reason = "auth"


class ReplayRejected(LinkError):
    """The frame counter was already accepted or is older than the replay window."""

    reason = "replay"


class UnknownDevice(LinkError, KeyError):
    """No key is provisioned for this device id."""

    reason = "unknown_device"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown device"


class LimitExceeded(LinkError):
    """A size, memory or rate bound was hit (MTU too small, reassembly buffers full, duty cycle)."""

    reason = "limit"


class FramingError(LinkError):
    """A stream frame failed COBS decoding or its CRC."""

    reason = "framing"


class TransportError(LinkError):
    """A transport could not move bytes (broker unreachable, port closed)."""

    reason = "transport"


class TransportTimeout(TransportError):
    """A blocking transport call (e.g. waiting for an MQTT PUBACK) ran past its timeout."""

    reason = "timeout"


class BackendUnavailable(LinkError):
    """An optional backend's library is not installed (e.g. sionna for LDPC)."""

    reason = "unavailable"


__all__ = [
    "AuthenticationFailed",
    "BackendUnavailable",
    "FramingError",
    "InvalidFrame",
    "LimitExceeded",
    "LinkError",
    "MalformedPacket",
    "PriorMismatch",
    "ReplayRejected",
    "TransportError",
    "TransportTimeout",
    "UnknownDevice",
    "UnknownTokenizer",
    "UnsupportedVersion",
]
