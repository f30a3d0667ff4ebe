"""Category-aware semantic scores on the token grid: which tokens show something that matters.

Each instance contributes ``class weight x detection confidence x mask coverage x size factor``
to the tokens under it (coverage = fraction of the token's 8x8 patch inside the mask);
overlapping instances take the maximum. The class weights come from ``[pipeline.importance]``
(people 1.0, vehicles 0.9, animals 0.6, anything else 0.3 by default).

Why a size factor: under a tight budget the semantic tokens are kept in score order, and a
person filling half the frame would otherwise take every byte before a small far one got any.
An object covering more than ``size_ref_tokens`` tokens has each token discounted by
``(size_ref_tokens / tokens) ** size_exponent`` (a 1024-token object at the defaults: 0.5), so the
small object's tokens come first and the large one is still kept before the background.
Why ``min_tokens``: a small far object must stay recognisable, which one kept token does not
achieve; its ``min_tokens`` most-covered tokens get the full ``weight x confidence``, so a car
of three tokens in a drone view ranks with the middle of a large one instead of vanishing under
a coverage of 0.2.
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
    min_tokens: int = 4  # each object's best-covered tokens that get its full weight x confidence
    size_ref_tokens: float = 64.0  # objects up to this many tokens are not discounted
    size_exponent: float = 0.25  # 0 = no size discount

    def __post_init__(self) -> None:
        if self.min_tokens < 1:
            raise ValueError(f"min_tokens must be >= 1, got {self.min_tokens}")
        if self.size_ref_tokens <= 0 or not 0.0 <= self.size_exponent <= 1.0:
            raise ValueError("size_ref_tokens must be > 0 and size_exponent in [0, 1], got "
                             f"{self.size_ref_tokens}, {self.size_exponent}")
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
        size = float(cov.sum())
        discount = min(1.0, (config.size_ref_tokens / size) ** config.size_exponent) if size > 0 else 1.0
        np.maximum(view, base * discount * cov, out=view)
        peak = np.zeros(cov.size, bool)
        if size > 0:  # the min_tokens best-covered tokens, ties to the ones nearest the box centre
            rr, cc = np.divmod(np.arange(cov.size), cols)
            centre = (rr - (rows - 1) / 2) ** 2 + (cc - (cols - 1) / 2) ** 2
            order = np.lexsort((np.arange(cov.size), centre, -cov.ravel()))
            k = min(config.min_tokens, int((cov > 0).sum()))
            peak[order[:k]] = True
        else:  # no mask pixels (a sliver box): the token at the box centre stands in
            peak[(rows // 2) * cols + cols // 2] = True
        peak = peak.reshape(cov.shape)
        view[peak] = np.maximum(view[peak], base)
        peaks[r0 : r0 + rows, c0 : c0 + cols] |= peak
    score[(score < config.min_score) & ~peaks] = 0.0
    return score
