"""Segmenters behind one contract (``segment(image) -> list[Instance]``), chosen by config string.

``yolox`` (the default) runs the YOLOX-Nano COCO detector shipped in ``models/`` and refines
its boxes into object masks; ``opencv`` (HOG + Haar, people only) is the fallback that needs no
model file; ``yolo-seg`` runs a user's ultralytics-style ONNX export; ``none`` turns semantic
scoring off.
"""

from __future__ import annotations

from ..runtime.registry import Registry
from .base import Instance, NoSegmenter, Segmenter, SegmenterConfig
from .coco import COCO_NAMES
from .opencv import OpenCVSegmenter
from .yolo import YoloSegSegmenter
from .yolox import YoloxSegmenter

SEGMENTERS: Registry[Segmenter] = Registry("segmenter")
SEGMENTERS.register("yolox", YoloxSegmenter)
SEGMENTERS.register("opencv", OpenCVSegmenter)
SEGMENTERS.register("yolo-seg", YoloSegSegmenter)
SEGMENTERS.register("none", NoSegmenter)


def create_segmenter(config: SegmenterConfig | None = None) -> Segmenter:
    """An unloaded segmenter as ``config.backend`` names; call ``load()`` on it."""
    config = config or SegmenterConfig()
    return SEGMENTERS.create(config.backend, config)


__all__ = ["COCO_NAMES", "SEGMENTERS", "Instance", "Segmenter", "SegmenterConfig", "create_segmenter"]
