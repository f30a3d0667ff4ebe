"""What tiling buys and costs: person recall and detector time on wide frames of small people.

    python -m benchmarks.tiling_recall --coco /work/shared/data/coco128 --out tiling.json [--grid 3]

No labelled aerial footage ships with the project, so the wide frames are built from labelled
photographs: each 1920x1080 frame is a ``--grid`` x ``--grid`` mosaic of coco128 val2017 images,
each centre-cropped to 16:9 and shrunk into its cell (with the default 3 x 3, people are a third
of their size in the photo, a few to a few tens of pixels tall, as a wide-angle or drone view
shows them). Labels follow the crop and the scale; a person cut by more than half by the crop is
dropped. The same default detector then runs with ``tiling = never`` and ``always`` (3x3 tiles
plus the whole frame): person recall at IoU 0.5 (greedy one-to-one) and p50 time per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.segmenter_recall import greedy_pairs, read_person_boxes
from edge.segmenter import SegmenterConfig, create_segmenter
from edge.segmenter.ops import box_iou

FRAME = (1920, 1080)


def mosaics(images: Path, labels: Path, grid: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, person boxes xyxy) per mosaic of grid x grid photos, in file order."""
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    cw, ch = FRAME[0] // grid, FRAME[1] // grid
    out = []
    for start in range(0, len(files) - grid * grid + 1, grid * grid):
        frame = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
        boxes = []
        for k, path in enumerate(files[start : start + grid * grid]):
            with Image.open(path) as im:
                img = im.convert("RGB")
            w, h = img.size
            s = min(w / cw, h / ch)
            crop_w, crop_h = cw * s, ch * s
            x0, y0 = (w - crop_w) / 2, (h - crop_h) / 2
            cell = img.crop((round(x0), round(y0), round(x0 + crop_w), round(y0 + crop_h))).resize((cw, ch))
            ox, oy = (k % grid) * cw, (k // grid) * ch
            frame[oy : oy + ch, ox : ox + cw] = np.asarray(cell)
            for b in read_person_boxes(labels / f"{path.stem}.txt", w, h):
                area = (b[2] - b[0]) * (b[3] - b[1])
                c = np.clip(b - [x0, y0, x0, y0], 0, [crop_w, crop_h, crop_w, crop_h])
                if area <= 0 or (c[2] - c[0]) * (c[3] - c[1]) < 0.5 * area:
                    continue
                boxes.append(c / s + [ox, oy, ox, oy])
        out.append((frame, np.asarray(boxes, np.float64).reshape(-1, 4)))
    return out


def evaluate(frames: list[tuple[np.ndarray, np.ndarray]], tiling: str, threads: int) -> dict:
    cfg = SegmenterConfig(tiling=tiling, mask_mode="box")
    cfg.runtime.intra_op_threads = threads
    n_gt = hits = 0
    times = []
    heights = []
    with create_segmenter(cfg) as seg:
        seg.detect(frames[0][0])  # warm-up
        for frame, gt in frames:
            t0 = time.perf_counter()
            boxes, _, ids = seg.detect(frame)
            times.append((time.perf_counter() - t0) * 1000)
            pred = boxes[ids == 0]
            n_gt += len(gt)
            heights += (gt[:, 3] - gt[:, 1]).tolist()
            if len(gt) and len(pred):
                hits += len(greedy_pairs(box_iou(gt, pred), 0.5))
    return {"tiling": tiling, "persons": n_gt, "recall_iou50": hits / max(n_gt, 1),
            "ms_per_frame_p50": float(np.median(times)), "ms_per_frame_p90": float(np.percentile(times, 90)),
            "person_height_px_median": float(np.median(heights)) if heights else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coco", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--grid", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = runtime default)")
    args = p.parse_args(argv)
    images, labels = args.coco / "images" / "val2017", args.coco / "object_detection" / "labels" / "val2017"
    if not images.is_dir() or not labels.is_dir():
        print(f"{args.coco} lacks images/val2017 or object_detection/labels/val2017", file=sys.stderr)
        return 2
    frames = mosaics(images, labels, args.grid)
    result = {"frames": len(frames), "frame_size": list(FRAME), "grid": args.grid,
              "runs": [evaluate(frames, t, args.threads) for t in ("never", "always")]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
