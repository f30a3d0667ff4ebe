"""From a detection box to an object mask: box, inscribed ellipse, a colour model, or GrabCut.

Why a mask at all: the importance map scores tokens by how much of their 8x8 patch the object
covers, so a box spends budget on the background in its corners (a person fills about half of
their box). Why so cheap: the mask is consumed at token resolution, so every mode except
``grabcut`` works on the box downscaled to at most ``WORK_SIDE`` pixels and costs well under a
millisecond per object.

``colour`` is a one-shot Bayesian colour model: foreground colours are learnt from the box
weighted by a shape prior, background colours from a ring just outside the box; each pixel's
posterior combines the prior with the colour likelihood ratio. The prior is the class's mean
instance mask in box coordinates (``models/shape_priors.npy``, built from coco128's train2017
polygons by ``benchmarks/shape_priors.py``; a person is narrow at the head and wide at the
shoulders, a car fills its box), or a generic centre-heavy prior for unknown classes. The
measured comparison (mask IoU against coco128's val2017 polygons) is in MODEL_CARD.md.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

PRIORS_FILE = Path(__file__).resolve().parent / "models" / "shape_priors.npy"

WORK_SIDE = 48  # px: longest side of the box crop the colour model works on
BINS = 8  # levels per RGB channel of the colour histograms (512 bins)
RING = 0.2  # background ring width, as a share of the box's longest side
PRIOR_IN, PRIOR_OUT = 0.8, 0.3  # shape prior at the box centre / near its edge


def clip_box(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    x1, y1 = int(max(box[0], 0)), int(max(box[1], 0))
    x2, y2 = int(min(np.ceil(box[2]), w)), int(min(np.ceil(box[3]), h))
    return x1, y1, x2, y2


def ellipse(bh: int, bw: int) -> np.ndarray:
    """The filled ellipse inscribed in a bh x bw box, uint8 0/1."""
    crop = np.zeros((bh, bw), np.uint8)  # drawn in the box's own frame so it cannot spill out
    cv2.ellipse(crop, (bw // 2, bh // 2), (max(bw // 2, 1), max(bh // 2, 1)), 0, 0, 360, 1, -1)
    return crop


@cache
def class_priors() -> np.ndarray | None:
    """(classes, 16, 16) float32 mean instance masks, or None when the file is missing or malformed."""
    try:
        priors = np.load(PRIORS_FILE, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError) as exc:
        log.warning("segmenter: no class shape priors (%s); the colour masks use a generic prior", exc)
        return None
    if priors.ndim != 3 or not np.isfinite(priors).all():
        log.warning("segmenter: %s has shape %s, expected (classes, S, S); ignored", PRIORS_FILE, priors.shape)
        return None
    return priors


def shape_prior(bh: int, bw: int, class_id: int | None = None) -> np.ndarray:
    """Soft prior (float32, bh x bw) that a box pixel is the object: the class's mean mask when known,
    else high at the centre, falling towards the edges and lowest in the corners."""
    priors = class_priors()
    if priors is not None and class_id is not None and 0 <= class_id < len(priors):
        p = cv2.resize(priors[class_id], (bw, bh), interpolation=cv2.INTER_LINEAR)
        return np.clip(p, 0.05, 0.95)
    y = (np.arange(bh, dtype=np.float32) + 0.5) / bh * 2 - 1
    x = (np.arange(bw, dtype=np.float32) + 0.5) / bw * 2 - 1
    r2 = y[:, None] ** 2 + x[None, :] ** 2  # 1 on the inscribed ellipse, 2 in the corners
    return np.clip(PRIOR_IN - (PRIOR_IN - PRIOR_OUT) * r2, 0.05, 0.95).astype(np.float32)


def colour_refine(image: np.ndarray, box: np.ndarray, class_id: int | None = None) -> np.ndarray | None:
    """Foreground (bool, box-sized) from the colour model, or None when the box is too small to tell."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = clip_box(box, h, w)
    bw, bh = x2 - x1, y2 - y1
    if bw < 6 or bh < 6:
        return None
    m = max(int(round(RING * max(bw, bh))), 2)
    cx1, cy1, cx2, cy2 = max(x1 - m, 0), max(y1 - m, 0), min(x2 + m, w), min(y2 + m, h)
    s = min(1.0, WORK_SIDE / max(cx2 - cx1, cy2 - cy1))
    cw, ch = max(int(round((cx2 - cx1) * s)), 1), max(int(round((cy2 - cy1) * s)), 1)
    crop = image[cy1:cy2, cx1:cx2]
    small = crop if s == 1.0 else cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA)
    q = (small.astype(np.int32) * BINS) // 256
    bins = (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]
    # the box inside the small crop
    bx1, by1 = int(round((x1 - cx1) * s)), int(round((y1 - cy1) * s))
    bx2, by2 = max(int(round((x2 - cx1) * s)), bx1 + 1), max(int(round((y2 - cy1) * s)), by1 + 1)
    inside = np.zeros((ch, cw), bool)
    inside[by1:by2, bx1:bx2] = True
    prior = np.zeros((ch, cw), np.float32)
    prior[by1:by2, bx1:bx2] = shape_prior(by2 - by1, bx2 - bx1, class_id)
    ring = ~inside
    # background samples: the ring, plus the box weighted by 1 - prior (a box at the frame edge has no ring)
    bg_w = np.where(ring, 1.0, 1.0 - prior).astype(np.float32)
    fg_w = np.where(inside, prior, 0.0).astype(np.float32)
    n = BINS**3
    fg = np.bincount(bins.ravel(), fg_w.ravel(), n) + 0.5
    bg = np.bincount(bins.ravel(), bg_w.ravel(), n) + 0.5
    lf, lb = fg / fg.sum(), bg / bg.sum()
    num = prior * lf[bins]
    post = num / (num + (1.0 - prior) * lb[bins] + 1e-12)
    post = cv2.GaussianBlur(post.astype(np.float32), (0, 0), max(0.6, 0.02 * WORK_SIDE))
    fg_small = (post > 0.5)[by1:by2, bx1:bx2].astype(np.uint8)
    if fg_small.mean() < 0.15:  # the colours do not separate (camouflage, grey scene): trust the prior
        return None
    return cv2.resize(fg_small, (bw, bh), interpolation=cv2.INTER_NEAREST).astype(bool)


