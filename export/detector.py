"""The shipped YOLOX detector through the export ladder: load it, feed it, judge variants by their boxes.

There is no torch model behind it (it ships as ONNX), so FP16 and INT8 are judged against the
FP32 file by what the edge does with the output: the edge's own decoding and class-aware NMS
(``edge.segmenter.yolox``), then boxes matched one-to-one by class at IoU >= 0.5. The headline
``box_agreement`` is the F1 of that matching (1 = the same detections), with the mean IoU of the
matched pairs and the score drift beside it. The file is opset 11; per-channel INT8 needs
DequantizeLinear's ``axis`` (opset 13), so the FP32 reference is upgraded to the export opset
once and every variant derives from that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter

from .errors import InvalidOnnxError
from .graph import load_checked, shapes
from .validate import Feed, Runner

IOU = 0.5
CONF = 0.25  # the edge's default score threshold


@dataclass(frozen=True)
class DetectorGraph:
    model: onnx.ModelProto  # upgraded to the export opset
    input_name: str
    input_hw: tuple[int | None, int | None]


def default_path() -> Path:
    from edge.segmenter.yolox import DEFAULT_MODEL

    return DEFAULT_MODEL


def check(path: Path, opset: int) -> DetectorGraph:
    """Load a YOLOX head export ([1, 3, S, S] -> [1, N, 5 + nc]) or raise InvalidOnnxError."""
    model = load_checked(path, what="detector")
    inits = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    outs = shapes(model.graph.output)
    in_shapes = shapes(inputs)
    if len(inputs) != 1 or len(in_shapes[inputs[0].name]) != 4 or len(outs) != 1:
        raise InvalidOnnxError(f"detector {path}: expected one [1, 3, S, S] input and one [1, N, 5 + nc] output, "
                               f"got {in_shapes} -> {outs}")
    if len(next(iter(outs.values()))) != 3:
        raise InvalidOnnxError(f"detector {path}: output must be rank 3 [1, N, 5 + nc], got {outs}")
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current < opset:
        model = version_converter.convert_version(model, opset)
    dims = in_shapes[inputs[0].name]
    hw = tuple(d if isinstance(d, int) and d > 0 else None for d in dims[2:])
    return DetectorGraph(model, inputs[0].name, (hw[0], hw[1]))


def to_feed(pixels: np.ndarray) -> np.ndarray:
    """A calibration image (S, S, 3) RGB uint8 -> the detector's BGR 0..255 input."""
    from edge.segmenter.yolox import to_input

    return to_input(pixels)


def detections(raw: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from edge.segmenter.ops import batched_nms
    from edge.segmenter.yolox import decode

    boxes, scores, ids = decode(raw, size, CONF)
    keep = batched_nms(boxes, scores, ids, 0.45)
    return boxes[keep], scores[keep], ids[keep]


def match(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> list[tuple[int, int, float]]:
    """One-to-one same-class matches (i in a, j in b, IoU) at IoU >= 0.5, best first."""
    from edge.segmenter.ops import box_iou

    ious = box_iou(a[0], b[0]) * (a[2][:, None] == b[2][None, :])
    pairs = np.argwhere(ious >= IOU)
    order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for i, j in pairs[order].tolist():
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, float(ious[i, j])))
    return out


def box_agreement(reference: Runner, candidate: Runner, feeds: Sequence[Feed]) -> dict[str, float]:
    """F1 of candidate vs reference detections over the feeds (both empty = 1), mean IoU, score drift."""
    n_ref = n_got = n_match = 0
    ious: list[float] = []
    drift: list[float] = []
    for f in feeds:
        size = next(iter(f.values())).shape[-1]
        ref, got = detections(reference(f)[0], size), detections(candidate(f)[0], size)
        pairs = match(ref, got)
        n_ref, n_got, n_match = n_ref + len(ref[0]), n_got + len(got[0]), n_match + len(pairs)
        ious += [p[2] for p in pairs]
        drift += [abs(float(ref[1][i]) - float(got[1][j])) for i, j, _ in pairs]
    f1 = 1.0 if n_ref + n_got == 0 else 2 * n_match / (n_ref + n_got)
    return {"box_agreement": round(f1, 6), "matched_mean_iou": round(float(np.mean(ious)) if ious else 1.0, 6),
            "score_drift_mean": round(float(np.mean(drift)) if drift else 0.0, 6),
            "reference_boxes": n_ref, "candidate_boxes": n_got}
