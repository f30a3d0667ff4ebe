"""Block means ("dc"): the mean colour of every 32x32 block, riding with the coarse layer.

Why: the coarse layer's few FSQ levels per 16x16 cell get layout right but not the exact mean
colour of a region; measured on val, the coarse-only picture's 16x-downscaled PSNR was 25-30 dB,
and pulling each 32x32 block's mean back to the original's lifted full-frame PSNR by about 0.8 dB.
So the edge sends the block means (a few bits each, predicted from their neighbours) and the
cloud shifts its decoded picture's block means onto them with a smooth correction field.

Values: Y = (R + 2G + B) / 4, Cb = B - G, Cr = R - G (a reversible colour transform), each
quantised with step ``STEP``: Y in [0, 32], Cb and Cr offset to [0, 64]. Grid: ceil(H/32) x
ceil(W/32), which is the coarse grid halved (rounded up); cell (i, j) travels in the coarse
fragment that carries coarse cell (2i, 2j). Pure numpy; the coder lives in link.coding2.
"""

from __future__ import annotations

import numpy as np

from link.errors import InvalidFrame

BLOCK = 32
STEP = 8.0
LEVELS = (33, 65, 65)  # Y, Cb + 32, Cr + 32
MID = (16, 32, 32)  # the prediction with no neighbour
RAW_BITS = 18  # ceil(log2(33 * 65 * 65))


def grid_for(coarse_shape: tuple[int, int]) -> tuple[int, int]:
    return -(-coarse_shape[0] // 2), -(-coarse_shape[1] // 2)


def check_dc(dc: object, coarse_shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(dc)
    shape = (3, *grid_for((int(coarse_shape[0]), int(coarse_shape[1]))))
    if arr.shape != shape or (arr.size and arr.dtype.kind not in "ui"):
        raise InvalidFrame(f"dc must be an integer array of shape {shape}, got {arr.dtype} {arr.shape}")
    top = np.asarray(LEVELS).reshape(3, 1, 1)
    if arr.size and ((arr < 0).any() or (arr >= top).any()):
        raise InvalidFrame(f"dc values must lie in [0, L) per channel, L = {LEVELS}")
    return arr.astype(np.int64)


def _pad(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.pad(image, ((0, (-h) % BLOCK), (0, (-w) % BLOCK), (0, 0)), mode="edge")


def rgb_block_means(image: np.ndarray) -> np.ndarray:
    """(dh, dw, 3) float RGB means of the 32x32 blocks of an (H, W, 3) picture (edge-padded)."""
    p = _pad(np.asarray(image))
    h, w = p.shape[:2]
    # integer sums (exact), then one division: the same values as a float mean, a few times faster
    sums = p.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).sum(axis=(1, 3), dtype=np.int64)
    return sums / float(BLOCK * BLOCK)


def block_means(image: np.ndarray) -> np.ndarray:
    """(3, dh, dw) quantised block means of an RGB uint8 picture: what the edge sends."""
    m = rgb_block_means(image)
    r, g, b = m[..., 0], m[..., 1], m[..., 2]
    y = np.clip(np.rint((r + 2 * g + b) / 4 / STEP), 0, LEVELS[0] - 1)
    cb = np.clip(np.rint((b - g) / STEP) + 32, 0, LEVELS[1] - 1)
    cr = np.clip(np.rint((r - g) / STEP) + 32, 0, LEVELS[2] - 1)
    return np.stack([y, cb, cr]).astype(np.int64)


def to_rgb(dc: np.ndarray) -> np.ndarray:
    """(3, dh, dw) quantised means -> (dh, dw, 3) float RGB means."""
    y = dc[0] * STEP
    cb, cr = (dc[1] - 32) * STEP, (dc[2] - 32) * STEP
    g = y - (cb + cr) / 4
    return np.stack([cr + g, g, cb + g], axis=-1)


def _upsample(field: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear (dh, dw, C) -> (h, w, C), cell centres at the block centres, edges held."""
    dh, dw = field.shape[:2]
    ys = (np.arange(h) + 0.5) / BLOCK - 0.5
    xs = (np.arange(w) + 0.5) / BLOCK - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, dh - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, dw - 1)
    y1, x1 = np.minimum(y0 + 1, dh - 1), np.minimum(x0 + 1, dw - 1)
    fy = np.clip(ys - y0, 0, 1)[:, None, None]
    fx = np.clip(xs - x0, 0, 1)[None, :, None]
    top = field[y0][:, x0] * (1 - fx) + field[y0][:, x1] * fx
    bot = field[y1][:, x0] * (1 - fx) + field[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def correct(image: np.ndarray, dc: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Shift ``image``'s 32x32 block means onto ``dc`` with a smooth (bilinear) correction field.

    Blocks whose means were lost (``known`` False) get no correction of their own; the field
    there is the average of the known blocks around them (normalised, so it fades out)."""
    h, w = image.shape[:2]
    diff = to_rgb(dc) - rgb_block_means(image)
    weight = np.ones(diff.shape[:2]) if known is None else np.asarray(known, dtype=np.float64)
    if not weight.any():
        return image
    num = _upsample(diff * weight[..., None], h, w)
    den = _upsample(weight[..., None], h, w)
    field = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0) * np.minimum(den, 1.0)
    return np.clip(np.rint(image.astype(np.float64) + field), 0, 255).astype(np.uint8)


def anchors(start: int, end: int, coarse_w: int, coarse_h: int) -> np.ndarray:
    """Raster indices (in the dc grid) of the dc cells whose anchor coarse cell lies in [start, end)."""
    dh, dw = grid_for((coarse_h, coarse_w))
    i, j = np.divmod(np.arange(dh * dw), dw)
    pos = 2 * i * coarse_w + 2 * j
    return np.flatnonzero((pos >= start) & (pos < end))


def predict_neighbours(cells: np.ndarray, dw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For dc cells (raster indices, ascending) of one fragment: the position in ``cells`` of the
    left, upper and upper-left cell when those travel in the same fragment, else -1."""
    cells = np.asarray(cells, dtype=np.int64)

    def look(offset: int, need_col: bool) -> np.ndarray:
        want = cells - offset
        k = np.minimum(np.searchsorted(cells, want), max(cells.size - 1, 0))
        found = (cells[k] == want) if cells.size else np.zeros(0, bool)
        if need_col:
            found &= cells % dw != 0
        return np.where(found, k, -1).astype(np.int64)

    return look(1, True), look(dw, False), look(dw + 1, True)


def med(a: int, b: int, c: int) -> int:
    """The LOCO-I median edge detector: min/max of a, b at an edge, else the plane a + b - c."""
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c
