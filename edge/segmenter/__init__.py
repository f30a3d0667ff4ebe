"""Segmenters behind one contract (``segment(image) -> list[Instance]``), chosen by config string.

``opencv`` needs no download and is the default; ``yolo-seg`` runs an ultralytics-style ONNX
export through any inference runtime; ``none`` turns semantic scoring off.
"""

from __future__ import annotations

from ..runtime.registry import Registry
from .base import Instance, NoSegmenter, Segmenter, SegmenterConfig
from .coco import COCO_NAMES
from .opencv import OpenCVSegmenter
from .yolo import YoloSegSegmenter

SEGMENTERS: Registry[Segmenter] = Registry("segmenter")
SEGMENTERS.register("opencv", OpenCVSegmenter)
SEGMENTERS.register("yolo-seg", YoloSegSegmenter)
SEGMENTERS.register("none", NoSegmenter)


def create_segmenter(config: SegmenterConfig | None = None) -> Segmenter:
    """An unloaded segmenter as ``config.backend`` names; call ``load()`` on it."""
    config = config or SegmenterConfig()
    return SEGMENTERS.create(config.backend, config)


__all__ = ["COCO_NAMES", "SEGMENTERS", "Instance", "Segmenter", "SegmenterConfig", "create_segmenter"]
