"""Bit-level codes for the fragment payload: fixed-width fields, exp-Golomb runs, static Huffman.

Every code here is a prefix code with an exact, cheaply computed bit length. That is why the
index prior is a canonical Huffman code rather than a range coder: the packer must know the
exact size of thousands of candidate slices (greedy fragment fill, and the edge's binary search
over kept sets), a Huffman cost is a prefix sum, and a prefix code shares one bitstream with the
mask bits, with no per-fragment coder flush (a range coder spends 1-4 bytes per fragment on
termination, which at a 51-byte MTU is more than Huffman's redundancy on a VQ codebook).
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field

import numpy as np

from link.errors import MalformedPacket
from link.framing import crc16
from link.tokenizers import TokenizerSpec, get_tokenizer, load_prior

MAX_CODE_LEN = 24
MAX_EG_ZEROS = 24  # longest exp-Golomb prefix a decoder accepts (runs are < 2**16)


def uint_bits(values: np.ndarray, width: int) -> np.ndarray:
    """MSB-first bits (uint8 0/1) of each value, concatenated."""
    values = np.asarray(values, dtype=np.int64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] >> shifts) & 1).astype(np.uint8).ravel()


def bits_uint(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of ``uint_bits`` for ``len(bits) // width`` values."""
    weights = 1 << np.arange(width - 1, -1, -1, dtype=np.int64)
    return bits.reshape(-1, width).astype(np.int64) @ weights


def eg_len(n: int, k: int) -> int:
    """Bit length of the order-k exp-Golomb code of n >= 0."""
    return 2 * (n + (1 << k)).bit_length() - 1 - k


def eg_bits(n: int, k: int) -> list[int]:
    v = n + (1 << k)
    nb = v.bit_length()
    return [0] * (nb - 1 - k) + [(v >> i) & 1 for i in range(nb - 1, -1, -1)]


def eg_read(bits: list[int], pos: int, k: int) -> tuple[int, int]:
    """Decode one exp-Golomb value at ``pos``; returns (value, new position)."""
    end = len(bits)
    zeros = 0
    while pos < end and bits[pos] == 0:
        zeros += 1
        pos += 1
        if zeros > MAX_EG_ZEROS:
            raise MalformedPacket("exp-Golomb prefix too long")
    nb = zeros + k + 1
    if pos + nb > end:
        raise MalformedPacket("exp-Golomb code runs past the payload")
    v = 0
    for b in bits[pos : pos + nb]:
        v = (v << 1) | b
    return v - (1 << k), pos + nb


def read_uint(bits: list[int], pos: int, width: int) -> tuple[int, int]:
    if pos + width > len(bits):
        raise MalformedPacket("field runs past the payload")
    v = 0
    for b in bits[pos : pos + width]:
        v = (v << 1) | b
    return v, pos + width


def _huffman_lengths(weights: list[int]) -> list[int]:
    """Code lengths of a Huffman code; ties broken by node creation order, so deterministic."""
    n = len(weights)
    if n == 1:
        return [1]
    heap = [(w, i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)
    nxt = n
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (w1 + w2, nxt))
        nxt += 1
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):  # parents have larger ids than children
        depth[node] = depth[parent[node]] + 1
    return depth[:n]


@dataclass(frozen=True)
class PriorCode:
    """Canonical Huffman code for a tokenizer's indices, derived deterministically from counts.

    ``id`` is CRC-16/CCITT-FALSE over (tokenizer id byte, code lengths); it is sent with every
    fragment that uses the code, so a receiver holding a different prior raises PriorMismatch
    instead of decoding garbage. 0 is never an id.
    """

    tokenizer_id: int
    lengths: np.ndarray  # uint8, per symbol
    codes: np.ndarray  # int64, canonical code per symbol
    id: int
    _first_code: list[int] = field(repr=False)
    _first_index: list[int] = field(repr=False)
    _count: list[int] = field(repr=False)
    _symbols: list[int] = field(repr=False)

    @classmethod
    def from_counts(cls, spec: TokenizerSpec, counts: np.ndarray) -> PriorCode:
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (spec.codebook_size,) or (counts < 0).any():
            raise ValueError(f"counts must be non-negative with shape ({spec.codebook_size},)")
        # scale to 2**20 total so huge counts do not matter; +1 keeps every symbol codable
        total = int(counts.sum()) or 1
        weights = [int(w) + 1 for w in (counts * (1 << 20)) // total]
        while True:
            lengths = _huffman_lengths(weights)
            if max(lengths) <= MAX_CODE_LEN:
                break
            weights = [(w >> 1) + 1 for w in weights]
        return cls.from_lengths(spec.id, np.asarray(lengths, dtype=np.uint8))

    @classmethod
    def from_lengths(cls, tokenizer_id: int, lengths: np.ndarray) -> PriorCode:
        lengths = np.asarray(lengths, dtype=np.uint8)
        order = sorted(range(len(lengths)), key=lambda s: (int(lengths[s]), s))
        codes = np.zeros(len(lengths), dtype=np.int64)
        max_len = int(lengths.max())
        first_code = [0] * (max_len + 2)
        first_index = [0] * (max_len + 2)
        count = [0] * (max_len + 2)
        code, prev_len = 0, int(lengths[order[0]])
        for rank, s in enumerate(order):
            length = int(lengths[s])
            code <<= length - prev_len
            prev_len = length
            if count[length] == 0:
                first_code[length], first_index[length] = code, rank
            count[length] += 1
            codes[s] = code
            code += 1
        ident = crc16(bytes([tokenizer_id & 0xFF]) + lengths.tobytes()) or 1
        return cls(tokenizer_id, lengths, codes, ident, first_code, first_index, count, order)

    def cost(self, indices: np.ndarray) -> int:
        return int(self.lengths[np.asarray(indices, dtype=np.int64)].sum(dtype=np.int64))

    def encode(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        lens = self.lengths[idx].astype(np.int64)
        if not len(idx):
            return np.zeros(0, dtype=np.uint8)
        total = int(lens.sum())
        starts = np.cumsum(lens) - lens
        rep_len = np.repeat(lens, lens)
        offset = np.arange(total, dtype=np.int64) - np.repeat(starts, lens)
        return ((np.repeat(self.codes[idx], lens) >> (rep_len - 1 - offset)) & 1).astype(np.uint8)

    def decode(self, bits: list[int], pos: int, n: int) -> tuple[np.ndarray, int]:
        out = np.empty(n, dtype=np.int64)
        first_code, first_index, count, symbols = self._first_code, self._first_index, self._count, self._symbols
        max_len, end = len(count) - 2, len(bits)
        for i in range(n):
            code = 0
            for length in range(1, max_len + 1):
                if pos >= end:
                    raise MalformedPacket("Huffman code runs past the payload")
                code = (code << 1) | bits[pos]
                pos += 1
                offset = code - first_code[length]
                if 0 <= offset < count[length]:
                    out[i] = symbols[first_index[length] + offset]
                    break
            else:
                raise MalformedPacket("invalid Huffman code")
        return out, pos


@functools.lru_cache(maxsize=16)
def default_prior(tokenizer_id: int) -> PriorCode | None:
    """The code built from the prior shipped for ``tokenizer_id`` (or $TOKENCAST_PRIOR_DIR), or None.

    Edge and cloud both call this by default, so a stock install codes and decodes with the
    same table; cached because building the Huffman code takes a few milliseconds.
    """
    spec = get_tokenizer(tokenizer_id)
    counts = load_prior(spec)
    return None if counts is None else PriorCode.from_counts(spec, counts)
