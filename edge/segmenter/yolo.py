"""YOLOv8 / YOLO11 instance segmentation from an ONNX export, decoded in numpy (no ultralytics).

Export contract (``yolo export format=onnx`` of a ``*-seg.pt``):
  input  ``images``  [1, 3, S, S] float RGB in [0, 1], letterboxed (grey 114 padding, centred)
  output ``output0`` [1, 4 + nc + 32, N]: cx, cy, w, h in input pixels, nc class scores, 32 mask
         coefficients per candidate
  output ``output1`` [1, 32, S/4, S/4] mask prototypes
Decoding: confidence filter, class-wise NMS, then each mask = coefficients @ prototypes, sampled
straight from prototype space into the original frame inside the box with one affine warp.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..runtime import create_backend
from ..runtime.registry import BackendError
from .base import Instance, Segmenter, check_image
from .ops import batched_nms

PAD_VALUE = 114


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping aspect into a ``size`` square, centred; returns (square, ratio, (pad_x, pad_y))."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    left, top = int(round((size - nw) / 2 - 0.1)), int(round((size - nh) / 2 - 0.1))
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[top : top + nh, left : left + nw] = resized
    return out, r, (left, top)


def decode(
    output0: np.ndarray,
    protos: np.ndarray,
    *,
    input_size: int,
    ratio: float,
    pad: tuple[int, int],
    image_hw: tuple[int, int],
    class_names: list[str],
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    mask_threshold: float = 0.5,
    max_instances: int = 100,
) -> list[Instance]:
    """Raw YOLO-seg outputs -> instances in original image coordinates, best first."""
    nc = len(class_names)
    pred = output0[0].T.astype(np.float32)  # (N, 4 + nc + nm)
    nm = protos.shape[1]
    if pred.shape[1] != 4 + nc + nm:
        raise BackendError(
            f"yolo-seg output0 has {pred.shape[1]} rows per candidate, expected 4 + {nc} classes + {nm}; "
            "check class_names against the model"
        )
    cls_scores = pred[:, 4 : 4 + nc]
    class_ids = cls_scores.argmax(1)
    scores = cls_scores[np.arange(len(pred)), class_ids]
    sel = scores > conf_threshold
    pred, class_ids, scores = pred[sel], class_ids[sel], scores[sel]
    cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    keep = batched_nms(boxes, scores, class_ids, iou_threshold)[:max_instances]

    h, w = image_hw
    _, mh, mw = protos.shape[1:]
    proto_flat = protos[0].reshape(nm, -1).astype(np.float32)
    s = mw / input_size  # prototype pixels per input pixel
    px, py = pad
    logit_thr = math.log(mask_threshold / (1 - mask_threshold)) if 0 < mask_threshold < 1 else 0.0
    instances = []
    for i in keep:
        x1, y1, x2, y2 = ((boxes[i] - [px, py, px, py]) / ratio).tolist()
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
        mask = np.zeros((h, w), bool)
        ix1, iy1, ix2, iy2 = int(x1), int(y1), math.ceil(x2), math.ceil(y2)
        if ix2 > ix1 and iy2 > iy1:
            logits = (pred[i, 4 + nc :] @ proto_flat).reshape(mh, mw)
            # dst pixel (x, y) of the box crop samples prototype point ((x + ix1 + .5) r + px) s - .5
            m = np.array(
                [
                    [ratio * s, 0, ((ix1 + 0.5) * ratio + px) * s - 0.5],
                    [0, ratio * s, ((iy1 + 0.5) * ratio + py) * s - 0.5],
                ],
                np.float32,
            )
            crop = cv2.warpAffine(
                logits, m, (ix2 - ix1, iy2 - iy1), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )  # fmt: skip
            mask[iy1:iy2, ix1:ix2] = crop > logit_thr
        cid = int(class_ids[i])
        instances.append(Instance(class_names[cid], cid, float(scores[i]), (x1, y1, x2, y2), mask))
    return instances


class YoloSegSegmenter(Segmenter):
    name = "yolo-seg"

    def load(self) -> YoloSegSegmenter:
        if self.config.model is None:
            raise BackendError("segmenter 'yolo-seg' needs segmenter.model = path to a *-seg.onnx export")
        self.backend = create_backend(self.config.model, self.config.runtime).load()
        if len(self.backend.inputs) != 1 or len(self.backend.outputs) != 2:
            raise BackendError(
                f"{self.config.model}: expected 1 input and 2 outputs (detections, prototypes), got "
                f"{self.backend.input_names} -> {self.backend.output_names}"
            )
        shape = self.backend.inputs[0].shape
        self.input_size = shape[-1] if isinstance(shape[-1], int) else self.config.input_size
        return self

    def segment(self, image: np.ndarray) -> list[Instance]:
        check_image(image)
        square, ratio, pad = letterbox(image, self.input_size)
        x = (square.transpose(2, 0, 1)[None].astype(np.float32)) / 255.0
        out = self.backend.run({self.backend.input_names[0]: x})
        dets, protos = (out[n] for n in self.backend.output_names)
        if dets.ndim == 4:  # some exports put the prototypes first
            dets, protos = protos, dets
        c = self.config
        return decode(
            dets, protos, input_size=self.input_size, ratio=ratio, pad=pad, image_hw=image.shape[:2],
            class_names=c.class_names, conf_threshold=c.conf_threshold, iou_threshold=c.iou_threshold,
            mask_threshold=c.mask_threshold, max_instances=c.max_instances,
        )  # fmt: skip

    def close(self) -> None:
        if getattr(self, "backend", None) is not None:
            self.backend.close()
