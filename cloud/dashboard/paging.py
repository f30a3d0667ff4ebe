"""Keyset paging over the store's newest-first frame list: ``before`` cursors, stable under inserts.

The store lists frames ordered by (received_at DESC, device_id ASC, counter DESC) with an
offset, and offers no "before" filter. Offsets shift as frames arrive, so a page link built
from an offset would repeat or skip frames on a busy fleet; a cursor names the last frame
shown instead. The first frame after the cursor is found by binary search over offsets with
one-row reads (the order is monotone in the key), which is O(log n) small queries; the page is
then re-filtered by key, so a frame stored during the search is never shown twice.

A cursor is ``"<received_at>:<device_id>:<counter>"`` (what the API returns as ``next_before``),
or a plain unix time meaning "frames received strictly before then".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cloud.store import FrameRecord, Store

SortKey = tuple[float, float, float]


class BadCursor(ValueError):
    """A ``before`` value that is neither a unix time nor a ``time:device:counter`` cursor."""


@dataclass(frozen=True)
class Cursor:
    received_at: float
    device_id: float = math.inf  # inf: a plain time, every frame received at it is excluded
    counter: float = -math.inf

    @classmethod
    def parse(cls, text: str) -> Cursor:
        parts = text.split(":")
        try:
            if len(parts) == 1:
                cursor = cls(float(parts[0]))
            elif len(parts) == 3:
                cursor = cls(float(parts[0]), int(parts[1]), int(parts[2]))
            else:
                raise ValueError
        except ValueError:
            raise BadCursor(f"before={text!r}: expected a unix time or <received_at>:<device>:<counter>") from None
        if not math.isfinite(cursor.received_at):
            raise BadCursor(f"before={text!r}: time must be finite")
        return cursor

    @classmethod
    def after(cls, frame: FrameRecord) -> Cursor:
        return cls(frame.received_at, frame.device_id, frame.counter)

    def __str__(self) -> str:
        return f"{self.received_at!r}:{int(self.device_id)}:{int(self.counter)}"

    def key(self) -> SortKey:
        return (-self.received_at, self.device_id, -self.counter)


def sort_key(f: FrameRecord) -> SortKey:
    return (-f.received_at, float(f.device_id), -float(f.counter))


def _first_after(store: Store, device_id: int | None, cursor: Cursor) -> int:
    """Smallest offset whose frame sorts after the cursor."""
    lo, hi = 0, store.count_frames(device_id)
    ck = cursor.key()
    while lo < hi:
        mid = (lo + hi) // 2
        row = store.list_frames(device_id, limit=1, offset=mid)
        if not row:
            hi = mid
        elif sort_key(row[0]) > ck:
            hi = mid
        else:
            lo = mid + 1
    return lo


def page(store: Store, device_id: int | None, limit: int,
         before: Cursor | None = None) -> tuple[list[FrameRecord], Cursor | None]:
    """Up to ``limit`` frames newest first (after ``before``), and the cursor of the next page."""
    if before is None:
        frames = store.list_frames(device_id, limit=limit + 1)
    else:
        # a few extra rows: frames stored during the search shift the offset by as many
        slack = 4
        offset = max(0, _first_after(store, device_id, before) - slack)
        ck = before.key()
        frames = [f for f in store.list_frames(device_id, limit=limit + 1 + 2 * slack, offset=offset)
                  if sort_key(f) > ck]
    more = len(frames) > limit
    frames = frames[:limit]
    return frames, (Cursor.after(frames[-1]) if more and frames else None)
