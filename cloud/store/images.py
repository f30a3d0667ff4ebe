"""PNG rendering and atomic file writes for stored frames.

The mask overlay shows where the picture is invented: cells the edge kept are shown as decoded,
masked cells are tinted blue, lost cells (their fragment never came) red. Files are written to a
temporary name in the target folder, fsynced, then renamed, so a reader (the dashboard) never
sees half a PNG and a crash leaves at most a stray ``.tmp`` file.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cloud.store.base import StoreError, StoreFull

MASKED_TINT = np.array([40, 90, 255], dtype=np.float32)
LOST_TINT = np.array([255, 40, 40], dtype=np.float32)
TINT_ALPHA = 0.45


def encode_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def mask_overlay(rgb: np.ndarray, kept: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """``rgb`` with each token cell tinted by its state; ``kept``/``lost`` are (grid_h, grid_w) bool."""
    h, w = rgb.shape[:2]
    gh, gw = kept.shape
    # nearest-cell lookup handles images whose size is not an exact multiple of the grid
    ys = np.minimum(np.arange(h) * gh // h, gh - 1)
    xs = np.minimum(np.arange(w) * gw // w, gw - 1)
    cell_lost = lost[ys][:, xs]
    cell_masked = ~kept[ys][:, xs] & ~cell_lost
    out = rgb.astype(np.float32)
    out[cell_masked] = (1 - TINT_ALPHA) * out[cell_masked] + TINT_ALPHA * MASKED_TINT
    out[cell_lost] = (1 - TINT_ALPHA) * out[cell_lost] + TINT_ALPHA * LOST_TINT
    return out.round().clip(0, 255).astype(np.uint8)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via tmp + fsync + rename; disk full raises StoreFull."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(f"no space left writing {path}") from exc
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
