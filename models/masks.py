"""Mask generators for MaskGIT training and evaluation, shaped like what the edge really sends.

Three families: uniform random masks with a cosine-schedule ratio (classic MaskGIT), dispersed
keep sets (what the edge's spatial dispersal sampler produces), and object-shaped kept regions
with dispersed background; on top, contiguous raster runs marked lost, as a dropped radio
fragment does. True = known (kept) cell.
"""

from __future__ import annotations

import math

import numpy as np

from models.halton import halton_order


def cosine_ratio(rng: np.random.Generator) -> float:
    """Masked fraction r = cos(pi/2 * u): biased towards heavy masking, as in MaskGIT."""
    return float(np.clip(math.cos(math.pi / 2 * rng.random()), 0.05, 1.0))


def uniform_known(h: int, w: int, masked_ratio: float, rng: np.random.Generator) -> np.ndarray:
    n_mask = int(round(masked_ratio * h * w))
    known = np.ones(h * w, dtype=bool)
    known[rng.permutation(h * w)[:n_mask]] = False
    return known.reshape(h, w)


def dispersed_known(h: int, w: int, keep_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Keep a well-spread subset: the first cells of a randomly shifted Halton order."""
    order = halton_order(h, w)
    shift_y, shift_x = rng.integers(0, h), rng.integers(0, w)
    ys, xs = np.divmod(order, w)
    order = ((ys + shift_y) % h) * w + (xs + shift_x) % w
    known = np.zeros(h * w, dtype=bool)
    known[order[: int(round(keep_ratio * h * w))]] = True
    return known.reshape(h, w)


def object_known(h: int, w: int, keep_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """A few fully kept ellipses (objects) plus a dispersed background keep set."""
    known = dispersed_known(h, w, keep_ratio * 0.7, rng)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.random() * h, rng.random() * w
        ry, rx = 1 + rng.random() * h / 4, 1 + rng.random() * w / 4
        known |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return known


def drop_runs(known: np.ndarray, rng: np.random.Generator, max_runs: int = 2) -> np.ndarray:
    """Mark contiguous raster runs unknown, as a lost fragment does."""
    flat = known.reshape(-1).copy()
    n = flat.size
    for _ in range(rng.integers(1, max_runs + 1)):
        length = int(rng.integers(1, max(2, n // 4)))
        start = int(rng.integers(0, n))
        flat[start : start + length] = False
    return flat.reshape(known.shape)


def operating_ratio(rng: np.random.Generator) -> float:
    """Masked fraction in the range the edge really sends (about 15% to 90% masked)."""
    return float(0.15 + 0.75 * rng.random())


def training_known(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one training mask from the mixture of families.

    Most draws use the masking ratios the edge actually sends; a fifth use MaskGIT's cosine
    schedule so the early, nearly empty steps of restoration are also seen in training.
    """
    u = rng.random()
    ratio = cosine_ratio(rng) if rng.random() < 0.2 else operating_ratio(rng)
    if u < 0.35:
        known = uniform_known(h, w, ratio, rng)
    elif u < 0.75:
        known = dispersed_known(h, w, 1 - ratio, rng)
    else:
        known = object_known(h, w, 1 - ratio, rng)
    if rng.random() < 0.1:
        known = drop_runs(known, rng)
    if known.all():
        known[rng.integers(0, h), rng.integers(0, w)] = False
    return known
