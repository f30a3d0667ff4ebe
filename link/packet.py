"""Wire format v1, the payload half: slice planning (fragmentation), packing and decoding.

A frame is cut into fragments that each carry one contiguous slice [start, end) of raster grid
positions: the header (link/header.py), then a payload bitstream, then the AEAD tag. Losing a
fragment loses exactly its slice; every fragment decodes alone.

Payload bitstream (MSB first, zero padded to a whole byte; the padding must be zero):

    mask section, by the header's mask mode:
      raw        slice_len bits, 1 = kept
      runs       1 bit value of the first position, 3 bits k_kept, 3 bits k_masked, then the
                 alternating runs from the first position on, run length - 1 as order-k
                 exp-Golomb with k of that run's value, until slice_len positions are covered
      all kept / none kept: nothing
    index section, one entry per kept position of the slice in raster order:
      raw        ceil(log2 K) bits each, MSB first
      prior      canonical Huffman code of the tokenizer's prior (link.entropy.PriorCode)

Each fragment independently takes the smallest mask mode and the smaller index mode (the prior
mode pays for its 2-byte prior id). Slices are filled greedily so that every fragment is as
large as fits the MTU. ``wire_size`` runs exactly the planner ``pack`` runs, without building
bytes, so it equals ``sum(map(len, pack(...)))``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from link.entropy import PriorCode, bits_uint, eg_bits, eg_read, read_uint, uint_bits
from link.errors import AuthenticationFailed, InvalidFrame, LimitExceeded, MalformedPacket, PriorMismatch
from link.frame import Frame
from link.header import (
    FIXED_LEN,
    INDEX_PRIOR,
    INDEX_RAW,
    INFO_LEN,
    MASK_ALL,
    MASK_NONE,
    MASK_RAW,
    MASK_RUNS,
    FragmentHeader,
    parse_header,
)
from link.security import TAG_LENGTHS, Opener, Sealer
from link.tokenizers import get_tokenizer

K_BITS = 3  # width of each exp-Golomb order field in runs mode
K_MAX = (1 << K_BITS) - 1
RUNS_OVERHEAD = 1 + 2 * K_BITS
MAX_MTU = 1 << 20


@dataclass(frozen=True)
class SlicePlan:
    start: int
    end: int
    mask_mode: int
    index_mode: int
    k_kept: int
    k_masked: int
    mask_bits: int
    index_bits: int
    size: int  # bytes on the wire, header and tag included


class Planner:
    """Per-frame prefix sums that make the cost of any slice O(1); plans fragments greedily."""

    def __init__(self, frame: Frame, *, mtu: int, tag_len: int, prior: PriorCode | None = None) -> None:
        if tag_len not in TAG_LENGTHS:
            raise InvalidFrame(f"tag length {tag_len} not supported; choose from {TAG_LENGTHS}")
        if not 1 <= mtu <= MAX_MTU:
            raise InvalidFrame(f"mtu must be in [1, {MAX_MTU}], got {mtu}")
        spec = get_tokenizer(frame.tokenizer_id)
        if prior is not None and prior.tokenizer_id != spec.id:
            raise InvalidFrame(f"prior is for tokenizer {prior.tokenizer_id}, frame uses {spec.id}")
        self.frame, self.mtu, self.tag_len, self.prior = frame, mtu, tag_len, prior
        self.bits = spec.index_bits
        kf = frame.kept.ravel()
        self.kf = kf
        n = kf.size
        self.n = n
        change = np.flatnonzero(kf[1:] != kf[:-1]) + 1
        rs = np.concatenate(([0], change))
        re = np.concatenate((change, [n]))
        rl = re - rs
        rv = kf[rs]
        self.rs, self.re, self.rv = rs.tolist(), re.tolist(), rv.tolist()
        self.rid = np.repeat(np.arange(rs.size), rl).tolist()
        self._rl = rl
        self._rv_arr = rv
        self._P: dict[tuple[int, int], list[int]] = {}
        self.ck = np.concatenate(([0], np.cumsum(kf, dtype=np.int64))).tolist()
        self.ch: list[int] | None = None
        if prior is not None:
            hl = np.zeros(n, dtype=np.int64)
            hl[kf] = prior.lengths[frame.indices]
            self.ch = np.concatenate(([0], np.cumsum(hl))).tolist()
        bits_per_pos = (self.ck[-1] * self.bits + n) / n + 1e-9
        self._first_guess = int(max(1, min(n, (mtu - 40) * 8 / bits_per_pos)))

    def _prefix(self, v: int, k: int) -> list[int]:
        """Prefix sums over runs of value v of their order-k exp-Golomb lengths (built on demand)."""
        key = (v, k)
        table = self._P.get(key)
        if table is None:
            _, exp = np.frexp((self._rl - 1 + (1 << k)).astype(np.float64))
            egl = np.where(self._rv_arr == v, 2 * exp.astype(np.int64) - 1 - k, 0)
            table = self._P[key] = np.concatenate(([0], np.cumsum(egl))).tolist()
        return table

    def _eval(self, s: int, e: int) -> tuple[int, int, int, int, int, int, int]:
        """(size, mask_mode, index_mode, k_kept, k_masked, mask_bits, index_bits) of slice [s, e)."""
        length = e - s
        kept = self.ck[e] - self.ck[s]
        k1 = k0 = 0
        if kept == length:
            mask_mode, mask_bits = MASK_ALL, 0
        elif kept == 0:
            mask_mode, mask_bits = MASK_NONE, 0
        else:
            j0, j1 = self.rid[s], self.rid[e - 1]
            runs = j1 - j0 + 1
            v0, vl = self.rv[j0], self.rv[j1]
            runs1 = (runs + 1) // 2 if v0 else runs // 2
            # k = about log2(mean run length) - 1, clipped to [0, K_MAX]; see _k_for
            k1 = min(K_MAX, max(0, (kept // runs1).bit_length() - 2))
            k0 = min(K_MAX, max(0, ((length - kept) // (runs - runs1)).bit_length() - 2))
            p1, p0 = self._prefix(1, k1), self._prefix(0, k0)
            kf, kl = (k1 if v0 else k0), (k1 if vl else k0)
            runs_bits = (RUNS_OVERHEAD + p1[j1] - p1[j0 + 1] + p0[j1] - p0[j0 + 1]
                         + 2 * (self.re[j0] - s - 1 + (1 << kf)).bit_length() - 1 - kf
                         + 2 * (e - self.rs[j1] - 1 + (1 << kl)).bit_length() - 1 - kl)
            if runs_bits < length:
                mask_mode, mask_bits = MASK_RUNS, runs_bits
            else:
                mask_mode, mask_bits = MASK_RAW, length
        index_mode, index_bits = INDEX_RAW, kept * self.bits
        extra = 0
        if self.ch is not None and kept:
            huff = self.ch[e] - self.ch[s]
            if (mask_bits + huff + 7) // 8 + 2 < (mask_bits + index_bits + 7) // 8:
                index_mode, index_bits, extra = INDEX_PRIOR, huff, 2
        size = (FIXED_LEN + (1 if length < 0x80 else 2 if length < 0x4000 else 3) + extra + (INFO_LEN if s == 0 else 0)
                + (mask_bits + index_bits + 7) // 8 + self.tag_len)
        return size, mask_mode, index_mode, k1, k0, mask_bits, index_bits

    def cost(self, s: int, e: int) -> SlicePlan:
        size, mm, im, k1, k0, mb, ib = self._eval(s, e)
        return SlicePlan(s, e, mm, im, k1, k0, mb, ib, size)

    def plan(self) -> list[SlicePlan]:
        """Greedy fill: each fragment takes the longest slice that fits the MTU.

        The search gallops outward from the previous fragment's length, so a frame costs a few
        slice evaluations per fragment; any deterministic search would do, since ``pack`` and
        ``wire_size`` share this one.
        """
        plans: list[SlicePlan] = []
        s, guess, n, mtu, ev = 0, self._first_guess, self.n, self.mtu, self._eval
        while s < n:
            g = min(n, s + guess)
            best = ev(s, g)
            if best[0] <= mtu:
                lo, hi, step = g, n + 1, 1  # lo fits, hi does not (n + 1: past the end)
                while lo < n:
                    cand = min(n, lo + step)
                    r = ev(s, cand)
                    if r[0] > mtu:
                        hi = cand
                        break
                    lo, best, step = cand, r, step * 2
            else:
                hi, step = g, 1
                while True:
                    cand = max(s + 1, hi - step)
                    r = ev(s, cand)
                    if r[0] <= mtu:
                        lo, best = cand, r
                        break
                    if cand == s + 1:
                        raise LimitExceeded(f"mtu {mtu} cannot hold even one grid position (needs {r[0]} bytes)")
                    hi, step = cand, step * 2
            while hi - lo > 1:
                mid = (lo + hi) // 2
                r = ev(s, mid)
                if r[0] <= mtu:
                    lo, best = mid, r
                else:
                    hi = mid
            plans.append(SlicePlan(s, lo, best[1], best[2], best[3], best[4], best[5], best[6], best[0]))
            guess, s = lo - s, lo
        return plans

    def payload(self, p: SlicePlan) -> bytes:
        """The plaintext payload bitstream of one planned slice."""
        parts: list[np.ndarray] = []
        if p.mask_mode == MASK_RAW:
            parts.append(self.kf[p.start : p.end].astype(np.uint8))
        elif p.mask_mode == MASK_RUNS:
            bits = [int(self.kf[p.start])]
            bits += [(p.k_kept >> i) & 1 for i in range(K_BITS - 1, -1, -1)]
            bits += [(p.k_masked >> i) & 1 for i in range(K_BITS - 1, -1, -1)]
            j0, j1 = self.rid[p.start], self.rid[p.end - 1]
            for j in range(j0, j1 + 1):
                run = min(self.re[j], p.end) - max(self.rs[j], p.start)
                bits += eg_bits(run - 1, p.k_kept if self.rv[j] else p.k_masked)
            parts.append(np.asarray(bits, dtype=np.uint8))
        idx = self.frame.indices[self.ck[p.start] : self.ck[p.end]]
        if p.index_mode == INDEX_PRIOR and self.prior is not None:
            parts.append(self.prior.encode(idx))
        elif len(idx):
            parts.append(uint_bits(idx, self.bits))
        bits_all = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
        return np.packbits(bits_all).tobytes()

    def header(self, p: SlicePlan) -> FragmentHeader:
        f = self.frame
        first = p.start == 0
        return FragmentHeader(
            f.device_id, f.counter, f.tokenizer_id, f.grid_h, f.grid_w, p.start, p.end - p.start, self.tag_len,
            p.mask_mode, p.index_mode,
            prior_id=self.prior.id if p.index_mode == INDEX_PRIOR and self.prior is not None else None,
            capture_ms=f.capture_ms if first else None, width=f.width if first else None,
            height=f.height if first else None,
        )


def plan(frame: Frame, *, mtu: int, tag_len: int = 8, prior: PriorCode | None = None) -> list:
    """The fragments' plans (``SlicePlan``, or ``link.packet2.SlicePlan2`` for two-layer frames);
    each has ``.size``, its bytes on the wire."""
    if frame.layered:
        from link.packet2 import plan2

        return plan2(frame, mtu=mtu, tag_len=tag_len)
    return Planner(frame, mtu=mtu, tag_len=tag_len, prior=prior).plan()


def wire_size(frame: Frame, *, mtu: int, tag_len: int = 8, prior: PriorCode | None = None) -> int:
    """Exact total bytes of the fragments ``pack`` would produce for this frame (pure)."""
    return sum(p.size for p in plan(frame, mtu=mtu, tag_len=tag_len, prior=prior))


def pack(frame: Frame, *, mtu: int, sealer: Sealer | None, prior: PriorCode | None = None) -> list[bytes]:
    """Fragments ready to send, in sending order; ``sealer=None`` sends them unsealed (tests, wired links).

    Two-layer frames go out in wire v2 (link.packet2: coarse layer first), others in v1."""
    if frame.layered:
        from link.packet2 import pack2

        return pack2(frame, mtu=mtu, sealer=sealer)
    tag_len = sealer.tag_len if sealer is not None else 0
    planner = Planner(frame, mtu=mtu, tag_len=tag_len, prior=prior)
    out = []
    for p in planner.plan():
        header = planner.header(p).pack()
        payload = planner.payload(p)
        if sealer is not None:
            payload = sealer.seal(header, payload, device_id=frame.device_id, counter=frame.counter,
                                  slice_start=p.start)
        out.append(header + payload)
    return out


@dataclass(frozen=True)
class Fragment:
    """One decoded fragment: its header, the kept map of its slice, and its kept indices."""

    header: FragmentHeader
    kept: np.ndarray  # bool, (slice_len,)
    indices: np.ndarray  # int64, one per kept position
    wire_bytes: int
    mask_bits: int
    index_bits: int


def min_payload_bits(h: FragmentHeader) -> int:
    """The fewest payload bits any fragment with header ``h`` can carry (a lower bound: exact for
    "all kept" with raw indices). Lets a receiver tell a truncated fragment from a forged one."""
    mask = {MASK_ALL: 0, MASK_NONE: 0, MASK_RAW: h.slice_len}.get(h.mask_mode, 1 + 2 * K_BITS + 1)
    indices = h.slice_len * get_tokenizer(h.tokenizer_id).index_bits \
        if h.mask_mode == MASK_ALL and h.index_mode != INDEX_PRIOR else 0
    return mask + indices


def decode_payload(h: FragmentHeader, payload: bytes, prior: PriorCode | None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(kept, indices, mask_bits, index_bits) of one fragment's plaintext payload."""
    spec = get_tokenizer(h.tokenizer_id)
    length = h.slice_len
    if h.index_mode == INDEX_PRIOR and (prior is None or prior.id != h.prior_id or prior.tokenizer_id != spec.id):
        held = "none" if prior is None else f"{prior.id:#06x}"
        raise PriorMismatch(f"fragment coded with prior {h.prior_id:#06x} for tokenizer {spec.id}; "
                            f"this receiver holds {held}")
    bits_arr = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    total = bits_arr.size
    pos = 0
    if h.mask_mode == MASK_ALL:
        kept = np.ones(length, dtype=bool)
    elif h.mask_mode == MASK_NONE:
        kept = np.zeros(length, dtype=bool)
    elif h.mask_mode == MASK_RAW:
        if length > total:
            raise MalformedPacket(f"payload holds {total} bits, raw mask needs {length}")
        kept = bits_arr[:length].astype(bool)
        pos = length
    else:
        bits = bits_arr.tolist()
        value, pos = read_uint(bits, 0, 1)
        k1, pos = read_uint(bits, pos, K_BITS)
        k0, pos = read_uint(bits, pos, K_BITS)
        runs, covered = [], 0
        while covered < length:
            run, pos = eg_read(bits, pos, k1 if value else k0)
            run += 1
            if covered + run > length:
                raise MalformedPacket("mask runs overrun the slice")
            runs.append(run)
            covered += run
            value ^= 1
        first = bits[0]
        values = (np.arange(len(runs)) + first) % 2 == 1 if first == 0 else np.arange(len(runs)) % 2 == 0
        kept = np.repeat(values, runs)
    mask_bits = pos
    n_kept = int(kept.sum())
    if h.index_mode == INDEX_PRIOR and prior is not None:
        indices, pos = prior.decode(bits_arr.tolist(), pos, n_kept)
    else:
        need = n_kept * spec.index_bits
        if pos + need > total:
            raise MalformedPacket(f"payload holds {total - pos} index bits, {n_kept} indices need {need}")
        indices = bits_uint(bits_arr[pos : pos + need], spec.index_bits)
        pos += need
        if n_kept and int(indices.max()) >= spec.codebook_size:
            raise MalformedPacket(f"index {int(indices.max())} outside codebook of {spec.codebook_size}")
    if total - pos >= 8 or bits_arr[pos:].any():
        raise MalformedPacket(f"{total - pos} bits of trailing data or non-zero padding")
    return kept, indices.astype(np.int64), mask_bits, pos - mask_bits


