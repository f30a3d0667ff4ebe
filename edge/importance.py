"""Category-aware semantic scores on the token grid: which tokens show something that matters.

Each instance contributes ``class weight x detection confidence x mask coverage`` to the tokens
under it (coverage = fraction of the token's 8x8 patch inside the mask); overlapping instances
take the maximum. Small objects must survive: every instance's most-covered token(s) get the
instance's full ``weight x confidence``, so a car of three tokens in a drone view ranks with
the middle of a large one instead of vanishing under a coverage of 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .segmenter.base import Instance

VEHICLES = ("car", "bus", "truck", "motorcycle", "bicycle")
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")


def default_class_weights() -> dict[str, float]:
    weights = {"person": 1.0}
    weights.update({c: 0.9 for c in VEHICLES})
    weights.update({c: 0.6 for c in ANIMALS})
    return weights


@dataclass
class ImportanceConfig:
    class_weights: dict[str, float] = field(default_factory=default_class_weights)
    default_weight: float = 0.3  # any other detected thing; the background is always 0
    min_score: float = 0.02  # weaker tokens count as background (the peak tokens are exempt)

    def __post_init__(self) -> None:
        for name, w in self.class_weights.items():
            if not 0.0 <= w <= 1.0:
                raise ValueError(f"class_weights.{name} must be in [0, 1], got {w}")
        if not 0.0 <= self.default_weight <= 1.0:
            raise ValueError(f"default_weight must be in [0, 1], got {self.default_weight}")

    def weight(self, class_name: str) -> float:
        return self.class_weights.get(class_name, self.default_weight)


def token_coverage(mask: np.ndarray, box: Sequence[float], grid_h: int, grid_w: int, factor: int):
    """Coverage of the tokens under ``box``: (row0, col0, fractions (rows, cols)) of the mask."""
    h, w = mask.shape
    r0 = min(max(int(box[1]) // factor, 0), grid_h - 1)
    c0 = min(max(int(box[0]) // factor, 0), grid_w - 1)
    r1 = min(max(math.ceil(box[3] / factor), r0 + 1), grid_h)
    c1 = min(max(math.ceil(box[2] / factor), c0 + 1), grid_w)
    crop = np.zeros(((r1 - r0) * factor, (c1 - c0) * factor), np.float32)
    src = mask[r0 * factor : min(r1 * factor, h), c0 * factor : min(c1 * factor, w)]
    crop[: src.shape[0], : src.shape[1]] = src
    cov = crop.reshape(r1 - r0, factor, c1 - c0, factor).mean(axis=(1, 3))
    return r0, c0, cov


def semantic_scores(
    instances: Sequence[Instance],
    grid_h: int,
    grid_w: int,
    factor: int = 8,
    config: ImportanceConfig | None = None,
) -> np.ndarray:
    """Per-token semantic score in [0, 1], float32 (grid_h, grid_w); 0 = background."""
    config = config or ImportanceConfig()
    score = np.zeros((grid_h, grid_w), np.float32)
    peaks = np.zeros((grid_h, grid_w), bool)
    for inst in instances:
        base = config.weight(inst.class_name) * float(np.clip(inst.score, 0.0, 1.0))
        if base <= 0.0:
            continue
        r0, c0, cov = token_coverage(inst.mask, inst.box, grid_h, grid_w, factor)
        rows, cols = cov.shape
        view = score[r0 : r0 + rows, c0 : c0 + cols]
        np.maximum(view, base * cov, out=view)
        top = cov.max()
        if top > 0:
            peak = cov >= top - 1e-6
        else:  # no mask pixels (a sliver box): the token at the box centre stands in
            peak = np.zeros_like(cov, bool)
            peak[rows // 2, cols // 2] = True
        view[peak] = np.maximum(view[peak], base)
        peaks[r0 : r0 + rows, c0 : c0 + cols] |= peak
    score[(score < config.min_score) & ~peaks] = 0.0
    return score