def grabcut(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """GrabCut (2 iterations) at full resolution: better edges, tens of ms per object."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = clip_box(box, h, w)
    if (x2 - x1) <= 4 or (y2 - y1) <= 4:
        return None
    # Work in a margin around the box so GrabCut has background samples to learn from.
    mx, my = (x2 - x1) // 4 + 2, (y2 - y1) // 4 + 2
    cx1, cy1, cx2, cy2 = max(x1 - mx, 0), max(y1 - my, 0), min(x2 + mx, w), min(y2 + my, h)
    crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2, ::-1])
    gc = np.zeros(crop.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    rect = (x1 - cx1, y1 - cy1, x2 - x1, y2 - y1)
    try:
        cv2.grabCut(crop, gc, rect, bgd, fgd, 2, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # degenerate colour models
        return None
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return fg[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1]


def box_mask(shape: tuple[int, int], box: np.ndarray, mode: str, image: np.ndarray | None = None,
             class_id: int | None = None) -> np.ndarray:
    """A boolean full-frame mask for ``box`` (xyxy): "box", "ellipse", "colour" or "grabcut".

    The refined modes fall back to the ellipse when they cannot tell (tiny box, no colour contrast)."""
    h, w = shape
    x1, y1, x2, y2 = clip_box(box, h, w)
    mask = np.zeros((h, w), bool)
    if x2 <= x1 or y2 <= y1:
        return mask
    crop: np.ndarray | None = None
    if mode == "box":
        mask[y1:y2, x1:x2] = True
        return mask
    if mode == "colour" and image is not None:
        crop = colour_refine(image, box, class_id)
    elif mode == "grabcut" and image is not None:
        crop = grabcut(image, box)
    if crop is None:
        crop = ellipse(y2 - y1, x2 - x1).astype(bool)
    mask[y1:y2, x1:x2] = crop
    return mask

