"""Wire format v2: two-layer frames cut into fragments, packed and opened.

A v2 frame has a coarse layer (every cell of the frame, a few bits each) and a fine layer (the
kept f8 tokens and their kept map). Fragments carry one contiguous raster slice of *one* layer:
the coarse layer first, so a link that drops the tail of a frame loses fine detail, not the
picture. Each fragment is coded alone (link.coding2), takes the smaller of range coding and raw
bit fields, and is sealed alone (nonce tail = layer, version). ``wire_size`` runs exactly the
planner ``pack`` runs.

Planning: greedy longest slice that fits the MTU. Range-coded sizes are not prefix sums, so the
search is guided by an estimate (each position's information content under whole-frame
contexts) and settled with a few exact encodes of the candidate slice.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from link import coding2, dc
from link.coding2 import ContextModels
from link.errors import AuthenticationFailed, InvalidFrame, LimitExceeded
from link.frame import FRAME_DELTA, Frame
from link.header2 import CODING_RAW, LAYER_COARSE, LAYER_FINE, FragmentHeader2, header_len, parse_header2
from link.packet import MAX_MTU
from link.security import TAG_LENGTHS, Opener, Sealer
from link.tokenizers import get_tokenizer


@functools.lru_cache(maxsize=16)
def default_models(tokenizer_id: int) -> ContextModels | None:
    """The shipped context-model set 1 for a two-layer tokenizer (or $TOKENCAST_PRIOR_DIR's)."""
    return coding2.load_models(get_tokenizer(tokenizer_id), 1)


SEARCH = 4  # extra encodes per fragment to fill it towards the MTU


@dataclass(frozen=True)
class SlicePlan2:
    layer: int
    start: int
    end: int
    coding: int
    payload: bytes  # plaintext
    size: int  # bytes on the wire: header, payload, tag


class LayerPlanner:
    """Greedy slicing of one layer of one frame."""

    def __init__(self, frame: Frame, layer: int, *, mtu: int, tag_len: int, models: ContextModels | None,
                 info_here: bool) -> None:
        self.frame, self.layer, self.mtu, self.tag_len, self.models = frame, layer, mtu, tag_len, models
        self.spec = get_tokenizer(frame.tokenizer_id)
        self.info_here = info_here
        self.delta = frame.frame_type == FRAME_DELTA
        if layer == LAYER_COARSE:
            ch, cw = self.spec.coarse_grid(frame.grid_h, frame.grid_w)
            self.width = cw
            if frame.coarse is None:
                raise InvalidFrame("a coarse layer plan needs a frame with a coarse layer")
            self.levels = frame.coarse.reshape(len(self.spec.coarse_levels), -1)
            self.n = ch * cw
            self.coarse_h = ch
            self.dc = None if frame.dc is None else frame.dc.reshape(3, -1)
            self.dc_w = dc.grid_for((ch, cw))[1]
            per = np.full(self.n, coding2.coarse_raw_bits(self.spec.coarse_levels), dtype=np.float64)
            if self.dc is not None:
                per[self._dc_anchor_positions()] += dc.RAW_BITS
            self.raw_bits = np.concatenate(([0.0], np.cumsum(per)))
        else:
            self.width = frame.grid_w
            self.kf = frame.kept.ravel()
            self.n = self.kf.size
            self.ck = np.concatenate(([0], np.cumsum(self.kf, dtype=np.int64)))
            self.raw_bits = np.arange(self.n + 1) + self.ck * self.spec.index_bits
        self.est = self._estimate()

    def _dc_anchor_positions(self) -> np.ndarray:
        cells = dc.anchors(0, self.n, self.width, self.coarse_h)
        i, j = np.divmod(cells, self.dc_w)
        return 2 * i * self.width + 2 * j

    def _dc_part(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        if self.dc is None:
            return None
        cells = dc.anchors(s, e, self.width, self.coarse_h)
        return self.dc[:, cells], cells, self.dc_w

    def _estimate(self) -> np.ndarray:
        """Prefix sums of estimated coded bits per position (whole-frame contexts)."""
        if self.models is None:
            return self.raw_bits.astype(np.float64)
        if self.layer == LAYER_COARSE:
            (syms, probs), = coding2.coarse_symbols(self.levels, 0, self.width, self.models)
            c = self.levels.shape[0]
            bits = -np.log2(probs[np.arange(syms.size), syms].astype(np.float64) + 1e-12).reshape(-1, c).sum(1)
            if self.dc is not None:
                cells = dc.anchors(0, self.n, self.width, self.coarse_h)
                bits[self._dc_anchor_positions()] += coding2.dc_bits(self.dc[:, cells], cells, self.dc_w)
        else:
            idx = self.frame.indices
            (ms, mp), (s, ctx) = coding2.fine_symbols(self.kf, idx, 0, self.width, self.models)
            bits = -np.log2(mp[np.arange(ms.size), ms].astype(np.float64) + 1e-12)
            if idx.size:
                bits[self.kf] += -np.log2(self.models.index[ctx, s].astype(np.float64) + 1e-12)
        return np.concatenate(([0.0], np.cumsum(bits)))

    def _header_len(self, s: int, e: int) -> int:
        return header_len(e - s, info=self.info_here and s == 0, delta=self.delta)

    def exact(self, s: int, e: int) -> SlicePlan2:
        """Smallest coding of slice [s, e): raw bit fields or range coded."""
        if self.layer == LAYER_COARSE:
            lv = self.levels[:, s:e]
            part = self._dc_part(s, e)
            raw = coding2.coarse_to_raw(lv, self.spec.coarse_levels, None if part is None else part[0])
            coded = coding2.encode_coarse(lv, s, self.width, self.models, part) if self.models else None
        else:
            k = self.kf[s:e]
            idx = self.frame.indices[self.ck[s] : self.ck[e]]
            raw = coding2.fine_to_raw(k, idx, self.spec.index_bits)
            coded = coding2.encode_fine(k, idx, s, self.width, self.models) if self.models else None
        coding, payload = CODING_RAW, raw
        if coded is not None and len(coded) < len(raw):
            coding, payload = self.models.set_id, coded  # type: ignore[union-attr]
        return SlicePlan2(self.layer, s, e, coding, payload, self._header_len(s, e) + len(payload) + self.tag_len)

    def _guess(self, s: int, ratio: float = 1.0) -> int:
        """Largest end whose estimated size, times ``ratio`` (exact bits per estimated bit seen on
        this layer's previous fragment), fits the MTU with a word of slack."""
        room = (self.mtu - self._header_len(s, s + 1) - self.tag_len - 4) * 8
        e = int(np.searchsorted(self.est, self.est[s] + room / ratio, side="right")) - 1
        return max(s + 1, min(self.n, e))

    def _ratio(self, s: int, e: int, p: SlicePlan2, ratio: float) -> float:
        """Exact payload bits per estimated bit of the slice just encoded (the estimate uses
        whole-frame contexts; a fragment's own contexts and word padding run a little over)."""
        est = self.est[e] - self.est[s]
        if est < 256:  # too short a slice to say anything
            return ratio
        return float(np.clip(len(p.payload) * 8 / est, 0.5, 2.0))

    def plan(self) -> list[SlicePlan2]:
        """Each fragment: the estimate's longest fitting slice (a word of slack), encoded; if it
        overflows, or leaves room, a bisection between a fitting and an overflowing end, started
        from the estimate's slope and capped at ``SEARCH`` encodes. Deterministic, so
        ``wire_size`` and ``pack`` agree."""
        plans: list[SlicePlan2] = []
        s = 0
        ratio = 1.0
        while s < self.n:
            e = self._guess(s, ratio)
            best = self.exact(s, e)
            ratio = self._ratio(s, e, best, ratio)
            lo, hi = (e, None) if best.size <= self.mtu else (None, e)
            if lo is None:  # overflow: halve until it fits
                while best.size > self.mtu:
                    if e == s + 1:
                        raise LimitExceeded(f"mtu {self.mtu} cannot hold even one position (needs {best.size} bytes)")
                    hi, e = e, s + max(1, (e - s) // 2)
                    best = self.exact(s, e)
                lo = e
            elif e < self.n:  # room left: one jump by the estimate's slope
                per = max(ratio * (self.est[e] - self.est[s]) / (e - s), 1e-3)
                cand_e = min(self.n, e + max(1, int((self.mtu - best.size) * 8 / per)))
                cand = self.exact(s, cand_e)
                if cand.size <= self.mtu:
                    lo, best = cand_e, cand
                    hi = None if cand_e < self.n else hi
                else:
                    hi = cand_e
            for _ in range(SEARCH):
                if hi is None or hi - lo <= 1:
                    break
                mid = (lo + hi) // 2
                cand = self.exact(s, mid)
                if cand.size <= self.mtu:
                    lo, best = mid, cand
                else:
                    hi = mid
            plans.append(best)
            s = lo
        return plans

    def estimate(self) -> float:
        """Bytes this layer will take, from the estimate alone (no encoding): for budget searches."""
        total, s = 0.0, 0
        while s < self.n:
            e = self._guess(s)
            total += self._header_len(s, e) + self.tag_len + (self.est[e] - self.est[s]) / 8 + 2
            s = e
        return total


def _check(frame: Frame, mtu: int, tag_len: int) -> None:
    if tag_len not in TAG_LENGTHS:
        raise InvalidFrame(f"tag length {tag_len} not supported; choose from {TAG_LENGTHS}")
    if not 1 <= mtu <= MAX_MTU:
        raise InvalidFrame(f"mtu must be in [1, {MAX_MTU}], got {mtu}")
    if not get_tokenizer(frame.tokenizer_id).layered:
        raise InvalidFrame(f"wire v2 needs a two-layer tokenizer, frame uses {frame.tokenizer_id}")


def _plan_key(frame: Frame, layer: int, mtu: int, tag_len: int, models: ContextModels | None,
              info_here: bool) -> tuple:
    """Everything a layer's plan depends on; the layer's data by digest (plans are pure)."""
    h = hashlib.blake2b(digest_size=16)
    if layer == LAYER_COARSE:
        arrays = [frame.coarse] + ([] if frame.dc is None else [frame.dc])
    else:
        arrays = [frame.kept, frame.indices]
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return (layer, mtu, tag_len, None if models is None else (id(models), models.digest), frame.tokenizer_id,
            frame.grid_h, frame.grid_w, frame.frame_type == FRAME_DELTA, frame.dc is not None, info_here,
            h.digest())


_PLANS: OrderedDict[tuple, list[SlicePlan2]] = OrderedDict()
_PLANS_LOCK = threading.Lock()
PLAN_CACHE = 32  # the edge sizes a picture's final cut, then packs it: the second plan is free


def clear_plan_cache() -> None:
    """Forget every cached plan (benchmarks that cycle through a few pictures call it per frame,
    so a repeated picture is not timed as planned for free)."""
    with _PLANS_LOCK:
        _PLANS.clear()


def plan_layer(frame: Frame, layer: int, *, mtu: int, tag_len: int = 8,
               models: ContextModels | None = None) -> list[SlicePlan2]:
    """One layer's fragments. The frame info rides on the first fragment of the first layer sent."""
    _check(frame, mtu, tag_len)
    if layer == LAYER_COARSE and frame.coarse is None:
        return []
    info_here = layer == LAYER_COARSE or frame.coarse is None
    key = _plan_key(frame, layer, mtu, tag_len, models, info_here)
    with _PLANS_LOCK:
        if key in _PLANS:
            _PLANS.move_to_end(key)
            return list(_PLANS[key])
    plans = LayerPlanner(frame, layer, mtu=mtu, tag_len=tag_len, models=models, info_here=info_here).plan()
    with _PLANS_LOCK:
        _PLANS[key] = plans
        while len(_PLANS) > PLAN_CACHE:
            _PLANS.popitem(last=False)
    return list(plans)


def plan2(frame: Frame, *, mtu: int, tag_len: int = 8, models: ContextModels | None = None) -> list[SlicePlan2]:
    """Every fragment of the frame in sending order: coarse slices, then fine ones."""
    if models is None:
        models = default_models(frame.tokenizer_id)
    return (plan_layer(frame, LAYER_COARSE, mtu=mtu, tag_len=tag_len, models=models)
            + plan_layer(frame, LAYER_FINE, mtu=mtu, tag_len=tag_len, models=models))


def estimate_layer(frame: Frame, layer: int, *, mtu: int, tag_len: int = 8,
                   models: ContextModels | None = None) -> float:
    """Estimated bytes of one layer (about 1% off the exact planner): cheap enough to search with."""
    _check(frame, mtu, tag_len)
    if layer == LAYER_COARSE and frame.coarse is None:
        return 0.0
    info_here = layer == LAYER_COARSE or frame.coarse is None
    return LayerPlanner(frame, layer, mtu=mtu, tag_len=tag_len, models=models, info_here=info_here).estimate()


def wire_size2(frame: Frame, *, mtu: int, tag_len: int = 8, models: ContextModels | None = None) -> int:
    return sum(p.size for p in plan2(frame, mtu=mtu, tag_len=tag_len, models=models))


def header_for(frame: Frame, p: SlicePlan2, tag_len: int) -> FragmentHeader2:
    info = p.start == 0 and (p.layer == LAYER_COARSE or frame.coarse is None)
    return FragmentHeader2(
        frame.device_id, frame.counter, frame.tokenizer_id, frame.grid_h, frame.grid_w, p.layer, p.start,
        p.end - p.start, tag_len, p.coding, frame.frame_type, frame.ref_counter,
        capture_ms=frame.capture_ms if info else None, width=frame.width if info else None,
        height=frame.height if info else None, dc=p.layer == LAYER_COARSE and frame.dc is not None,
    )


def seal_plans(frame: Frame, plans: list[SlicePlan2], sealer: Sealer | None) -> list[bytes]:
    tag_len = sealer.tag_len if sealer is not None else 0
    out = []
    for p in plans:
        h = header_for(frame, p, tag_len)
        header = h.pack()
        payload = p.payload
        if sealer is not None:
            payload = sealer.seal(header, payload, device_id=frame.device_id, counter=frame.counter,
                                  slice_start=p.start, tail=h.nonce_tail)
        out.append(header + payload)
    return out


def pack2(frame: Frame, *, mtu: int, sealer: Sealer | None, models: ContextModels | None = None) -> list[bytes]:
    """Fragments in sending order (coarse first); ``sealer=None`` sends them unsealed."""
    tag_len = sealer.tag_len if sealer is not None else 0
    return seal_plans(frame, plan2(frame, mtu=mtu, tag_len=tag_len, models=models), sealer)


@dataclass(frozen=True)
class Fragment2:
    """One decoded v2 fragment. Fine: ``kept`` (slice_len,) and ``indices``; coarse: ``levels`` (C, slice_len)."""

    header: FragmentHeader2
    kept: np.ndarray
    indices: np.ndarray
    levels: np.ndarray | None
    wire_bytes: int
    mask_bits: int = 0
    index_bits: int = 0
    dc_cells: np.ndarray | None = None  # coarse fragments with block means: their dc grid cells
    dc_values: np.ndarray | None = None  # (3, n) quantised block means (link.dc)

    @property
    def layer(self) -> int:
        return self.header.layer


def decode_payload2(h: FragmentHeader2, payload: bytes, models: ContextModels | None) -> Fragment2:
    spec = get_tokenizer(h.tokenizer_id)
    length = h.slice_len
    if h.layer == LAYER_COARSE:
        ch, cw = spec.coarse_grid(h.grid_h, h.grid_w)
        cells = dc.anchors(h.slice_start, h.slice_end, cw, ch) if h.dc else None
        dc_w = dc.grid_for((ch, cw))[1]
        means: np.ndarray | None
        if h.coding == CODING_RAW:
            levels, means = coding2.coarse_from_raw(payload, spec.coarse_levels, length,
                                                    0 if cells is None else cells.size)
        else:
            m = coding2.require(models, spec, h.coding)
            levels, means = coding2.decode_coarse(payload, spec.coarse_levels, h.slice_start, length, cw, m,
                                                  None if cells is None else (cells, dc_w))
        empty = np.zeros(0, dtype=np.int64)
        return Fragment2(h, np.zeros(0, dtype=bool), empty, levels, 0, dc_cells=cells,
                         dc_values=means if cells is not None else None)
    if h.coding == CODING_RAW:
        kept, indices = coding2.fine_from_raw(payload, length, spec.index_bits, spec.codebook_size)
    else:
        m = coding2.require(models, spec, h.coding)
        kept, indices = coding2.decode_fine(payload, h.slice_start, length, h.grid_w, m, spec.codebook_size)
    return Fragment2(h, kept, indices, None, 0)


def open_fragment2(data: bytes, opener: Opener | None = None, *,
                   models: Mapping[int, ContextModels] | None = None) -> Fragment2:
    """Parse, authenticate and decode one v2 fragment; raises only LinkError subclasses."""
    data = bytes(data)
    h = parse_header2(data)
    body = data[h.size :]
    if opener is not None:
        payload = opener.open(data[: h.size], body, device_id=h.device_id, counter=h.counter,
                              slice_start=h.slice_start, tag_len=h.tag_len, tail=h.nonce_tail)
    elif h.tag_len:
        raise AuthenticationFailed(f"device {h.device_id}: fragment is sealed and no key was given")
    else:
        payload = body
    m = (models or {}).get(h.tokenizer_id) if models is not None else default_models(h.tokenizer_id)
    f = decode_payload2(h, payload, m)
    bits = len(payload) * 8
    return Fragment2(h, f.kept, f.indices, f.levels, len(data),
                     mask_bits=0 if h.layer == LAYER_COARSE else bits, index_bits=0,
                     dc_cells=f.dc_cells, dc_values=f.dc_values)
