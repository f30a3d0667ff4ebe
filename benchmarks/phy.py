"""Fragment loss on a coded or uncoded PHY: which fragments a receiver gets at a given SNR.

Three models, chosen by name (``FEC_MODELS``); SNR is Es/N0 per complex symbol in dB, Rayleigh
is block fading with one coefficient per codeword (= fragment) and a receiver that knows it:

  uncoded   link.channel's bit-exact model: the fragment's own bits are modulated, noised and
            hard-demodulated; any flipped bit fails the AEAD tag, so the fragment is lost.
  ldpc      5G NR LDPC (sionna-no-rt): the block error rate of a full-MTU fragment coded at
            ``code_rate`` is measured by Monte Carlo (exact bit LLRs, 20 BP iterations) and each
            fragment is then lost independently with that probability (a standard PHY
            abstraction; a shorter last fragment is treated as a full one, slightly pessimistic).
  analytic  the labelled fallback when sionna is missing: a fragment survives iff the block's
            SNR clears the Shannon limit of the code rate plus a 1.5 dB gap for a finite-length
            LDPC, 2**(r m) - 1 -> dB + gap (AWGN: a cliff; Rayleigh: averaged over fading).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from link.channel import BITS_PER_SYMBOL, ChannelConfig, make_channel, modulate

FEC_MODELS = ("uncoded", "ldpc", "analytic")
LDPC_GAP_DB = 1.5


@dataclass(frozen=True)
class Phy:
    channel: str  # awgn | rayleigh
    snr_db: float
    modulation: str  # qpsk | 16qam
    fec: str  # uncoded | ldpc | analytic
    code_rate: float = 0.5

    @property
    def rate(self) -> float:
        """Information bits per channel use."""
        return BITS_PER_SYMBOL[self.modulation] * (1.0 if self.fec == "uncoded" else self.code_rate)


def channel_uses_per_pixel(bpp: float, phy: Phy) -> float:
    """Complex channel uses per pixel of a digital scheme: bpp / (code rate x bits per symbol)."""
    return bpp / phy.rate


def _axis(modulation: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis amplitude levels and their bit labels (rows: levels, cols: bits), matching
    link.channel's Gray mapping."""
    if modulation == "qpsk":
        return np.array([-1.0, 1.0]) / np.sqrt(2.0), np.array([[0], [1]])
    if modulation == "16qam":
        # index 2*b0 + b1 -> [-3, -1, 3, 1] / sqrt(10)
        return np.array([-3.0, -1.0, 3.0, 1.0]) / np.sqrt(10.0), np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    raise ValueError(f"modulation {modulation!r} not supported here; choose qpsk or 16qam")


def bit_llrs(y: np.ndarray, noise_var: np.ndarray, modulation: str) -> np.ndarray:
    """Exact LLRs log p(b=1)/p(b=0) of equalised symbols ``y`` (complex) with per-symbol complex
    noise variance ``noise_var``, in link.channel's bit order (I bits, then Q bits)."""
    levels, labels = _axis(modulation)
    var = np.broadcast_to(noise_var, y.shape)[:, None] / 2.0  # per real dimension

    def axis_llr(x: np.ndarray) -> np.ndarray:
        d = -((x[:, None] - levels[None]) ** 2) / (2 * var)  # (n, levels)
        out = []
        for b in range(labels.shape[1]):
            one = np.logaddexp.reduce(np.where(labels[None, :, b] == 1, d, -np.inf), axis=1)
            zero = np.logaddexp.reduce(np.where(labels[None, :, b] == 0, d, -np.inf), axis=1)
            out.append(one - zero)
        return np.stack(out, 1)

    return np.concatenate([axis_llr(y.real), axis_llr(y.imag)], 1).ravel()


@cache
def _ldpc(k: int, n: int):  # noqa: ANN202 - link.ldpc.Ldpc5G, imported lazily (pulls in sionna)
    from link.ldpc import Ldpc5G

    return Ldpc5G(k, n)


def ldpc_bler(phy: Phy, k_bits: int, blocks: int, seed: int = 0) -> float:
    """Monte-Carlo block error rate of a ``k_bits`` 5G LDPC codeword on ``phy``."""
    m = BITS_PER_SYMBOL[phy.modulation]
    n = int(np.ceil(k_bits / phy.code_rate / m)) * m
    code = _ldpc(k_bits, n)
    rng = np.random.default_rng(seed)
    info = rng.integers(0, 2, (blocks, k_bits))
    cw = code.encode(info).astype(np.uint8)
    n0 = 10.0 ** (-phy.snr_db / 10.0)
    llrs = []
    for row in cw:
        s = modulate(row, phy.modulation)
        noise = np.sqrt(n0 / 2) * (rng.standard_normal(s.size) + 1j * rng.standard_normal(s.size))
        g = 1.0
        if phy.channel == "rayleigh":
            h = (rng.standard_normal() + 1j * rng.standard_normal()) / np.sqrt(2.0)
            g = max(abs(h) ** 2, 1e-12)
        llrs.append(bit_llrs(s + noise / np.sqrt(g), np.full(s.size, n0 / g), phy.modulation))
    decoded = code.decode(np.clip(np.stack(llrs), -50, 50))
    return float(np.mean((decoded != info).any(axis=1)))


def analytic_bler(phy: Phy, rng: np.random.Generator, draws: int = 4000) -> float:
    """Threshold-model block error rate: lost iff block SNR < Shannon limit of the rate + gap."""
    thr_db = 10 * np.log10(2.0 ** phy.rate - 1.0) + LDPC_GAP_DB
    if phy.channel == "awgn":
        return float(phy.snr_db < thr_db)
    h2 = (rng.standard_normal(draws) ** 2 + rng.standard_normal(draws) ** 2) / 2.0
    return float(np.mean(phy.snr_db + 10 * np.log10(np.maximum(h2, 1e-12)) < thr_db))


class LossModel:
    """``lost(fragments, rng) -> bool per fragment`` for one PHY; block error rates are cached."""

    def __init__(self, phy: Phy, mtu: int, blocks: int = 64, seed: int = 0) -> None:
        if phy.fec not in FEC_MODELS:
            raise ValueError(f"unknown FEC model {phy.fec!r}; choose from {', '.join(FEC_MODELS)}")
        self.phy, self.mtu, self.blocks, self.seed = phy, mtu, blocks, seed
        self.bler: float | None = None
        if phy.fec == "ldpc":
            self.bler = ldpc_bler(phy, 8 * mtu, blocks, seed)
        elif phy.fec == "analytic":
            self.bler = analytic_bler(phy, np.random.default_rng(seed))

    def lost(self, fragments: list[bytes], seed: int) -> np.ndarray:
        if self.bler is not None:
            return np.random.default_rng(seed).random(len(fragments)) < self.bler
        cfg = ChannelConfig(type=self.phy.channel, snr_db=self.phy.snr_db,  # type: ignore[arg-type]
                            modulation=self.phy.modulation, seed=seed)  # type: ignore[arg-type]
        return make_channel(cfg).lost(fragments)
