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
from link import dc
from link.frame import ReceivedFrame, frame_scale
from link.tokenizers import get_tokenizer


class Codec(Protocol):
    """What the worker needs of ``models.codec.TokenCodec`` (one-layer tokenizers). Two-layer
    ones (``models.codec2.TokenCodec2``) take the coarse layer too: ``reconstruct(grids, known,
    coarse_levels, coarse_known, sizes, seed=)``."""

    def reconstruct(self, *args: object, **kwargs: object) -> tuple[list[np.ndarray], list[np.ndarray]]: ...


def reconstruct_frames(codec: Codec, frames: list[ReceivedFrame], seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Restore and decode frames of one tokenizer id, at the size each was captured at.

    A frame the edge shrank to fit its budget (``link.frame.frame_scale`` > 1) is decoded at its
    grid's size and resized up to the capture size; its coarse layer, when it has one, goes along."""
    grids = [np.where(f.kept, f.index_grid(), 0) for f in frames]
    known = [f.kept for f in frames]
    scales = [frame_scale(f) for f in frames]
    sizes = [(-(-f.height // s), -(-f.width // s)) for f, s in zip(frames, scales)]
    if get_tokenizer(frames[0].tokenizer_id).layered:
        coarse, coarse_known = [], []
        for f in frames:
            spec = get_tokenizer(f.tokenizer_id)
            shape = (len(spec.coarse_levels), *spec.coarse_grid(f.grid_h, f.grid_w))
            if f.coarse is None:
                coarse.append(np.zeros(shape, np.int64))
                coarse_known.append(np.zeros(shape[1:], bool))
            else:
                coarse.append(f.coarse)
                coarse_known.append(~f.coarse_lost if f.coarse_lost is not None else np.ones(shape[1:], bool))
        tokens, images = codec.reconstruct(grids, known, coarse, coarse_known, sizes, seed=seed)
        # pull each 32x32 block's mean colour to the one the edge measured (link.dc)
        images = [img if f.dc is None else dc.correct(img, f.dc, None if f.dc_lost is None else ~f.dc_lost)
                  for img, f in zip(images, frames)]
    else:
        tokens, images = codec.reconstruct(grids, known, sizes, seed=seed)
    images = [img if s == 1 else resize(img, f.width, f.height) for img, f, s in zip(images, frames, scales)]
    return tokens, images


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


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
        restore_ms=restore_ms, worker=worker, frame_type=rf.frame_type, ref_counter=rf.ref_counter,
    )


def restore_batch(frames: list[ReceivedFrame], codecs: Mapping[int, Codec], *, seed: int, worker: str,
                  clock=time.time, inputs: list[ReceivedFrame] | None = None) -> list[Restored]:
    """Restore and decode ``frames`` (tokenizer ids must be in ``codecs``); same order out.

    ``inputs``, when given, are what the codec restores in their place (delta frames resolved
    against their reference, ``cloud.references``); records and masks still describe ``frames``,
    what came over the link."""
    inputs = frames if inputs is None else inputs
    if len(inputs) != len(frames):
        raise ValueError(f"{len(inputs)} inputs for {len(frames)} frames")
    out: list[Restored | None] = [None] * len(frames)
    groups: dict[int, list[int]] = {}
    for i, rf in enumerate(frames):
        groups.setdefault(rf.tokenizer_id, []).append(i)
    for tid, idx in groups.items():
        codec = codecs[tid]
        t0 = time.perf_counter()
        tokens, images = reconstruct_frames(codec, [inputs[i] for i in idx], seed)
        per_frame_ms = (time.perf_counter() - t0) * 1000 / len(idx)  # the batch's cost, shared
        now = clock()
        for i, tok, img in zip(idx, tokens, images, strict=True):
            rf = frames[i]
            out[i] = Restored(to_record(rf, restore_ms=per_frame_ms, worker=worker, now=now), encode_png(img),
                              encode_png(mask_overlay(img, rf.kept, rf.lost)), tok, img)
    return [r for r in out if r is not None]
