"""People from plain OpenCV: the HOG pedestrian detector plus Haar cascades, no model download.

The offline default, so a camera can start with semantic masking before any model is
provisioned. Boxes become masks through ``refine.box_mask`` (box, ellipse, colour model or
GrabCut; see MODEL_CARD.md).
OpenCV 5 drops ``cv2.data``; then only HOG runs, and a log line says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .base import Instance, Segmenter, check_image
from .ops import nms
from .refine import box_mask

log = logging.getLogger(__name__)

# cascade file -> detection score given to its hits (Haar gives no calibrated confidence)
CASCADES = {
    "haarcascade_frontalface_default.xml": 0.6,
    "haarcascade_upperbody.xml": 0.4,
    "haarcascade_fullbody.xml": 0.4,
}
PERSON = ("person", 0)
HOG_WINDOW = (64, 128)  # width, height of the default people detector's window


def cascade_dir() -> Path | None:
    data = getattr(cv2, "data", None)
    path = getattr(data, "haarcascades", None)
    return Path(path) if path else None


def face_to_body(faces: np.ndarray) -> np.ndarray:
    """Face boxes (xyxy) -> rough person boxes: 3.2 face widths wide, from just above the head to
    6 face heights below its top. A face alone matches a COCO person box at IoU >= 0.5 almost never;
    this estimate raised the face cascade's IoU recall on coco128 val2017 from 0.3 % to 9 %."""
    w, h = faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1]
    cx = (faces[:, 0] + faces[:, 2]) / 2
    return np.c_[cx - 1.6 * w, faces[:, 1] - 0.3 * h, cx + 1.6 * w, faces[:, 1] + 6.0 * h]


class OpenCVSegmenter(Segmenter):
    name = "opencv"

    def load(self) -> OpenCVSegmenter:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
        self.cascades: list[tuple[cv2.CascadeClassifier, float, str]] = []
        root = cascade_dir()
        if root is None:
            log.warning("opencv segmenter: cv2.data.haarcascades missing (OpenCV 5?); HOG people detector only")
            return self
        for fname, score in CASCADES.items():
            is_face = "face" in fname
            if (is_face and not self.config.faces) or (not is_face and not self.config.bodies):
                continue
            clf = cv2.CascadeClassifier(str(root / fname))
            if clf.empty():
                log.warning("opencv segmenter: cascade %s not found under %s, skipped", fname, root)
                continue
            self.cascades.append((clf, score, fname))
        return self

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (n, 4) xyxy in image pixels and scores (n,), after NMS."""
        h, w = image.shape[:2]
        scale = min(1.0, self.config.detect_size / max(h, w))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        boxes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        up = self.config.hog_upscale
        hog_in = cv2.resize(gray, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR) if up != 1.0 else gray
        rects: Any = ()
        weights: Any = ()
        if hog_in.shape[0] >= HOG_WINDOW[1] and hog_in.shape[1] >= HOG_WINDOW[0]:  # smaller segfaults OpenCV
            rects, weights = self.hog.detectMultiScale(hog_in, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects):
            r = np.asarray(rects, np.float64) / up
            # The 64x128 window pads the person by ~15 % of its width and ~7 % of its height.
            dx, dy = 0.15 * r[:, 2:3], 0.07 * r[:, 3:4]
            boxes.append(np.c_[r[:, :1] + dx, r[:, 1:2] + dy, r[:, :1] + r[:, 2:3] - dx, r[:, 1:2] + r[:, 3:4] - dy])
            # SVM margins run roughly 0..3; squash to (0, 1) so they compare with Haar's fixed scores.
            scores.append(1.0 - np.exp(-np.clip(np.asarray(weights, np.float64).ravel(), 0, None) - 0.3))
        eq = cv2.equalizeHist(gray)
        for clf, score, fname in self.cascades:
            found = clf.detectMultiScale(eq, scaleFactor=1.1, minNeighbors=4, minSize=(16, 16))
            if len(found):
                r = np.asarray(found, np.float64)
                b = np.c_[r[:, :2], r[:, :2] + r[:, 2:]]
                boxes.append(face_to_body(b) if "face" in fname else b)
                scores.append(np.full(len(r), score))
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0)
        b = np.clip(np.concatenate(boxes) / scale, 0, [w, h, w, h])
        s = np.concatenate(scores)
        keep = nms(b, s, self.config.iou_threshold)[: self.config.max_instances]
        return b[keep], s[keep]

    def segment(self, image: np.ndarray) -> list[Instance]:
        check_image(image)
        boxes, scores = self.detect(image)
        hw = image.shape[:2]
        out = []
        for box, score in zip(boxes, scores, strict=True):
            if score < self.config.conf_threshold:
                continue
            mask = box_mask(hw, box, self.config.mask_mode, image, PERSON[1])
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append(Instance(PERSON[0], PERSON[1], float(score), (x1, y1, x2, y2), mask))
        return out
