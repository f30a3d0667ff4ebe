"""Delta frames meet their reference: the key frame's restored tokens and coarse layer.

A delta frame (wire v2) carries fine tokens only where the camera saw the picture change; for
every other cell, and for the whole coarse layer, it names a reference: an earlier key frame of
the same device. After a key frame is stored the worker keeps its restored token grid and the
coarse levels that arrived (``reference_of`` -> ``Store.put_reference``, in the store so a
restarted or another worker finds it). ``resolve`` builds the frame the codec restores:

* reference found and of the same tokenizer and grid: the delta's tokens where it sent them, the
  key frame's where the key frame sent them (also where a lost delta fragment left a hole: a lost
  packet costs the change, not the frame), and the reference's coarse layer and block means
  (``link.dc``) except where the delta's tokens show the picture moved; the restorer fills the
  remaining cells as it did for the key frame (only tokens that came over the link are trusted:
  a restored guess is not promoted to a known token);
* reference missing (never arrived, pruned, or the counter names a delta frame) or of another
  grid: never a wrong or nearby one; the delta is restored alone, its coarse layer unknown
  everywhere, and the frame is marked degraded.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from cloud.store.base import ReferenceRecord
from link.frame import FRAME_DELTA, ReceivedFrame
from link.tokenizers import get_tokenizer

log = logging.getLogger(__name__)

# A delta frame's own tokens mark where the picture moved since its key frame; there the key
# frame's coarse layer and block means describe the old picture. Measured on pets_vtest (20
# frames, 500 B deltas against a full key frame): treating a coarse cell as unknown when any of
# its 2x2 fine cells was sent, and a block mean when a quarter of its 4x4 cells were, gave
# 23.86 dB; keeping both everywhere 22.49 dB, dropping the coarse cells only 22.92 dB.
COARSE_SHARE = 0.25
DC_SHARE = 0.25


def is_delta(rf: ReceivedFrame) -> bool:
    return rf.frame_type == FRAME_DELTA


def can_be_reference(rf: ReceivedFrame) -> bool:
    """Key frames of two-layer tokenizers: what delta frames may point at."""
    return not is_delta(rf) and get_tokenizer(rf.tokenizer_id).layered and rf.coarse is not None


def reference_of(rf: ReceivedFrame, tokens: np.ndarray, stored_at: float) -> ReferenceRecord:
    """The reference a stored key frame leaves: its restored grid and its coarse levels."""
    if rf.coarse is None:
        raise ValueError(f"frame {rf.device_id}/{rf.counter} has no coarse layer to be a reference")
    known = np.ones(rf.coarse.shape[1:], bool) if rf.coarse_lost is None else ~rf.coarse_lost
    means = None
    if rf.dc is not None:
        means = np.asarray(rf.dc, np.int64) if rf.dc_lost is None else np.where(rf.dc_lost[None], -1, rf.dc)
    return ReferenceRecord(rf.device_id, rf.counter, rf.tokenizer_id, rf.grid_h, rf.grid_w, rf.width, rf.height,
                           np.asarray(tokens, np.int64), np.where(known[None], rf.coarse, 0), known, stored_at,
                           sent=np.array(rf.kept, bool), dc=means)


def mismatch(rf: ReceivedFrame, ref: ReferenceRecord | None) -> str | None:
    """Why ``ref`` cannot serve delta frame ``rf``, or None when it can."""
    if ref is None:
        return f"reference {rf.ref_counter} not in the store"
    if ref.tokenizer_id != rf.tokenizer_id or (ref.grid_h, ref.grid_w) != (rf.grid_h, rf.grid_w):
        return (f"reference {ref.counter} is tokenizer {ref.tokenizer_id} grid {ref.grid_h}x{ref.grid_w}, the delta "
                f"tokenizer {rf.tokenizer_id} grid {rf.grid_h}x{rf.grid_w}")
    return None


def resolve(rf: ReceivedFrame, ref: ReferenceRecord | None) -> tuple[ReceivedFrame, str | None]:
    """(the frame to restore, why it is degraded or None). Key frames pass through unchanged."""
    if not is_delta(rf):
        return rf, None
    why = mismatch(rf, ref)
    if why is not None or ref is None:
        log.warning("device %d frame %d: %s; restored without it (degraded)", rf.device_id, rf.counter, why)
        return dataclasses.replace(rf, coarse=None, coarse_lost=None), why
    grid = ref.tokens.copy()
    grid[rf.kept] = rf.indices
    # Known: what came over the link, in the key frame or in this delta; the restorer fills the
    # rest again, under the key frame's coarse layer. (A reference without its sent map, from
    # before it was kept, lends every cell.)
    known = np.ones_like(rf.kept) if ref.sent is None else (ref.sent | rf.kept)
    lost_info = rf.capture_ms is None  # the fragment naming the image size was lost: the reference knows it
    # the key frame's coarse layer and block means where this delta's tokens say nothing moved
    coarse_lost = ~ref.coarse_known | changed_blocks(rf.kept, 2, ref.coarse_known.shape, COARSE_SHARE)
    dc, dc_lost = None, None
    if ref.dc is not None:
        dc = np.maximum(ref.dc, 0)
        dc_lost = (ref.dc[0] < 0) | changed_blocks(rf.kept, 4, ref.dc.shape[1:], DC_SHARE)
    return dataclasses.replace(
        rf, kept=known, indices=grid[known], lost=np.zeros_like(known),
        width=ref.width if lost_info else rf.width, height=ref.height if lost_info else rf.height,
        coarse=ref.coarse.copy(), coarse_lost=coarse_lost, dc=dc, dc_lost=dc_lost,
    ), None



def changed_blocks(kept: np.ndarray, block: int, shape: tuple[int, ...], share: float) -> np.ndarray:
    """(h, w) bool: blocks of ``block`` x ``block`` fine cells of which at least ``share`` are kept."""
    h, w = int(shape[0]), int(shape[1])
    padded = np.zeros((h * block, w * block), bool)
    gh, gw = min(kept.shape[0], h * block), min(kept.shape[1], w * block)
    padded[:gh, :gw] = kept[:gh, :gw]
    return padded.reshape(h, block, w, block).mean(axis=(1, 3)) >= share - 1e-9
