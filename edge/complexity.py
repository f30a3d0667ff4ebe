"""Local structure complexity per token patch: how much detail an 8x8 patch carries.

Gradient energy and intensity variance per patch, each scaled by a robust per-image percentile
with an absolute floor (so a flat sky does not get its sensor noise stretched to 1), averaged,
clipped to [0, 1]. Detailed patches are the ones a restorer cannot guess from their neighbours.
"""

from __future__ import annotations

import cv2
import numpy as np

# Floors in 8-bit grey levels: below these a patch is "flat" whatever the rest of the image does.
GRADIENT_FLOOR = 24.0
STD_FLOOR = 12.0
PERCENTILE = 98.0


def pad_to_multiple(image: np.ndarray, factor: int) -> np.ndarray:
    """Pad H and W up to multiples of ``factor`` by edge replication (the encoder's convention)."""
    h, w = image.shape[:2]
    ph, pw = (-h) % factor, (-w) % factor
    if not (ph or pw):
        return image
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="edge")


def robust_unit(values: np.ndarray, floor: float = 0.0, percentile: float = PERCENTILE) -> np.ndarray:
    """Scale to [0, 1] by the given percentile (at least ``floor``), clipping the top."""
    scale = max(float(np.percentile(values, percentile)) if values.size else 0.0, floor, 1e-12)
    return np.clip(values / scale, 0.0, 1.0).astype(np.float32)


def patch_mean(x: np.ndarray, factor: int) -> np.ndarray:
    h, w = x.shape
    return x.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def complexity_map(image: np.ndarray, factor: int = 8) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (ceil(H/f), ceil(W/f)) in [0, 1]."""
    gray = cv2.cvtColor(pad_to_multiple(image, factor), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    # Sobel's 3x3 kernel has gain 4 per axis; divide so the floor reads in grey levels per pixel.
    grad = np.sqrt(patch_mean(gx * gx + gy * gy, factor)) / 4.0
    mean = patch_mean(gray, factor)
    std = np.sqrt(np.maximum(patch_mean(gray * gray, factor) - mean * mean, 0.0))
    return 0.5 * (robust_unit(grad, GRADIENT_FLOOR) + robust_unit(std, STD_FLOOR))
