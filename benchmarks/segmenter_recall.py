"""Person recall of an edge segmenter against YOLO box labels, and mask IoU against instance polygons.

Recall is counted two ways: a ground-truth person is found when some predicted person box has
IoU >= 0.5 with it (the detection sense), or when any predicted person mask overlaps it at all
(what semantic masking needs: some of the person's tokens are kept). With ``--polygons`` (a
YOLO-seg label folder, e.g. coco128's ``instance_segmentation/labels/val2017``, class ids in
COCO's 91-id numbering) every ground-truth instance matched by a detection of its class (box IoU
>= 0.5, greedy) is scored by the IoU of the predicted object mask with its polygon, once per
``--mask-modes`` entry on the same detections, in pixels and on the 8x8 token grid (a token is
the object's when half its patch is). Writes JSON.

    python -m benchmarks.segmenter_recall --images DIR --labels DIR --out recall.json
        [--polygons DIR --mask-modes box ellipse colour] [--backend yolox] [--tiling never]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from edge.segmenter import SegmenterConfig, create_segmenter
from edge.segmenter.ops import box_iou
from edge.segmenter.refine import box_mask

PERSON_ID = 0
TOKEN = 8
# COCO's 91-id category ids in the contiguous 0-79 order (index = YOLO class id)
COCO91 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
          32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
          58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87,
          88, 89, 90)  # fmt: skip
TO_CONTIGUOUS = {c: i for i, c in enumerate(COCO91)}


def read_person_boxes(label_file: Path, width: int, height: int) -> np.ndarray:
    """xyxy pixel boxes of class 0 from a YOLO label file (class cx cy w h, normalised)."""
    if not label_file.is_file():
        return np.zeros((0, 4))
    rows = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
    boxes = [
        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        for c, cx, cy, w, h in ((int(r[0]), *map(float, r[1:5])) for r in rows)
        if c == PERSON_ID
    ]
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def read_polygons(label_file: Path, width: int, height: int) -> list[tuple[int, np.ndarray]]:
    """(contiguous class id, bool mask) per instance of a YOLO-seg label file in 91-id numbering."""
    out = []
    if not label_file.is_file():
        return out
    for line in label_file.read_text().splitlines():
        r = line.split()
        if len(r) < 7 or int(r[0]) not in TO_CONTIGUOUS:
            continue
        pts = np.asarray(r[1:], np.float64).reshape(-1, 2) * [width, height]
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        out.append((TO_CONTIGUOUS[int(r[0])], mask.astype(bool)))
    return out


def mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) if len(xs) else np.zeros(4)


def greedy_pairs(ious: np.ndarray, thr: float) -> list[tuple[int, int]]:
    """One-to-one (row, col) matches with IoU >= thr, best first."""
    pairs = np.argwhere(ious >= thr)
    order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
    seen_r: set[int] = set()
    seen_c: set[int] = set()
    out = []
    for r, c in pairs[order].tolist():
        if r not in seen_r and c not in seen_c:
            seen_r.add(r)
            seen_c.add(c)
            out.append((r, c))
    return out


def token_mask(mask: np.ndarray) -> np.ndarray:
    """A token is the object's when at least half its 8x8 patch is."""
    h, w = mask.shape
    gh, gw = -(-h // TOKEN), -(-w // TOKEN)
    pad = np.zeros((gh * TOKEN, gw * TOKEN), np.float32)
    pad[:h, :w] = mask
    return pad.reshape(gh, TOKEN, gw, TOKEN).mean(axis=(1, 3)) >= 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def evaluate(images: Path, labels: Path, config: SegmenterConfig, iou_thr: float = 0.5,
             polygons: Path | None = None, mask_modes: tuple[str, ...] = ()) -> dict:
    seg = create_segmenter(config).load()
    n_gt = hit_iou = hit_any = n_pred = true_pred = 0
    times = []
    mask_iou: dict[str, dict[str, list[float]]] = {m: {"pixels": [], "tokens": [], "person": []} for m in mask_modes}
    mask_ms: dict[str, list[float]] = {m: [] for m in mask_modes}
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        gt = read_person_boxes(labels / (path.stem + ".txt"), w, h)
        t0 = time.perf_counter()
        found = seg.segment(image)
        times.append(time.perf_counter() - t0)
        inst = [i for i in found if i.class_id == PERSON_ID]
        n_gt += len(gt)
        n_pred += len(inst)
        if polygons is not None and mask_modes and found:
            polys = read_polygons(polygons / (path.stem + ".txt"), w, h)
            for c in {c for c, _ in polys}:
                g = [m for k, m in polys if k == c]
                p = [i for i in found if i.class_id == c]
                if not p:
                    continue
                ious = box_iou(np.array([mask_box(m) for m in g]), np.array([i.box for i in p]))
                for gi, pi in greedy_pairs(ious, iou_thr):
                    for mode in mask_modes:
                        t1 = time.perf_counter()
                        m = box_mask((h, w), np.asarray(p[pi].box), mode, image, c)
                        mask_ms[mode].append((time.perf_counter() - t1) * 1000)
                        v = iou(m, g[gi])
                        mask_iou[mode]["pixels"].append(v)
                        mask_iou[mode]["tokens"].append(iou(token_mask(m), token_mask(g[gi])))
                        if c == PERSON_ID:
                            mask_iou[mode]["person"].append(v)
        if not inst:
            continue
        pred = np.asarray([i.box for i in inst])
        ious = box_iou(gt, pred) if len(gt) else np.zeros((0, len(pred)))
        matched = greedy_pairs(ious, iou_thr)
        hit_iou += len(matched)
        true_pred += len(matched)
        union = np.any([i.mask for i in inst], axis=0)
        for x1, y1, x2, y2 in gt:
            r = union[int(y1) : max(int(np.ceil(y2)), int(y1) + 1), int(x1) : max(int(np.ceil(x2)), int(x1) + 1)]
            hit_any += bool(r.any())
    seg.close()
    result = {
        "backend": config.backend,
        "mask_mode": config.mask_mode,
        "conf_threshold": config.conf_threshold,
        "tiling": config.tiling,
        "images": len(files),
        "gt_persons": n_gt,
        "predicted_persons": n_pred,
        "recall_iou50": hit_iou / max(n_gt, 1),
        "recall_any_overlap": hit_any / max(n_gt, 1),
        "precision_iou50": true_pred / max(n_pred, 1),
        "ms_per_image_mean": 1000 * float(np.mean(times)) if times else 0.0,
        "ms_per_image_p50": 1000 * float(np.median(times)) if times else 0.0,
        "ms_per_image_p90": 1000 * float(np.percentile(times, 90)) if times else 0.0,
    }
    if mask_modes:
        result["mask_iou"] = {
            m: {"instances": len(v["pixels"]), "mean_pixels": _mean(v["pixels"]), "mean_tokens": _mean(v["tokens"]),
                "mean_person_pixels": _mean(v["person"]), "persons": len(v["person"]),
                "ms_per_object_p50": float(np.median(mask_ms[m])) if mask_ms[m] else None}
            for m, v in mask_iou.items()
        }
    return result


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--backend", default=SegmenterConfig.backend)
    p.add_argument("--model", type=Path, default=None, help="ONNX file (yolo-seg; yolox: default the shipped one)")
    p.add_argument("--mask-mode", default=SegmenterConfig.mask_mode, choices=["box", "ellipse", "colour", "grabcut"])
    p.add_argument("--polygons", type=Path, default=None, help="YOLO-seg polygon labels (91-id classes)")
    p.add_argument("--mask-modes", nargs="+", default=["box", "ellipse", "colour"],
                   choices=["box", "ellipse", "colour", "grabcut"], help="modes compared with --polygons")
    p.add_argument("--tiling", default=SegmenterConfig.tiling, choices=["auto", "always", "never"])
    p.add_argument("--tiles", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"))
    p.add_argument("--hog-upscale", type=float, default=SegmenterConfig.hog_upscale)
    p.add_argument("--conf", type=float, default=SegmenterConfig.conf_threshold)
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = runtime default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for d in (args.images, args.labels, args.polygons):
        if d is not None and not d.is_dir():
            print(f"not a directory: {d}", file=sys.stderr)
            return 2
    config = SegmenterConfig(
        backend=args.backend, model=args.model, mask_mode=args.mask_mode, tiling=args.tiling,
        hog_upscale=args.hog_upscale, conf_threshold=args.conf,
    )  # fmt: skip
    config.runtime.intra_op_threads = args.threads
    if args.tiles:
        config.tiles = list(args.tiles)
    modes = tuple(args.mask_modes) if args.polygons else ()
    result = evaluate(args.images, args.labels, config, polygons=args.polygons, mask_modes=modes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
