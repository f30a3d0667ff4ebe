"""YOLOX-Nano (COCO, 80 classes), the default segmenter: ONNX in, numpy decoding, no torch.

Why this detector: shipped inside the package (Apache-2.0, see ``models/NOTICE``), 3.7 MB,
a few milliseconds per 416x416 frame on one CPU core, and it sees people, vehicles and
animals, which the OpenCV fallback never does. Why it is decoded here rather than in the graph:
the raw head keeps the ONNX file portable to TensorRT / INT8 (no data-dependent shapes) and the
score threshold, the classes and NMS stay config values.

Contract of the shipped file (``models/README.md`` of the shared model store):
  input  ``images`` [1, 3, S, S] float32, **BGR, 0..255**, letterboxed into the top-left corner
         of an S x S canvas filled with 114
  output ``output`` [1, N, 5 + nc]: per anchor point of the stride-8/16/32 grids (row-major,
         finest grid first) cx, cy (grid units, offset from the cell), log w, log h, objectness
         and nc class probabilities (already sigmoid-ed); box = ((xy + cell) * stride,
         exp(wh) * stride), score = objectness x class probability.

Frames much larger than S lose their small objects in the letterbox; ``tiling`` runs the
detector on overlapping tiles as well as on the whole frame and merges the boxes (tile boxes
touching an inner tile edge are dropped: the neighbouring tile sees that object whole, and the
whole-frame pass sees the ones larger than a tile).
"""

from __future__ import annotations

import hashlib
import logging
import math
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from ..runtime import create_backend
from ..runtime.registry import BackendError
from .base import Instance, Segmenter, SegmenterConfig, check_image
from .ops import batched_nms
from .refine import box_mask

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "yolox_nano_coco.onnx"
DEFAULT_SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
STRIDES = (8, 16, 32)
PAD_VALUE = 114
EDGE_MARGIN = 2.0  # px: a tile box this close to an inner tile edge was cut by it