def open_fragment(data: bytes, opener: Opener | None = None, *,
                  priors: Mapping[int, PriorCode] | None = None) -> Fragment:
    """Parse, authenticate and decode one fragment (v1, or v2 via link.packet2: a ``Fragment2``);
    raises only LinkError subclasses.

    With ``opener=None`` only unsealed fragments decode (AuthenticationFailed otherwise).
    """
    data = bytes(data)
    if data[:1] == b"\x02":
        from link.packet2 import open_fragment2

        return open_fragment2(data, opener)  # type: ignore[return-value]
    h = parse_header(data)
    body = data[h.size :]
    need = h.tag_len + (min_payload_bits(h) + 7) // 8
    if len(body) < need:  # cut short: say so, rather than let the AEAD call it a forgery
        raise MalformedPacket(f"fragment truncated: {len(body)} bytes after the header, "
                              f"its header needs at least {need} (payload and {h.tag_len}-byte tag)")
    if opener is not None:
        payload = opener.open(data[: h.size], body, device_id=h.device_id, counter=h.counter,
                              slice_start=h.slice_start, tag_len=h.tag_len)
    elif h.tag_len:
        raise AuthenticationFailed(f"device {h.device_id}: fragment is sealed and no key was given")
    else:
        payload = body
    prior = (priors or {}).get(h.tokenizer_id)
    kept, indices, mask_bits, index_bits = decode_payload(h, payload, prior)
    return Fragment(h, kept, indices, len(data), mask_bits, index_bits)
