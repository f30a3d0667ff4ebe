"""Person recall of an edge segmenter against YOLO-format box labels (e.g. coco128 val2017).

Recall is counted two ways: a ground-truth person is found when some predicted person box has
IoU >= 0.5 with it (the detection sense), or when any predicted person mask overlaps it at all
(what semantic masking needs: some of the person's tokens are kept). Writes JSON.

    python -m benchmarks.segmenter_recall --images DIR --labels DIR --out recall.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge.segmenter import SegmenterConfig, create_segmenter
from edge.segmenter.ops import box_iou

PERSON_ID = 0


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


def evaluate(images: Path, labels: Path, config: SegmenterConfig, iou: float = 0.5) -> dict:
    seg = create_segmenter(config).load()
    n_gt = hit_iou = hit_any = n_pred = true_pred = 0
    times = []
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        gt = read_person_boxes(labels / (path.stem + ".txt"), w, h)
        t0 = time.perf_counter()
        inst = [i for i in seg.segment(image) if i.class_id == PERSON_ID]
        times.append(time.perf_counter() - t0)
        n_gt += len(gt)
        n_pred += len(inst)
        if not inst:
            continue
        pred = np.asarray([i.box for i in inst])
        ious = box_iou(gt, pred) if len(gt) else np.zeros((0, len(pred)))
        # greedy one-to-one matching, best IoU first
        pairs = np.argwhere(ious >= iou)
        order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
        seen_g: set[int] = set()
        seen_p: set[int] = set()
        for g, p in pairs[order].tolist():
            if g not in seen_g and p not in seen_p:
                seen_g.add(g)
                seen_p.add(p)
        hit_iou += len(seen_g)
        true_pred += len(seen_p)
        union = np.any([i.mask for i in inst], axis=0)
        for x1, y1, x2, y2 in gt:
            r = union[int(y1) : max(int(np.ceil(y2)), int(y1) + 1), int(x1) : max(int(np.ceil(x2)), int(x1) + 1)]
            hit_any += bool(r.any())
    seg.close()
    return {
        "backend": config.backend,
        "mask_mode": config.mask_mode,
        "images": len(files),
        "gt_persons": n_gt,
        "predicted_persons": n_pred,
        "recall_iou50": hit_iou / max(n_gt, 1),
        "recall_any_overlap": hit_any / max(n_gt, 1),
        "precision_iou50": true_pred / max(n_pred, 1),
        "ms_per_image_mean": 1000 * float(np.mean(times)) if times else 0.0,
        "ms_per_image_p90": 1000 * float(np.percentile(times, 90)) if times else 0.0,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--backend", default="opencv")
    p.add_argument("--model", type=Path, default=None, help="yolo-seg ONNX file")
    p.add_argument("--mask-mode", default="ellipse", choices=["box", "ellipse", "grabcut"])
    p.add_argument("--hog-upscale", type=float, default=SegmenterConfig.hog_upscale)
    p.add_argument("--conf", type=float, default=SegmenterConfig.conf_threshold)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.images.is_dir() or not args.labels.is_dir():
        print(f"not a directory: {args.images if not args.images.is_dir() else args.labels}", file=sys.stderr)
        return 2
    config = SegmenterConfig(
        backend=args.backend, model=args.model, mask_mode=args.mask_mode,
        hog_upscale=args.hog_upscale, conf_threshold=args.conf,
    )  # fmt: skip
    result = evaluate(args.images, args.labels, config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
