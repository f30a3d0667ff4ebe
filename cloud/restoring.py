"""One restore batch: received frames in, stored-ready records and PNGs out (no I/O here).

Frames of one batch may come from many devices and carry different grids; they are grouped by
tokenizer id and each group goes through its codec's ``reconstruct`` (restore, decode) in one call, so
the transformer sees every window of every frame in one batch. Kept tokens are never changed
(the codec guarantees it); masked and lost positions are both regenerated.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cloud.store.base import FrameRecord
from cloud.store.images import encode_png, mask_overlay
from link.frame import ReceivedFrame


class Codec(Protocol):
    """What the worker needs of ``models.codec.TokenCodec``."""

    def reconstruct(self, grids: list[np.ndarray], known: list[np.ndarray], sizes: list[tuple[int, int]],
                    seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]: ...


@dataclass
class Restored:
    record: FrameRecord
    image_png: bytes
    mask_png: bytes
    tokens: np.ndarray  # the full restored index grid
    image: np.ndarray  # uint8 HxWx3


def to_record(rf: ReceivedFrame, *, restore_ms: float, worker: str, now: float) -> FrameRecord:
    n = rf.grid_h * rf.grid_w
    return FrameRecord(
        device_id=rf.device_id, counter=rf.counter, capture_ms=rf.capture_ms, received_at=rf.first_seen,
        stored_at=now, tokenizer_id=rf.tokenizer_id, width=rf.width, height=rf.height, grid_h=rf.grid_h,
        grid_w=rf.grid_w, wire_bytes=rf.wire_bytes, bpp=rf.wire_bytes * 8 / (rf.width * rf.height),
        kept_ratio=float(rf.kept.sum()) / n, lost_ratio=float(rf.lost.sum()) / n,
        fragments_received=rf.fragments_received, fragments_total=rf.fragments_total, complete=rf.complete,
        restore_ms=restore_ms, worker=worker,
    )


def restore_batch(frames: list[ReceivedFrame], codecs: Mapping[int, Codec], *, seed: int, worker: str,
                  clock=time.time) -> list[Restored]:
    """Restore and decode ``frames`` (tokenizer ids must be in ``codecs``); same order out."""
    out: list[Restored | None] = [None] * len(frames)
    groups: dict[int, list[int]] = {}
    for i, rf in enumerate(frames):
        groups.setdefault(rf.tokenizer_id, []).append(i)
    for tid, idx in groups.items():
        codec = codecs[tid]
        t0 = time.perf_counter()
        grids = [np.where(frames[i].kept, frames[i].index_grid(), 0) for i in idx]
        tokens, images = codec.reconstruct(grids, [frames[i].kept for i in idx],
                                           [(frames[i].height, frames[i].width) for i in idx], seed=seed)
        per_frame_ms = (time.perf_counter() - t0) * 1000 / len(idx)  # the batch's cost, shared
        now = clock()
        for i, tok, img in zip(idx, tokens, images, strict=True):
            rf = frames[i]
            out[i] = Restored(to_record(rf, restore_ms=per_frame_ms, worker=worker, now=now), encode_png(img),
                              encode_png(mask_overlay(img, rf.kept, rf.lost)), tok, img)
    return [r for r in out if r is not None]
