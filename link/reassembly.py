"""Cloud side: authenticated fragments in, ``ReceivedFrame`` out, with bounded memory.

Fragments of a frame share (device id, counter) and carry disjoint slices; a frame is complete
when its slices cover the grid. A partial frame is handed out by ``expire`` once it is older
than ``timeout_s``, with ``lost`` marking the slices that never came, so the cloud restores what
it has instead of waiting forever. Memory is bounded per device (``max_frames_per_device``: the
oldest partial frame of that device is handed out early, since a device that moved on will not
fill it) and in total (``max_total_bytes``: further fragments raise LimitExceeded until frames
complete or expire). Late duplicates of frames already handed out are dropped and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from link.dc import grid_for as dc_grid_for
from link.entropy import PriorCode
from link.errors import LimitExceeded, MalformedPacket
from link.frame import FRAME_DELTA, ReceivedFrame
from link.packet import Fragment, open_fragment
from link.security import Opener, ReplayWindow
from link.tokenizers import get_tokenizer

_OVERHEAD = 256  # bookkeeping bytes charged per partial frame


@dataclass
class _Partial:
    first_seen: float
    geometry: tuple  # version, tokenizer id, grid_h, grid_w, reference (see ``geometry``)
    covered: np.ndarray  # bool, flat: fine grid, then the coarse grid (wire v2)
    fragments: dict[tuple[int, int], Fragment] = field(default_factory=dict)  # (layer, start)
    n_covered: int = 0
    cost: int = _OVERHEAD


@dataclass
class ReassemblyStats:
    fragments: int = 0
    duplicates: int = 0
    complete: int = 0
    partial: int = 0
    evicted: int = 0


def layer_of(frag: Fragment) -> int:
    """0 for v1 and v2 fine fragments, 1 for v2 coarse ones."""
    return int(getattr(frag.header, "layer", 0))


def geometry(frag: Fragment) -> tuple[int, int, int, int, int | None]:
    """What every fragment of one frame must agree on: version, tokenizer, grid, frame type, reference."""
    h = frag.header
    return (h.version, h.tokenizer_id, h.grid_h, h.grid_w, getattr(h, "ref_counter", None))


def span(frag: Fragment) -> tuple[int, int]:
    """The fragment's positions in the frame's combined coverage: fine grid, then the coarse grid."""
    h = frag.header
    off = h.grid_h * h.grid_w if layer_of(frag) else 0
    return off + h.slice_start, off + h.slice_end


def coverage_size(frag: Fragment) -> int:
    h = frag.header
    n = h.grid_h * h.grid_w
    spec = get_tokenizer(h.tokenizer_id)
    if h.version >= 2 and spec.layered and getattr(h, "frame_type", 0) != FRAME_DELTA:  # delta frames: no coarse layer
        ch, cw = spec.coarse_grid(h.grid_h, h.grid_w)
        n += ch * cw
    return n


def assemble(fragments: Iterable[Fragment], first_seen: float = 0.0) -> ReceivedFrame:
    """Place the fragments of one frame on its grids; positions no fragment covers are ``lost``."""
    frags = sorted(fragments, key=lambda f: (layer_of(f), f.header.slice_start))
    if not frags:
        raise MalformedPacket("no fragments to assemble")
    if frags[0].header.version >= 2:
        return _assemble2(frags, first_seen)
    h0 = frags[0].header
    key = (h0.device_id, h0.counter, h0.tokenizer_id, h0.grid_h, h0.grid_w)
    n = h0.grid_h * h0.grid_w
    kept = np.zeros(n, dtype=bool)
    lost = np.ones(n, dtype=bool)
    info = None
    for f in frags:
        h = f.header
        if (h.device_id, h.counter, h.tokenizer_id, h.grid_h, h.grid_w) != key:
            raise MalformedPacket("fragments of different frames or geometries")
        if not lost[h.slice_start : h.slice_end].all():
            raise MalformedPacket(f"slice [{h.slice_start}, {h.slice_end}) overlaps another fragment")
        kept[h.slice_start : h.slice_end] = f.kept
        lost[h.slice_start : h.slice_end] = False
        if h.info:
            info = h
    indices = np.concatenate([f.indices for f in frags]).astype(np.int64)
    gaps = int(np.count_nonzero(np.diff(np.concatenate(([0], lost.view(np.int8), [0]))) == 1))
    spec = get_tokenizer(h0.tokenizer_id)
    return ReceivedFrame(
        device_id=h0.device_id, counter=h0.counter,
        capture_ms=info.capture_ms if info else None,
        width=(info.width if info and info.width else h0.grid_w * spec.factor),
        height=(info.height if info and info.height else h0.grid_h * spec.factor),
        tokenizer_id=h0.tokenizer_id, grid_h=h0.grid_h, grid_w=h0.grid_w,
        kept=kept.reshape(h0.grid_h, h0.grid_w), indices=indices, lost=lost.reshape(h0.grid_h, h0.grid_w),
        fragments_received=len(frags), fragments_total=len(frags) + gaps, complete=not lost.any(),
        wire_bytes=sum(f.wire_bytes for f in frags), first_seen=first_seen,
    )


def _assemble2(frags: list, first_seen: float) -> ReceivedFrame:
    h0 = frags[0].header
    key = (h0.device_id, h0.counter, *geometry(frags[0]))
    spec = get_tokenizer(h0.tokenizer_id)
    n = h0.grid_h * h0.grid_w
    ch, cw = spec.coarse_grid(h0.grid_h, h0.grid_w)
    kept = np.zeros(n, dtype=bool)
    lost = np.ones(n, dtype=bool)
    coarse = np.zeros((len(spec.coarse_levels), ch * cw), dtype=np.int64)
    coarse_lost = np.ones(ch * cw, dtype=bool)
    dh, dw = dc_grid_for((ch, cw))
    means = np.zeros((3, dh * dw), dtype=np.int64)
    means_lost = np.ones(dh * dw, dtype=bool)
    any_dc = False
    info = None
    fine = []
    for f in frags:
        h = f.header
        if (h.device_id, h.counter, *geometry(f)) != key:
            raise MalformedPacket("fragments of different frames or geometries")
        s, e = h.slice_start, h.slice_end
        target = coarse_lost if h.layer else lost
        if not target[s:e].all():
            raise MalformedPacket(f"slice [{s}, {e}) overlaps another fragment of its layer")
        target[s:e] = False
        if h.layer:
            coarse[:, s:e] = f.levels
            if f.dc_cells is not None and f.dc_values is not None:
                means[:, f.dc_cells] = f.dc_values
                means_lost[f.dc_cells] = False
                any_dc = True
        else:
            kept[s:e] = f.kept
            fine.append(f)
        if h.info:
            info = h
    indices = (np.concatenate([f.indices for f in fine]) if fine else np.zeros(0)).astype(np.int64)
    delta = h0.frame_type == FRAME_DELTA
    both = lost if delta else np.concatenate((lost, coarse_lost))
    gaps = int(np.count_nonzero(np.diff(np.concatenate(([0], lost.view(np.int8), [0]))) == 1))
    gaps += int(np.count_nonzero(np.diff(np.concatenate(([0], coarse_lost.view(np.int8), [0]))) == 1))
    return ReceivedFrame(
        device_id=h0.device_id, counter=h0.counter,
        capture_ms=info.capture_ms if info else None,
        width=(info.width if info and info.width else h0.grid_w * spec.factor),
        height=(info.height if info and info.height else h0.grid_h * spec.factor),
        tokenizer_id=h0.tokenizer_id, grid_h=h0.grid_h, grid_w=h0.grid_w,
        kept=kept.reshape(h0.grid_h, h0.grid_w), indices=indices, lost=lost.reshape(h0.grid_h, h0.grid_w),
        fragments_received=len(frags), fragments_total=len(frags) + gaps, complete=not both.any(),
        wire_bytes=sum(f.wire_bytes for f in frags), first_seen=first_seen,
        coarse=None if delta else coarse.reshape(-1, ch, cw), coarse_lost=None if delta else coarse_lost.reshape(ch, cw),
        frame_type=h0.frame_type, ref_counter=h0.ref_counter,
        dc=means.reshape(3, dh, dw) if any_dc else None, dc_lost=means_lost.reshape(dh, dw) if any_dc else None,
    )


def unpack(fragments: Iterable[bytes], opener: Opener | None = None, *,
           priors: Mapping[int, PriorCode] | None = None) -> ReceivedFrame:
    """Decode the fragments of one frame at once (no timeouts, no replay window). Copies of a
    fragment (wire v2 sends coarse fragments more than once on lossy links) count once."""
    unique = dict.fromkeys(map(bytes, fragments))  # insertion-ordered, one entry per distinct fragment
    return assemble([open_fragment(f, opener, priors=priors) for f in unique])


class Reassembler:
    def __init__(self, opener: Opener | None, *, priors: Mapping[int, PriorCode] | None = None,
                 replay: ReplayWindow | None = None, timeout_s: float = 30.0, max_frames_per_device: int = 4,
                 max_total_bytes: int = 16 << 20, remember: int = 4096) -> None:
        if timeout_s <= 0 or max_frames_per_device < 1 or max_total_bytes < 1:
            raise ValueError("timeout_s, max_frames_per_device and max_total_bytes must be positive")
        self.opener, self.priors, self.replay = opener, dict(priors or {}), replay
        self.timeout_s = timeout_s
        self.max_frames_per_device = max_frames_per_device
        self.max_total_bytes = max_total_bytes
        self.stats = ReassemblyStats()
        self._partials: OrderedDict[tuple[int, int], _Partial] = OrderedDict()  # oldest first
        self._per_device: dict[int, int] = {}
        self._bytes = 0
        self._done: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._remember = remember

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def pending_frames(self) -> int:
        return len(self._partials)

    def feed(self, fragment: bytes, now: float) -> list[ReceivedFrame]:
        """Take one fragment; return the frames it completed (and any evicted partial frame).

        Raises LinkError subclasses for bad fragments (the caller counts them by ``reason``).
        """
        frag = open_fragment(fragment, self.opener, priors=self.priors)
        h = frag.header
        key = (h.device_id, h.counter)
        self.stats.fragments += 1
        if key in self._done:
            self.stats.duplicates += 1
            return []
        if self.replay is not None:
            self.replay.check(h.device_id, h.counter)
        out: list[ReceivedFrame] = []
        part = self._partials.get(key)
        geom = geometry(frag)
        fkey = (layer_of(frag), h.slice_start)
        s, e = span(frag)
        if part is None:
            n = coverage_size(frag)
            cost = _OVERHEAD + n
            self._reserve(cost + len(fragment))
            if self._per_device.get(h.device_id, 0) >= self.max_frames_per_device:
                oldest = next(k for k in self._partials if k[0] == h.device_id)
                out.append(self._finish(oldest))
                self.stats.evicted += 1
            part = _Partial(now, geom, np.zeros(n, dtype=bool), cost=cost)
            self._partials[key] = part
            self._per_device[h.device_id] = self._per_device.get(h.device_id, 0) + 1
            self._bytes += cost
        elif geom != part.geometry:
            raise MalformedPacket(f"device {h.device_id} counter {h.counter}: fragments disagree on the grid")
        else:
            if fkey in part.fragments:
                self.stats.duplicates += 1
                return out
            self._reserve(len(fragment))
        if part.covered[s:e].any():
            raise MalformedPacket(f"device {h.device_id} counter {h.counter}: slice "
                                  f"[{h.slice_start}, {h.slice_end}) overlaps an earlier fragment")
        part.covered[s:e] = True
        part.fragments[fkey] = frag
        part.n_covered += h.slice_len
        part.cost += len(fragment)
        self._bytes += len(fragment)
        if part.n_covered == part.covered.size:
            out.append(self._finish(key))
        return out

    def expire(self, now: float) -> list[ReceivedFrame]:
        """Hand out partial frames older than ``timeout_s``; their missing slices are ``lost``."""
        old = [k for k, p in self._partials.items() if now - p.first_seen >= self.timeout_s]
        return [self._finish(k) for k in old]

    def flush(self) -> list[ReceivedFrame]:
        """Hand out every pending frame (shutdown)."""
        return [self._finish(k) for k in list(self._partials)]

    def _reserve(self, cost: int) -> None:
        if self._bytes + cost > self.max_total_bytes:
            raise LimitExceeded(f"reassembly buffers full ({self._bytes} + {cost} > {self.max_total_bytes} bytes)")

    def _finish(self, key: tuple[int, int]) -> ReceivedFrame:
        part = self._partials.pop(key)
        self._bytes -= part.cost
        self._per_device[key[0]] -= 1
        if not self._per_device[key[0]]:
            del self._per_device[key[0]]
        self._done[key] = None
        while len(self._done) > self._remember:
            self._done.popitem(last=False)
        frame = assemble(part.fragments.values(), part.first_seen)
        if frame.complete:
            self.stats.complete += 1
        else:
            self.stats.partial += 1
        return frame
