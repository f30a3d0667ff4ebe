"""Channel models for the demo and benchmarks: which fragments survive the air.

A fragment is lost when any of its bits is flipped, because its AEAD tag (or the framing CRC)
then fails; so the bit-level models modulate the fragment's actual bits, add noise, demodulate
with hard decisions and drop the fragment on any difference. Models are seeded numpy, keyed by
a config string: "none", "erasure" (independent fragment loss), "awgn" and "rayleigh" (block
fading, one coefficient per fragment, coherent detection). SNR is Es/N0 per symbol in dB.
Coded (LDPC) links are in ``link.ldpc`` and need the optional sionna package.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Modulation = Literal["bpsk", "qpsk", "16qam"]
BITS_PER_SYMBOL = {"bpsk": 1, "qpsk": 2, "16qam": 4}
_QAM_LEVELS = np.array([-3.0, -1.0, 3.0, 1.0]) / np.sqrt(10.0)  # Gray: 00 -3, 01 -1, 10 +3, 11 +1


@dataclass
class ChannelConfig:
    type: Literal["none", "erasure", "awgn", "rayleigh"] = "none"
    loss: float = 0.0  # erasure: probability a fragment is lost
    snr_db: float = 10.0
    modulation: Modulation = "qpsk"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability, got {self.loss}")


def modulate(bits: np.ndarray, modulation: str) -> np.ndarray:
    bits = bits.astype(np.int64)
    if modulation == "bpsk":
        return (2.0 * bits - 1.0).astype(np.complex128)
    if modulation == "qpsk":
        b = bits.reshape(-1, 2)
        return ((2.0 * b[:, 0] - 1.0) + 1j * (2.0 * b[:, 1] - 1.0)) / np.sqrt(2.0)
    b = bits.reshape(-1, 4)
    return _QAM_LEVELS[2 * b[:, 0] + b[:, 1]] + 1j * _QAM_LEVELS[2 * b[:, 2] + b[:, 3]]


def demodulate(symbols: np.ndarray, modulation: str) -> np.ndarray:
    if modulation == "bpsk":
        return (symbols.real > 0).astype(np.uint8)
    if modulation == "qpsk":
        return np.stack([symbols.real > 0, symbols.imag > 0], axis=1).astype(np.uint8).ravel()
    t = 2.0 / np.sqrt(10.0)

    def axis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x > 0, np.abs(x) < t  # first bit: sign; second bit: inner level

    i0, i1 = axis(symbols.real)
    q0, q1 = axis(symbols.imag)
    return np.stack([i0, i1, q0, q1], axis=1).astype(np.uint8).ravel()


class Channel(abc.ABC):
    name = "channel"

    def __init__(self, cfg: ChannelConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)

    @abc.abstractmethod
    def lost(self, fragments: Sequence[bytes]) -> np.ndarray:
        """Bool per fragment: True where it does not arrive intact."""

    def transmit(self, fragments: Sequence[bytes]) -> list[bytes]:
        """The fragments that arrive, in order."""
        mask = self.lost(fragments)
        return [f for f, gone in zip(fragments, mask, strict=True) if not gone]


class NoChannel(Channel):
    name = "none"

    def lost(self, fragments: Sequence[bytes]) -> np.ndarray:
        return np.zeros(len(fragments), dtype=bool)


class ErasureChannel(Channel):
    name = "erasure"

    def lost(self, fragments: Sequence[bytes]) -> np.ndarray:
        return self.rng.random(len(fragments)) < self.cfg.loss


class AwgnChannel(Channel):
    name = "awgn"

    def _gains(self, n: int) -> np.ndarray:
        return np.ones(n, dtype=np.complex128)

    def lost(self, fragments: Sequence[bytes]) -> np.ndarray:
        mod = self.cfg.modulation
        k = BITS_PER_SYMBOL[mod]
        n0 = 10.0 ** (-self.cfg.snr_db / 10.0)
        gains = self._gains(len(fragments))
        out = np.zeros(len(fragments), dtype=bool)
        for i, frag in enumerate(fragments):
            bits = np.unpackbits(np.frombuffer(bytes(frag), dtype=np.uint8))
            bits = np.concatenate([bits, np.zeros((-bits.size) % k, dtype=np.uint8)])
            s = modulate(bits, mod)
            noise = np.sqrt(n0 / 2) * (self.rng.standard_normal(s.size) + 1j * self.rng.standard_normal(s.size))
            y = (gains[i] * s + noise) / gains[i]  # coherent receiver knows the block's gain
            out[i] = bool((demodulate(y, mod) != bits).any())
        return out


class RayleighChannel(AwgnChannel):
    name = "rayleigh"

    def _gains(self, n: int) -> np.ndarray:
        return (self.rng.standard_normal(n) + 1j * self.rng.standard_normal(n)) / np.sqrt(2.0)


CHANNELS: dict[str, type[Channel]] = {
    "none": NoChannel,
    "erasure": ErasureChannel,
    "awgn": AwgnChannel,
    "rayleigh": RayleighChannel,
}


def make_channel(cfg: ChannelConfig) -> Channel:
    try:
        cls = CHANNELS[cfg.type]
    except KeyError:
        raise ValueError(f"unknown channel {cfg.type!r}; choose from {', '.join(CHANNELS)}") from None
    return cls(cfg)
