"""Build the class shape priors the ``colour`` mask mode starts from: mean instance masks per class.

    python -m benchmarks.shape_priors --coco /work/shared/data/coco128 --out edge/segmenter/models/shape_priors.npy

Each COCO instance polygon of the coco128 *train2017* part is cropped to its own box and resized
to 16x16; the per-class mean, shrunk towards the all-class mean by ``--shrink`` pseudo-instances
(most classes have a handful of examples), is the probability that a box pixel is the object.
The val2017 part is left for measuring the masks. Writes a float16 (80, 16, 16) array: derived
statistics of the COCO annotations (CC BY 4.0), no image content.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks.segmenter_recall import mask_box, read_polygons

SIDE = 16


def build(coco: Path, part: str = "train2017", shrink: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    acc = np.zeros((80, SIDE, SIDE))
    count = np.zeros(80)
    for label in sorted((coco / "instance_segmentation" / "labels" / part).glob("*.txt")):
        with Image.open(coco / "images" / part / f"{label.stem}.jpg") as im:
            w, h = im.size
        for cls, mask in read_polygons(label, w, h):
            x1, y1, x2, y2 = mask_box(mask).astype(int)
            if x2 - x1 < 4 or y2 - y1 < 4:
                continue
            crop = mask[y1:y2, x1:x2].astype(np.float32)
            acc[cls] += cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
            count[cls] += 1
    generic = acc.sum(0) / max(count.sum(), 1)
    return ((acc + shrink * generic) / (count + shrink)[:, None, None]).astype(np.float16), count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coco", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shrink", type=float, default=10.0)
    args = p.parse_args(argv)
    if not (args.coco / "instance_segmentation" / "labels" / "train2017").is_dir():
        print(f"{args.coco} lacks instance_segmentation/labels/train2017", file=sys.stderr)
        return 2
    priors, count = build(args.coco, shrink=args.shrink)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, priors)
    print(json.dumps({"out": str(args.out), "instances": int(count.sum()), "person": int(count[0]),
                      "classes_with_10_or_more": int((count >= 10).sum())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
