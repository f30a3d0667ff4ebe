"""Image quality metrics shared by training, evaluation and benchmarks (numpy, no torch)."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two images of the same shape (uint8 or float on the same scale)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(peak * peak / mse)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray, peak: float = 255.0) -> float:
    """PSNR over the pixels where ``mask`` (H, W) is true; NaN when the mask is empty."""
    m = mask.astype(bool)
    if not m.any():
        return float("nan")
    d = (a.astype(np.float64) - b.astype(np.float64))[m]
    mse = float(np.mean(d**2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)
