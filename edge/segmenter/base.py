"""Segmenter contract: an RGB frame in, a list of ``Instance`` (class, score, box, mask) out.

Backends differ in cost and quality (a YOLO-seg ONNX model, or plain OpenCV detectors that
need no download) but hand the importance scorer the same thing: full-frame boolean masks.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from ..runtime import RuntimeConfig
from .coco import COCO_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Instance:
    class_name: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    mask: np.ndarray  # bool (H, W), the full frame

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.0f}" for v in self.box)
        return f"Instance({self.class_name!r}, score={self.score:.2f}, box=({box}), area={int(self.mask.sum())})"


@dataclass
class SegmenterConfig:
    """One table for every segmenter backend; each reads the keys that concern it."""

    backend: str = "yolox"  # "yolox" (shipped detector), "opencv" (no model), "yolo-seg", "none"
    # yolox: None = the shipped YOLOX-Nano; yolo-seg: an ultralytics-style *-seg.onnx export
    model: Path | None = None
    model_sha256: str = ""  # yolox: expected sha256 of `model` ("" = the shipped file's, pinned)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    class_names: list[str] = field(default_factory=lambda: list(COCO_NAMES))
    classes: list[str] = field(default_factory=list)  # yolox: report only these ([] = every class)
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    mask_threshold: float = 0.5
    max_instances: int = 100
    input_size: int = 640  # yolo-seg / yolox: used only when the model's input size is dynamic
    # box -> object mask (yolox, opencv): see refine.py
    mask_mode: Literal["box", "ellipse", "colour", "grabcut"] = "colour"
    # yolox: overlapping tiles plus the whole frame, for small objects in large frames
    tiling: Literal["auto", "always", "never"] = "auto"  # auto: when the longest side >= tile_min_side
    tiles: list[int] = field(default_factory=lambda: [3, 3])  # rows, cols (auto: at most ~model size each)
    tile_overlap: float = 0.2  # share of a tile shared with its neighbour
    tile_min_side: int = 1280
    # opencv backend
    detect_size: int = 640  # longest side the OpenCV detectors see
    hog_upscale: float = 1.5  # HOG's 64x128 window misses people shorter than ~128 px otherwise
    faces: bool = True
    bodies: bool = True

    def __post_init__(self) -> None:
        for name in ("conf_threshold", "iou_threshold", "mask_threshold"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {self.max_instances}")
        if len(self.tiles) != 2 or min(self.tiles) < 1:
            raise ValueError(f"tiles must be [rows, cols], both >= 1, got {self.tiles}")
        if not 0.0 <= self.tile_overlap < 0.5:
            raise ValueError(f"tile_overlap must be in [0, 0.5), got {self.tile_overlap}")


class Segmenter(ABC):
    name: str = "?"

    def __init__(self, config: SegmenterConfig) -> None:
        self.config = config

    def load(self) -> Segmenter:
        return self

    @abstractmethod
    def segment(self, image: np.ndarray) -> list[Instance]:
        """Instances in an RGB uint8 (H, W, 3) frame, best first."""

    def close(self) -> None:  # noqa: B027 - most segmenters hold nothing to release
        """Release the model; the default holds nothing."""

    def __enter__(self) -> Segmenter:
        return self.load()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NoSegmenter(Segmenter):
    """Semantic scoring off: every token is ranked by recoverability alone."""

    name = "none"

    def segment(self, image: np.ndarray) -> list[Instance]:
        return []


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 \
            or 0 in image.shape:
        what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        log.error("segmenter: refused a frame: expected an RGB uint8 (H, W, 3) image, got %s", what)
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {what}")
