"""Image-quality metrics for the benchmarks: PSNR, ROI-PSNR, MS-SSIM and weight-free perceptual ones.

PSNR and ROI-PSNR come from ``models.metrics`` (numpy). MS-SSIM follows Wang et al. with the
pytorch_msssim kernels, but drops the coarsest scales (weights renormalised) when an image is
too small for five: pytorch_msssim's own ``ms_ssim`` refuses anything under 161 px. HaarPSI,
DSS and VSI come from ``piq`` and need no weights; piq's package ``__init__`` imports
torchvision (for its VGG-based metrics), which is not installed beside this CPU torch, so the
three modules are loaded on their own. LPIPS and DISTS need downloaded weights: they are used
only when a file already on disk is named (never downloaded), else reported as skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from models.metrics import masked_psnr, psnr

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
PERCEPTUAL = ("haarpsi", "dss", "vsi")


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].double()


def ms_ssim_scales(side: int, win: int = 11) -> int:
    """How many MS-SSIM scales fit: the window must fit the image at the coarsest one."""
    return int(max(1, min(len(MS_SSIM_WEIGHTS), math.floor(math.log2(max(side, 1) / win)) + 1)))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two RGB uint8 images, with fewer scales for small images; NaN if under 11 px."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    side = min(a.shape[:2])
    if side < 11:
        return float("nan")
    levels = ms_ssim_scales(side)
    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=torch.float64)
    w = w / w.sum()
    x, y = _tensor(a), _tensor(b)
    win = _fspecial_gauss_1d(11, 1.5).repeat([3, 1, 1, 1]).double()
    vals = []
    for i in range(levels):
        s, cs = _ssim(x, y, win=win, data_range=255.0, size_average=False, K=(0.01, 0.03))
        if i < levels - 1:
            vals.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, 2, padding=pad)
            y = torch.nn.functional.avg_pool2d(y, 2, padding=pad)
    vals.append(torch.relu(s))
    stack = torch.stack(vals, 0)  # (levels, N, C)
    return float(torch.prod(stack ** w.view(-1, 1, 1), 0).mean())


@cache
def _piq() -> dict[str, Callable] | None:
    """haarpsi, dss, vsi functions from piq without running piq/__init__ (which needs torchvision)."""
    spec = importlib.util.find_spec("piq")
    if spec is None or spec.origin is None:
        return None
    if "piq" not in sys.modules:
        pkg = types.ModuleType("piq")
        pkg.__path__ = [str(__import__("pathlib").Path(spec.origin).parent)]
        sys.modules["piq"] = pkg
    try:
        return {name: getattr(importlib.import_module(f"piq.{name}"), name) for name in PERCEPTUAL}
    except ImportError:
        return None


def perceptual_available() -> bool:
    return _piq() is not None


def perceptual(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """HaarPSI, DSS and VSI (higher is better, 1 = identical); NaN each where piq is missing or
    the image is too small for the metric."""
    fns = _piq()
    out = {name: float("nan") for name in PERCEPTUAL}
    if fns is None:
        return out
    x = _tensor(a).float().div(255)
    y = _tensor(b).float().div(255)
    for name, fn in fns.items():
        try:
            out[name] = float(fn(x, y, data_range=1.0))
        except (AssertionError, RuntimeError, ValueError):
            pass  # piq checks sizes with assert; a too-small image just has no value
    return out


def roi_mask(instances: list, shape: tuple[int, int]) -> np.ndarray:
    """Union of the instance masks, (H, W) bool; all False when there are none."""
    m = np.zeros(shape, bool)
    for inst in instances:
        m |= np.asarray(inst.mask, bool)
    return m


def downscaled_psnr(original: np.ndarray, recon: np.ndarray, factor: int) -> float:
    """PSNR of the two pictures each averaged over ``factor`` x ``factor`` blocks: are layout and
    colour right, whatever the detail? (What a coarse layer must get right.)"""
    h, w = (original.shape[0] // factor) * factor, (original.shape[1] // factor) * factor
    if not h or not w:
        return float("nan")

    def pool(a: np.ndarray) -> np.ndarray:
        a = a[:h, :w].astype(np.float64)
        return a.reshape(h // factor, factor, w // factor, factor, -1).mean(axis=(1, 3))

    return psnr(pool(original), pool(recon))


def all_metrics(original: np.ndarray, recon: np.ndarray, roi: np.ndarray, full: bool = True) -> dict[str, float]:
    """Every metric of one reconstruction; ``full=False`` skips the slow perceptual ones (NaN)."""
    out = {"psnr": psnr(original, recon), "roi_psnr": masked_psnr(original, recon, roi),
           "ms_ssim": ms_ssim(original, recon), "psnr_ds16": downscaled_psnr(original, recon, 16)}
    out.update(perceptual(original, recon) if full else {k: float("nan") for k in PERCEPTUAL})
    return out


def learned_metric_notes() -> str:
    return ("LPIPS and DISTS skipped: their weights are not on disk here and the benchmarks never "
            "download any (piq would fetch them on first use).")
