"""What the link carries: a ``Frame`` (edge side) and a ``ReceivedFrame`` (cloud side).

A frame is the token grid of one picture after selection: the kept/masked map and the codebook
indices of the kept tokens in row-major order of kept positions. ``ReceivedFrame`` adds what the
channel did to it: ``lost`` marks positions whose fragment never arrived; the cloud regenerates
those together with the masked ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from link.errors import InvalidFrame
from link.tokenizers import TokenizerSpec, get_tokenizer

U32 = 0xFFFF_FFFF
MAX_CAPTURE_MS = (1 << 48) - 1  # 48-bit unix milliseconds: good until the year 10889
MAX_GRID = 255  # grid sides are one byte on the wire
MAX_IMAGE = 0xFFFF
FRAME_KEY, FRAME_DELTA = 0, 1  # wire v2 frame types: coded alone, or against a reference frame
FRAME_TYPES = ("key", "delta")


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise InvalidFrame(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


@dataclass(eq=False)
class Frame:
    device_id: int
    counter: int
    capture_ms: int
    width: int
    height: int
    tokenizer_id: int
    grid_h: int
    grid_w: int
    kept: np.ndarray
    indices: np.ndarray
    # Two-layer tokenizers (wire v2): coarse levels (C, hc, wc). Key frames carry one; delta frames
    # never do (the cloud uses its reference frame's): None.
    coarse: np.ndarray | None = None
    frame_type: int = FRAME_KEY
    ref_counter: int | None = None  # the reference frame's counter, for delta frames
    # Optional with a coarse layer: the mean colour of every 32x32 block (link.dc: 3 quantised
    # channels, (3, ceil(hc/2), ceil(wc/2))), which the cloud pulls its picture's block means to.
    dc: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_int("device_id", self.device_id, 0, U32)
        _check_int("counter", self.counter, 0, U32)
        _check_int("capture_ms", self.capture_ms, 0, MAX_CAPTURE_MS)
        _check_int("width", self.width, 1, MAX_IMAGE)
        _check_int("height", self.height, 1, MAX_IMAGE)
        spec = get_tokenizer(self.tokenizer_id)
        _check_int("grid_h", self.grid_h, 1, MAX_GRID)
        _check_int("grid_w", self.grid_w, 1, MAX_GRID)
        kept = np.asarray(self.kept)
        if kept.dtype != np.bool_ or kept.shape != (self.grid_h, self.grid_w):
            raise InvalidFrame(
                f"kept must be a bool array of shape ({self.grid_h}, {self.grid_w}), got {kept.dtype} {kept.shape}"
            )
        indices = np.asarray(self.indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "ui"):
            raise InvalidFrame(f"indices must be a 1-d integer array, got {indices.dtype} {indices.shape}")
        n_kept = int(kept.sum())
        if indices.size != n_kept:
            raise InvalidFrame(f"{n_kept} kept positions but {indices.size} indices")
        if indices.size and (indices.min() < 0 or indices.max() >= spec.codebook_size):
            raise InvalidFrame(f"indices must lie in [0, {spec.codebook_size}) for tokenizer {spec.name}")
        self.kept = kept
        self.indices = indices.astype(np.int64)
        self.coarse = check_coarse(spec, self.coarse, self.grid_h, self.grid_w)
        if self.dc is not None:
            from link.dc import check_dc

            if self.coarse is None:
                raise InvalidFrame("block means (dc) ride with the coarse layer; this frame has none")
            self.dc = check_dc(self.dc, self.coarse.shape[1:])
        if self.frame_type not in (FRAME_KEY, FRAME_DELTA):
            raise InvalidFrame(f"frame_type must be one of {FRAME_TYPES}, got {self.frame_type!r}")
        if (self.frame_type == FRAME_DELTA) != (self.ref_counter is not None):
            raise InvalidFrame("a delta frame needs ref_counter, and only a delta frame has one")
        if self.frame_type == FRAME_DELTA and self.coarse is not None:
            raise InvalidFrame("a delta frame carries no coarse layer: the cloud takes its reference's")
        if self.ref_counter is not None:
            _check_int("ref_counter", self.ref_counter, 0, U32)
            if self.ref_counter >= self.counter:
                raise InvalidFrame(f"reference {self.ref_counter} is not older than frame {self.counter}")
        if not spec.layered and (self.coarse is not None or self.frame_type != FRAME_KEY):
            raise InvalidFrame(f"tokenizer {spec.name} has one layer: no coarse layer or frame types (wire v1)")

    @property
    def layered(self) -> bool:
        return get_tokenizer(self.tokenizer_id).layered

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.header_tuple() == other.header_tuple()
            and np.array_equal(self.kept, other.kept)
            and np.array_equal(self.indices, other.indices)
            and _same_coarse(self.coarse, other.coarse)
            and _same_coarse(self.dc, other.dc)
        )

    def header_tuple(self) -> tuple[int | None, ...]:
        return (self.device_id, self.counter, self.capture_ms, self.width, self.height,
                self.tokenizer_id, self.grid_h, self.grid_w, self.frame_type, self.ref_counter)

    @property
    def n_positions(self) -> int:
        return self.grid_h * self.grid_w

    def index_grid(self) -> np.ndarray:
        """(grid_h, grid_w) int64 grid of indices, -1 where masked."""
        grid = np.full(self.kept.shape, -1, dtype=np.int64)
        grid[self.kept] = self.indices
        return grid

    @classmethod
    def from_index_grid(cls, grid: np.ndarray, kept: np.ndarray, **header: object) -> Frame:
        """Build a frame from a full index grid and a kept map (the edge's natural form)."""
        kept = np.asarray(kept, dtype=bool)
        grid = np.asarray(grid)
        return cls(kept=kept, indices=grid[kept], grid_h=kept.shape[0], grid_w=kept.shape[1], **header)  # type: ignore[arg-type]


@dataclass(eq=False)
class ReceivedFrame:
    """A frame as the cloud got it. ``kept`` is False and ``lost`` True where a fragment is missing.

    ``capture_ms`` is None when the first fragment (which carries the capture time and image
    size) was lost; width and height then fall back to the grid times the tokenizer factor.
    ``fragments_total`` is exact when ``complete``; otherwise it is fragments received plus the
    number of lost gaps, a lower bound (fragments carry slices, not a count, to save header bytes).
    """

    device_id: int
    counter: int
    capture_ms: int | None
    width: int
    height: int
    tokenizer_id: int
    grid_h: int
    grid_w: int
    kept: np.ndarray
    indices: np.ndarray
    lost: np.ndarray
    fragments_received: int
    fragments_total: int
    complete: bool
    wire_bytes: int = 0
    first_seen: float = field(default=0.0, compare=False)
    # wire v2: coarse levels (C, hc, wc) with ``coarse_lost`` (hc, wc) True where no coarse
    # fragment arrived (levels there are 0); None when no coarse fragment arrived at all.
    coarse: np.ndarray | None = None
    coarse_lost: np.ndarray | None = None
    frame_type: int = FRAME_KEY
    ref_counter: int | None = None
    dc: np.ndarray | None = None  # (3, dh, dw) quantised block means; None when none were sent
    dc_lost: np.ndarray | None = None  # (dh, dw) True where their fragment did not arrive

    def index_grid(self) -> np.ndarray:
        """(grid_h, grid_w) int64 grid: the index where known, -1 where masked or lost."""
        grid = np.full(self.kept.shape, -1, dtype=np.int64)
        grid[self.kept] = self.indices
        return grid

    @property
    def lost_fraction(self) -> float:
        return float(self.lost.mean())

    def to_frame(self) -> Frame:
        """The sent Frame; only meaningful when ``complete`` (InvalidFrame otherwise)."""
        if not self.complete or self.capture_ms is None:
            raise InvalidFrame("frame is incomplete; positions were lost")
        if self.coarse_lost is not None and self.coarse_lost.any():
            raise InvalidFrame("frame is incomplete; coarse cells were lost")
        return Frame(self.device_id, self.counter, self.capture_ms, self.width, self.height,
                     self.tokenizer_id, self.grid_h, self.grid_w, self.kept, self.indices,
                     self.coarse, self.frame_type, self.ref_counter, self.dc)


SCALES = (1, 2, 4)


def frame_scale(frame: Frame | ReceivedFrame) -> int:
    """How much the edge shrank the picture before tokenizing it: 1, 2 or 4.

    Under a budget too small for even the coarse layer of the full picture, the edge codes the
    picture at half or quarter size; the frame info still names the capture size, and the grid
    is that of the shrunk picture. The scale is the one whose grid matches (no header bit)."""
    f = get_tokenizer(frame.tokenizer_id).factor
    for s in SCALES:
        if (frame.grid_h, frame.grid_w) == (_ceil(_ceil(frame.height, s), f), _ceil(_ceil(frame.width, s), f)):
            return s
    return 1


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _same_coarse(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def check_coarse(spec: TokenizerSpec, coarse: object, grid_h: int, grid_w: int) -> np.ndarray | None:
    """Validate a coarse level array for ``spec`` and a fine grid; returns it as int64 (or None)."""
    if coarse is None:
        return None
    if not spec.layered:
        raise InvalidFrame(f"tokenizer {spec.name} has no coarse layer")
    arr = np.asarray(coarse)
    shape = (len(spec.coarse_levels), *spec.coarse_grid(grid_h, grid_w))
    if arr.shape != shape or (arr.size and arr.dtype.kind not in "ui"):
        raise InvalidFrame(f"coarse must be an integer array of shape {shape}, got {arr.dtype} {arr.shape}")
    levels = np.asarray(spec.coarse_levels).reshape(-1, 1, 1)
    if arr.size and ((arr < 0).any() or (arr >= levels).any()):
        raise InvalidFrame(f"coarse levels must lie in [0, L) per channel, L = {spec.coarse_levels}")
    return arr.astype(np.int64)