class ModelFileError(BackendError):
    """The detector's model file is missing, or its bytes are not the ones expected."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_model_file(path: Path, expected: str) -> None:
    """Raise ``ModelFileError`` (and log it) unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        msg = f"segmenter model file not found: {path}"
        if path == DEFAULT_MODEL:
            msg += " (the shipped YOLOX-Nano is missing: reinstall tokencast with the edge extra)"
        log.error(msg)
        raise ModelFileError(msg)
    if expected:
        got = sha256_file(path)
        if got != expected.lower():
            msg = (f"segmenter model {path} has sha256 {got}, expected {expected}: the file is altered or "
                   "truncated; restore it, or set segmenter.model_sha256 for a model of your own")
            log.error(msg)
            raise ModelFileError(msg)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """RGB (H, W, 3) -> (S, S, 3) canvas with the image resized into its top-left corner; and the ratio."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = max(int(round(w * r)), 1), max(int(round(h * r)), 1)
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[:nh, :nw] = resized
    return out, r


def to_input(square: np.ndarray) -> np.ndarray:
    """(S, S, 3) RGB uint8 -> [1, 3, S, S] float32 BGR 0..255, what the export was trained on."""
    return np.ascontiguousarray(square[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


@cache
def anchor_grid(size: int, strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) cell (x, y) and (N, 1) stride of every output row, in the head's order."""
    cells, steps = [], []
    for s in strides:
        n = size // s
        ys, xs = np.mgrid[0:n, 0:n]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        steps.append(np.full((n * n, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode(raw: np.ndarray, size: int, conf_threshold: float,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw head output [1, N, 5 + nc] -> (boxes xyxy in input pixels, scores, class ids), unsorted.

    ``allowed`` is a boolean mask over the nc classes (None: all); a candidate keeps its best
    allowed class, scored objectness x class probability, if that clears ``conf_threshold``.
    """
    pred = raw.reshape(-1, raw.shape[-1]).astype(np.float32, copy=False)
    cells, steps = anchor_grid(size)
    if len(pred) != len(cells):
        raise BackendError(f"detector output has {len(pred)} rows, expected {len(cells)} for a {size}x{size} "
                           f"input with strides {STRIDES}")
    obj = pred[:, 4]
    live = np.flatnonzero(obj > conf_threshold)  # score <= objectness: a cheap first cut
    cls = pred[live, 5:]
    if allowed is not None:
        cls = np.where(allowed[None, :], cls, 0.0)
    ids = cls.argmax(1)
    scores = obj[live] * cls[np.arange(len(live)), ids]
    keep = scores > conf_threshold
    live, ids, scores = live[keep], ids[keep], scores[keep]
    xy = (pred[live, :2] + cells[live]) * steps[live]
    wh = np.exp(np.minimum(pred[live, 2:4], 10.0)) * steps[live]  # clamp: a wild logit must not overflow
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    return boxes, scores, ids


def tile_windows(h: int, w: int, rows: int, cols: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``rows`` x ``cols`` windows (x0, y0, x1, y1) covering the frame, each overlapping its neighbours
    by ``overlap`` of its own size."""
    def spans(n: int, length: int) -> list[tuple[int, int]]:
        if n <= 1:
            return [(0, length)]
        size = length / (n - (n - 1) * overlap)
        step = size * (1 - overlap)
        return [(int(round(i * step)), min(int(round(i * step + size)), length)) for i in range(n)]

    return [(x0, y0, x1, y1) for y0, y1 in spans(rows, h) for x0, x1 in spans(cols, w)]


def cut_by_tile(boxes: np.ndarray, window: tuple[int, int, int, int], h: int, w: int) -> np.ndarray:
    """True for boxes (frame pixels) touching an edge of ``window`` that is not a frame edge."""
    x0, y0, x1, y1 = window
    cut = np.zeros(len(boxes), bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + EDGE_MARGIN
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + EDGE_MARGIN
    if x1 < w:
        cut |= boxes[:, 2] >= x1 - EDGE_MARGIN
    if y1 < h:
        cut |= boxes[:, 3] >= y1 - EDGE_MARGIN
    return cut


class YoloxSegmenter(Segmenter):
    """Boxes from YOLOX-Nano, turned into object masks by ``refine.box_mask``."""

    name = "yolox"

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__(config)
        self.backend = None
        names = list(config.class_names)
        self.allowed: np.ndarray | None = None
        if config.classes:
            unknown = [c for c in config.classes if c not in names]
            if unknown:
                msg = f"segmenter.classes: unknown class names {unknown}; valid: {', '.join(names)}"
                log.error(msg)
                raise ValueError(msg)
            self.allowed = np.isin(np.asarray(names), config.classes)

    def load(self) -> YoloxSegmenter:
        c = self.config
        path = Path(c.model) if c.model is not None else DEFAULT_MODEL
        expected = c.model_sha256 or (DEFAULT_SHA256 if path == DEFAULT_MODEL else "")
        check_model_file(path, expected)
        self.backend = create_backend(path, c.runtime).load()
        if len(self.backend.inputs) != 1 or len(self.backend.outputs) != 1:
            raise BackendError(f"{path}: expected 1 input and 1 output (YOLOX head), got "
                               f"{self.backend.input_names} -> {self.backend.output_names}")
        shape = self.backend.inputs[0].shape
        self.input_size = shape[-1] if isinstance(shape[-1], int) else c.input_size
        out = self.backend.outputs[0].shape
        if isinstance(out[-1], int) and out[-1] != 5 + len(c.class_names):
            raise BackendError(f"{path}: output rows have {out[-1]} values, expected 5 + {len(c.class_names)} "
                               "classes; check segmenter.class_names against the model")
        log.info("segmenter yolox: %s, input %d, tiling %s", path.name, self.input_size, c.tiling)
        return self

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One letterboxed pass: boxes in ``image`` pixels, scores, class ids (before NMS)."""
        if self.backend is None:
            raise BackendError("segmenter yolox used before load()")
        square, ratio = letterbox(image, self.input_size)
        out = self.backend.run({self.backend.input_names[0]: to_input(square)})
        raw = next(iter(out.values()))
        boxes, scores, ids = decode(raw, self.input_size, self.config.conf_threshold, self.allowed)
        return boxes / ratio, scores, ids

    def windows(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """Tiles for an h x w frame (none when tiling is off or the frame is small enough)."""
        c = self.config
        if c.tiling == "never" or (c.tiling == "auto" and max(h, w) < c.tile_min_side):
            return []
        rows, cols = c.tiles
        if c.tiling == "auto":  # no finer than needed for tiles of about the model's input size
            rows = min(rows, max(1, math.ceil(h / self.input_size)))
            cols = min(cols, max(1, math.ceil(w / self.input_size)))
        if rows * cols <= 1:
            return []
        return tile_windows(h, w, rows, cols, c.tile_overlap)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (n, 4) xyxy in frame pixels, scores (n,), class ids (n,), after NMS, best first."""
        check_image(image)
        h, w = image.shape[:2]
        parts = [self._run(image)]
        for win in self.windows(h, w):
            x0, y0, x1, y1 = win
            b, s, k = self._run(np.ascontiguousarray(image[y0:y1, x0:x1]))
            b = b + np.array([x0, y0, x0, y0], np.float32)
            keep = ~cut_by_tile(b, win, h, w)
            parts.append((b[keep], s[keep], k[keep]))
        boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4)
        scores = np.concatenate([p[1] for p in parts])
        ids = np.concatenate([p[2] for p in parts]).astype(np.int64)
        boxes = np.clip(boxes, 0, [w, h, w, h])
        keep = batched_nms(boxes, scores, ids, self.config.iou_threshold)[: self.config.max_instances]
        return boxes[keep], scores[keep], ids[keep]

    def segment(self, image: np.ndarray) -> list[Instance]:
        boxes, scores, ids = self.detect(image)
        names = self.config.class_names
        out = []
        for box, score, cid in zip(boxes, scores, ids, strict=True):
            mask = box_mask(image.shape[:2], box, self.config.mask_mode, image, int(cid))
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append(Instance(names[int(cid)], int(cid), float(score), (x1, y1, x2, y2), mask))
        return out

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
