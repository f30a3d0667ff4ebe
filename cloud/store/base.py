"""The store interface: what the worker writes and what the dashboard reads.

Two halves. The *write* half is the worker's: durable staging of authenticated fragments (so a
fragment's MQTT message can be acknowledged as soon as it is on disk, whichever worker of the
shared group it reached), claiming frames that are ready (complete, or older than the
reassembly timeout) under a lease, and the idempotent ``put_frame`` keyed by (device, counter).
The *read* half (``list_devices``, ``list_frames``, ``get_frame``, ``frame_paths``,
``device_stats``, ``list_quarantine``) is a stable API for the dashboard: plain dataclasses, no
SQL outside the backend.

The quarantine is bounded by a ``QuarantinePolicy`` (per-entry cap, entry and byte quota, oldest
evicted), the same for every backend; ``quarantine_usage`` reports what it holds and costs.

Errors: ``StoreFull`` (disk or size cap hit; nothing half-written, retry after recovery) and
``StoreUnavailable`` (locked or unreachable beyond the busy timeout); both are ``StoreError``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from link.errors import LinkError
from link.tokenizers import get_tokenizer

if TYPE_CHECKING:
    from cloud.config import QuarantineConfig


class StoreError(Exception):
    """The store could not complete an operation; nothing was partially written."""

    reason = "store"


class StoreFull(StoreError):
    """The disk (or the configured size cap) is full; retry once space is freed."""

    reason = "disk_full"


class StoreUnavailable(StoreError):
    """The database is locked or unreachable beyond the busy timeout."""

    reason = "unavailable"


@dataclass(frozen=True)
class StagedFragment:
    """One authenticated fragment as the worker stages it (payload: the wire bytes, still sealed)."""

    device_id: int
    counter: int
    slice_start: int
    slice_len: int
    n_positions: int  # grid_h * grid_w: the frame is complete when staged slices cover it
    payload: bytes
    received_at: float  # unix seconds
    layer: int = 0  # wire v2 sends a coarse (1) and a fine (0) layer whose slices may start alike


@dataclass(frozen=True)
class Claim:
    """A frame handed to one worker: its staged fragments, to assemble, restore and store."""

    device_id: int
    counter: int
    fragments: list[bytes]
    first_seen: float
    complete: bool  # staged slices cover the grid (else it is a timed-out partial)

    @property
    def key(self) -> tuple[int, int]:
        return (self.device_id, self.counter)


@dataclass
class FrameRecord:
    """One stored frame's metadata (the dashboard's row)."""

    device_id: int
    counter: int
    capture_ms: int | None  # None when the fragment carrying it was lost
    received_at: float  # unix seconds the first fragment arrived
    stored_at: float
    tokenizer_id: int
    width: int
    height: int
    grid_h: int
    grid_w: int
    wire_bytes: int
    bpp: float  # wire bits per image pixel
    kept_ratio: float  # kept (sent) positions / all positions
    lost_ratio: float  # positions whose fragment never arrived / all positions
    fragments_received: int
    fragments_total: int
    complete: bool
    restore_ms: float
    psnr: float | None = None  # only when the original is known (demo, benchmarks)
    worker: str = ""
    frame_type: int = 0  # link.frame.FRAME_KEY (coded alone) or FRAME_DELTA (against ref_counter)
    ref_counter: int | None = None
    # A delta frame whose reference was missing or did not fit: restored without it (coarse layer
    # unknown everywhere), so what it shows is the restorer's guess, not the camera's scene.
    degraded: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.device_id, self.counter)


@dataclass(frozen=True)
class FramePaths:
    image: Path  # reconstruction, PNG
    mask: Path  # reconstruction with generated tokens tinted (masked: blue, lost: red), PNG


@dataclass
class DeviceSummary:
    """A device with its last-seen time and link statistics."""

    device_id: int
    first_seen: float
    last_seen: float  # last authenticated fragment
    frames: int
    complete_frames: int
    wire_bytes: int
    fragments_received: int
    fragments_total: int
    mean_kept_ratio: float
    mean_lost_ratio: float
    mean_bpp: float
    duplicates: int
    rejects: int  # quarantined inputs naming this device id (the id is unauthenticated there)
    last_counter: int | None

    @property
    def fragment_loss(self) -> float:
        if not self.fragments_total:
            return 0.0
        return 1.0 - self.fragments_received / self.fragments_total


@dataclass
class QuarantineRecord:
    id: int
    received_at: float
    reason: str
    device_id: int | None
    counter: int | None
    detail: str
    size: int  # payload bytes kept (fetch them with ``quarantine_payload``)
    original_size: int | None = None  # bytes received; more than ``size`` when the entry was capped


@dataclass(frozen=True)
class QuarantineUsage:
    """What the quarantine holds now, and what its bounds have cost since the store was made."""

    entries: int
    bytes: int  # payload bytes kept
    truncated: int = 0  # entries whose payload was cut to max_entry_bytes (lifetime total)
    evicted: int = 0  # entries dropped, oldest first, to stay within the quota (lifetime total)


@dataclass(frozen=True)
class QuarantinePolicy:
    """The bounds of the quarantine, shared by every backend (pure: no SQL here).

    Quarantined input is unauthenticated, so its sender picks its size and rate: 16 junk
    messages of 1 MB once filled a store's disk and stalled every camera's frames. Each entry
    keeps at most ``max_entry_bytes`` of its payload (enough to read the header and the start
    of the body, the useful part for diagnosis) with the size received recorded; the whole
    quarantine keeps at most ``max_entries`` entries and ``max_total_bytes`` payload bytes,
    the oldest evicted first, so the newest evidence is what remains. A backend calls ``clip``
    before it writes and ``evictions`` after, inside the same transaction, and counts both in
    its ``QuarantineUsage``.
    """

    max_entry_bytes: int = 4096
    max_total_bytes: int = 16 * 1024 * 1024
    max_entries: int = 10_000

    def __post_init__(self) -> None:
        if self.max_entry_bytes < 0 or self.max_total_bytes < self.max_entry_bytes or self.max_entries < 1:
            raise ValueError(f"bad quarantine bounds: {self}")

    @classmethod
    def from_config(cls, cfg: QuarantineConfig) -> QuarantinePolicy:
        return cls(cfg.max_entry_bytes, cfg.max_total_bytes, cfg.max_entries)

    def clip(self, payload: bytes) -> tuple[bytes, bool]:
        """(the payload bytes to keep, whether that is fewer than were received)."""
        payload = bytes(payload)
        if len(payload) <= self.max_entry_bytes:
            return payload, False
        return payload[: self.max_entry_bytes], True

    def evictions(self, entries: int, total_bytes: int, oldest_sizes: Iterable[int]) -> int:
        """How many of the oldest entries to drop so that both bounds hold; ``oldest_sizes``: the
        kept payload sizes, oldest first (read lazily, only as far as needed)."""
        n = 0
        sizes = iter(oldest_sizes)
        while entries - n > self.max_entries or total_bytes > self.max_total_bytes:
            size = next(sizes, None)
            if size is None:
                break
            total_bytes -= size
            n += 1
        return n


@dataclass(frozen=True)
class ReferenceRecord:
    """What a key frame leaves for the delta frames coded against it (see ``cloud.references``):
    its restored fine token grid and the coarse levels that arrived."""

    device_id: int
    counter: int
    tokenizer_id: int
    grid_h: int
    grid_w: int
    width: int
    height: int
    tokens: np.ndarray  # (grid_h, grid_w) int64, every cell (sent or restored)
    coarse: np.ndarray  # (C, hc, wc) int64 levels; 0 where not known
    coarse_known: np.ndarray  # (hc, wc) bool
    stored_at: float = 0.0
    # (grid_h, grid_w) bool: cells whose token came over the link (the rest were restored);
    # None for a reference stored before this map existed
    sent: np.ndarray | None = None
    # (3, dh, dw) int64 quantised 32x32 block means of the key frame (link.dc), -1 where their
    # fragment was lost; None when the key frame sent none (or the reference predates them)
    dc: np.ndarray | None = None

    def dc_blob(self) -> bytes | None:
        """The block means as u8 (255 where unknown; every level is below 65), or None."""
        if self.dc is None:
            return None
        return np.where(np.asarray(self.dc) < 0, DC_UNKNOWN, self.dc).astype(np.uint8).tobytes()

    def blobs(self) -> tuple[bytes, bytes, bytes, bytes | None]:
        """(tokens as u16 LE, coarse levels as u8, coarse-known map as u8, sent map as u8 or None):
        what a backend stores."""
        return (np.asarray(self.tokens, "<u2").tobytes(), np.asarray(self.coarse, np.uint8).tobytes(),
                np.asarray(self.coarse_known, np.uint8).tobytes(),
                None if self.sent is None else np.asarray(self.sent, np.uint8).tobytes())

    @classmethod
    def from_blobs(cls, device_id: int, counter: int, tokenizer_id: int, grid_h: int, grid_w: int, width: int,
                   height: int, tokens: bytes, coarse: bytes, coarse_known: bytes,
                   stored_at: float = 0.0, sent: bytes | None = None, dc: bytes | None = None) -> ReferenceRecord:
        """The inverse of ``blobs``; StoreError when the bytes do not fit the shapes."""
        try:
            t = np.frombuffer(bytes(tokens), "<u2").astype(np.int64).reshape(grid_h, grid_w)
            k = np.frombuffer(bytes(coarse_known), np.uint8).astype(bool)
            hc, wc = get_tokenizer(tokenizer_id).coarse_grid(grid_h, grid_w)
            c = np.frombuffer(bytes(coarse), np.uint8).astype(np.int64).reshape(-1, hc, wc)
            k = k.reshape(hc, wc)
            m = None if sent is None else np.frombuffer(bytes(sent), np.uint8).astype(bool).reshape(grid_h, grid_w)
            means = None
            if dc is not None:
                means = np.frombuffer(bytes(dc), np.uint8).astype(np.int64).reshape(3, -(-hc // 2), -(-wc // 2))
                means[means == DC_UNKNOWN] = -1
        except (ValueError, LinkError) as exc:
            raise StoreError(f"reference {device_id}/{counter}: stored arrays do not fit their grid ({exc})") from None
        return cls(device_id, counter, tokenizer_id, grid_h, grid_w, width, height, t, c, k, stored_at, m, means)


DC_UNKNOWN = 255  # a reference's block mean that did not arrive, as stored
REFERENCES_KEPT = 8  # references kept per device (the newest); a delta naming an older one is degraded


@dataclass(frozen=True)
class SessionRecord:
    """A worker's MQTT session as the workers see it in the shared store (see ``cloud.sessions``).

    The store is where workers on different hosts meet, so it is where a client-id clash is
    seen at start-up and where a dead worker's session is found (its heartbeat stops) and
    adopted by a live one, which drains and ends it.
    """

    client_id: str
    owner: str  # the worker id holding it now (the adopter's once adopted)
    host: str
    pid: int
    heartbeat: float  # unix seconds
    adopted: bool = False


class Store(abc.ABC):
    """Backend interface; see the module docstring. Implementations must be process-safe."""

    name = "store"

    # -- worker: staging and claiming ------------------------------------------------------------
    @abc.abstractmethod
    def stage(self, fragments: list[StagedFragment]) -> list[bool]:
        """Durably stage fragments in one transaction; per fragment, False if already stored/staged."""

    @abc.abstractmethod
    def ready(self, now: float, timeout_s: float) -> tuple[int, float | None]:
        """(frames ready and unclaimed, unix time the oldest of them became ready)."""

    @abc.abstractmethod
    def claim(self, now: float, *, timeout_s: float, owner: str, lease_s: float, limit: int) -> list[Claim]:
        """Atomically take up to ``limit`` ready frames (oldest first) for ``owner`` until ``now + lease_s``."""

    @abc.abstractmethod
    def release(self, keys: list[tuple[int, int]], owner: str) -> None:
        """Give claimed frames back (e.g. after a failed restore) so any worker retries them."""

    # -- worker: results ----------------------------------------------------------------------------
    @abc.abstractmethod
    def put_frame(self, record: FrameRecord, image_png: bytes, mask_png: bytes) -> bool:
        """Store a frame and its PNGs; a second put of the same (device, counter) is a no-op -> False."""

    quarantine_policy: QuarantinePolicy = QuarantinePolicy()

    @abc.abstractmethod
    def quarantine(self, reason: str, device_id: int | None, payload: bytes, detail: str, *,
                   counter: int | None = None, now: float | None = None,
                   drop_staged: tuple[int, int] | None = None) -> int:
        """Keep rejected input for inspection within ``quarantine_policy``; ``drop_staged`` also
        discards that frame's staging."""

    def quarantine_usage(self) -> QuarantineUsage:
        """Entries and bytes held, and the policy's lifetime counts. This default counts what
        ``list_quarantine`` returns and knows no lifetime counts; backends keep their own tally."""
        rows = self.list_quarantine(limit=self.quarantine_policy.max_entries + 1)
        return QuarantineUsage(len(rows), sum(r.size for r in rows))

    @abc.abstractmethod
    def count_duplicates(self, counts: dict[int, int]) -> None:
        """Add device id -> duplicate deliveries to the per-device statistics."""

    @abc.abstractmethod
    def set_psnr(self, device_id: int, counter: int, psnr: float) -> None:
        """Record the PSNR of a stored frame once the original is known (demo, benchmarks)."""

    # -- reads (dashboard) ----------------------------------------------------------------------------
    @abc.abstractmethod
    def has_frame(self, device_id: int, counter: int) -> bool: ...

    @abc.abstractmethod
    def get_frame(self, device_id: int, counter: int) -> FrameRecord | None: ...

    @abc.abstractmethod
    def list_frames(self, device_id: int | None = None, *, limit: int = 50, offset: int = 0,
                    since: float | None = None) -> list[FrameRecord]:
        """Newest first (by received time); ``since``: only frames received at or after it."""

    @abc.abstractmethod
    def count_frames(self, device_id: int | None = None) -> int: ...

    @abc.abstractmethod
    def frame_paths(self, device_id: int, counter: int) -> FramePaths | None:
        """Absolute PNG paths of a stored frame, or None if it is not stored."""

    @abc.abstractmethod
    def list_devices(self) -> list[DeviceSummary]: ...

    @abc.abstractmethod
    def device_stats(self, device_id: int) -> DeviceSummary | None: ...

    @abc.abstractmethod
    def list_quarantine(self, *, limit: int = 50, reason: str | None = None) -> list[QuarantineRecord]: ...

    @abc.abstractmethod
    def quarantine_payload(self, quarantine_id: int) -> bytes | None: ...

    @abc.abstractmethod
    def quarantine_counts(self) -> dict[str, int]:
        """reason -> quarantined inputs."""

    @abc.abstractmethod
    def pending_frames(self) -> int:
        """Frames staged but not yet stored (the worker's queue depth)."""

    # -- references of delta frames (cloud.references) --------------------------------------------------
    @abc.abstractmethod
    def put_reference(self, ref: ReferenceRecord) -> bool:
        """Keep a key frame's reference (a second put of the same key is a no-op -> False); only the
        newest ``REFERENCES_KEPT`` of a device are kept."""

    @abc.abstractmethod
    def get_reference(self, device_id: int, counter: int) -> ReferenceRecord | None: ...

    # -- workers' MQTT sessions (cloud.sessions) ------------------------------------------------------
    @abc.abstractmethod
    def put_session(self, rec: SessionRecord) -> None:
        """Register (or re-register) a client id as held by ``rec.owner``."""

    @abc.abstractmethod
    def get_session(self, client_id: str) -> SessionRecord | None: ...

    @abc.abstractmethod
    def heartbeat_session(self, client_id: str, owner: str, now: float) -> bool:
        """Refresh ``owner``'s hold on ``client_id``; False when it is no longer registered to ``owner``."""

    @abc.abstractmethod
    def adopt_stale_session(self, owner: str, host: str, pid: int, now: float,
                            stale_s: float) -> SessionRecord | None:
        """Atomically hand one session whose heartbeat is older than ``stale_s`` to ``owner``.

        Returns the record as it was (the dead holder), or None; two adopters never get the same one.
        """

    @abc.abstractmethod
    def forget_session(self, client_id: str, owner: str) -> None:
        """Drop the registration if ``owner`` still holds it (the session was ended at the broker)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
