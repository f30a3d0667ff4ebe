"""Halton-sequence ordering of grid cells for MaskGIT restoration.

Revealing tokens in a 2-D Halton order (bases 2 and 3) spreads each step's newly fixed tokens
evenly over the grid, so every step conditions on well-dispersed context instead of on whatever
the model happened to be confident about (Besnier et al., "Halton Scheduler for Masked
Generative Image Transformers"). Pure numpy; cached per grid size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def radical_inverse(i: int, base: int) -> float:
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r


@lru_cache(maxsize=64)
def halton_order(h: int, w: int) -> np.ndarray:
    """Raster indices of an (h, w) grid in 2-D Halton order; every cell exactly once."""
    seen = np.zeros(h * w, dtype=bool)
    order: list[int] = []
    i = 1
    # Each Halton point lands in a cell; duplicates are skipped. Dense coverage of every cell
    # needs roughly n log n draws; the fallback sweep below guarantees completeness.
    limit = 50 * h * w + 1000
    while len(order) < h * w and i < limit:
        y = int(radical_inverse(i, 3) * h)
        x = int(radical_inverse(i, 2) * w)
        k = y * w + x
        if not seen[k]:
            seen[k] = True
            order.append(k)
        i += 1
    order.extend(np.flatnonzero(~seen).tolist())
    out = np.asarray(order, dtype=np.int64)
    out.setflags(write=False)
    return out


def masked_halton_order(unknown: np.ndarray) -> np.ndarray:
    """Raster indices of the unknown cells of a bool (h, w) grid, in Halton order."""
    h, w = unknown.shape
    order = halton_order(h, w)
    return order[unknown.reshape(-1)[order]]


def reveal_counts(n_unknown: int, steps: int) -> list[int]:
    """How many tokens each step fixes: a cosine schedule that sums to ``n_unknown``.

    Early steps fix few tokens (little context exists), later ones many.
    """
    if n_unknown <= 0:
        return []
    steps = max(1, min(steps, n_unknown))
    remaining = [math.cos(math.pi / 2 * (t + 1) / steps) for t in range(steps)]
    masked_after = [int(math.floor(n_unknown * r)) for r in remaining]
    masked_after[-1] = 0
    counts, prev = [], n_unknown
    for m in masked_after:
        m = min(m, prev - 1) if prev > 0 else 0
        counts.append(prev - m)
        prev = m
    return [c for c in counts if c > 0]
