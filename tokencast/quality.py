"""Picture quality for the demo report: PSNR and MS-SSIM (pytorch_msssim) on uint8 RGB.

MS-SSIM downsamples four times with an 11-tap window, so pytorch_msssim needs both sides above
160 px; smaller pictures get single-scale SSIM instead, and the report names the method used.
"""

from __future__ import annotations

import numpy as np

MS_SSIM_MIN_SIDE = 161
SSIM_WINDOW = 11


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> tuple[float | None, str]:
    """(value, method): "ms-ssim", "ssim" for pictures under 161 px a side, or None when under 11 px."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim
    from pytorch_msssim import ssim as _ssim

    side = min(a.shape[:2])
    if side < SSIM_WINDOW:
        return None, f"none (smaller than {SSIM_WINDOW} px)"
    # np.array copies: pixels read from PIL are often read-only, which torch warns about
    x, y = (torch.from_numpy(np.array(v, dtype=np.float64)).permute(2, 0, 1)[None] for v in (a, b))
    if side >= MS_SSIM_MIN_SIDE:
        return float(_ms_ssim(x, y, data_range=255.0)), "ms-ssim"
    return float(_ssim(x, y, data_range=255.0)), f"ssim (smaller than {MS_SSIM_MIN_SIDE} px: too small for MS-SSIM)"
