"""Does semantic-aware masking keep objects detectable? The paper's pseudo-ground-truth study.

    python benchmarks/semantic_study.py --images DIR --out DIR [--ratios 0.3 0.5]
        [--coco /work/shared/data/coco128] [--limit N] [--segmenter yolox]

The detector (the edge segmenter, ``--segmenter``) run on the original gives pseudo ground truth.
At each masked ratio the same number of tokens is kept two ways: semantic-aware (the edge
sampler's keep order: objects first, then the dispersal lattice, then by recoverability) and
uniformly random; the cloud restores the rest and decodes. The detector then runs on each
reconstruction: object recall and AP at IoU 0.5 (class-aware matching, all-point interpolated
AP, averaged over the classes present) and ROI-PSNR inside the pseudo-GT masks. With ``--coco``
the same is done on ``images/val2017`` (images the default detector was not trained on) against
its real YOLO box labels (``--coco-classes``, default person only; ``0 1 2 3 5 7`` adds the
vehicles), with the original's own score as the reference row. The detector is the edge
default (YOLOX-Nano, ``--segmenter``); the restorer runs where ``--device`` says, so on a CPU
keep ``--limit`` modest. Writes study.json:
``{ratio: {semantic: {recall, ap50, roi_psnr}, random: {...}}, "coco": {...}, "meta": {...}}``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.quality import roi_mask
from benchmarks.report import fail, images_in, load_image, nanmean, pyplot, write_json
from edge.segmenter import SegmenterConfig
from models.metrics import masked_psnr

PROG = "semantic_study"
IOU = 0.5


@dataclass
class DetectionTally:
    """Matches of predictions to ground truth, per class, pooled over images."""

    n_gt: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    scored: dict[int, list[tuple[float, bool]]] = field(default_factory=lambda: defaultdict(list))
    hits: int = 0
    roi_psnr: list[float] = field(default_factory=list)

    def add(self, gt_boxes: np.ndarray, gt_cls: np.ndarray, boxes: np.ndarray, cls: np.ndarray,
            scores: np.ndarray) -> None:
        from edge.segmenter.ops import box_iou

        for c in set(gt_cls.tolist()) | set(cls.tolist()):
            g = gt_boxes[gt_cls == c]
            sel = np.flatnonzero(cls == c)
            sel = sel[np.argsort(-scores[sel], kind="stable")]
            self.n_gt[c] += len(g)
            taken = np.zeros(len(g), bool)
            ious = box_iou(boxes[sel], g) if len(g) and len(sel) else np.zeros((len(sel), len(g)))
            for row, i in enumerate(sel):  # greedy by score, as VOC/COCO matching does
                j = int(np.argmax(np.where(taken, -1.0, ious[row]))) if len(g) else -1
                ok = j >= 0 and not taken[j] and ious[row, j] >= IOU
                if ok:
                    taken[j] = True
                self.scored[c].append((float(scores[i]), bool(ok)))
            self.hits += int(taken.sum())

    def summary(self) -> dict[str, float]:
        aps = [average_precision(self.scored[c], n) for c, n in self.n_gt.items() if n > 0]
        total = sum(self.n_gt.values())
        return {"recall": self.hits / total if total else float("nan"),
                "ap50": float(np.mean(aps)) if aps else float("nan"),
                "roi_psnr": nanmean(self.roi_psnr), "objects": total}


def average_precision(scored: list[tuple[float, bool]], n_gt: int) -> float:
    """All-point interpolated AP of (score, is-true-positive) predictions against ``n_gt`` objects."""
    if n_gt == 0:
        return float("nan")
    if not scored:
        return 0.0
    tp = np.array([t for _, t in sorted(scored, key=lambda x: -x[0])], float)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = np.concatenate(([0.0], ctp / n_gt, [1.0]))
    precision = np.concatenate(([1.0], ctp / np.maximum(ctp + cfp, 1e-12), [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))


def detections(instances: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.array([i.box for i in instances], float).reshape(-1, 4)
    return boxes, np.array([i.class_id for i in instances], int), np.array([i.score for i in instances], float)


def yolo_boxes(label_file: Path, width: int, height: int, classes: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """xyxy pixel boxes and class ids from a YOLO label file, only ``classes``."""
    rows = [r.split() for r in label_file.read_text().splitlines() if r.strip()] if label_file.is_file() else []
    out = [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in rows if int(r[0]) in classes]
    boxes = np.array([[(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
                      for _, cx, cy, w, h in out], float).reshape(-1, 4)
    return boxes, np.array([c for c, *_ in out], int)


def masks_for(pipe, im: np.ndarray, instances: list, grid: np.ndarray, ratio: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Kept maps with the same count for semantic-aware and random masking at ``ratio``."""
    from benchmarks.tokencast_link import random_kept_ratio
    from edge.complexity import pad_to_multiple
    from edge.importance import semantic_scores
    from edge.sampler import keep_order

    cfg = pipe.config
    gh, gw = grid.shape
    keep = int(round((1.0 - ratio) * gh * gw))
    sem = semantic_scores(instances, gh, gw, cfg.factor, cfg.importance)
    pri = pipe.recoverability.priority(pad_to_multiple(im, cfg.factor))
    order, _, _ = keep_order(sem, pri, keep, cfg.sampler)
    semantic = np.zeros(gh * gw, bool)
    semantic[order[:keep]] = True
    return {"semantic": semantic.reshape(gh, gw), "random": random_kept_ratio((gh, gw), 1.0 - ratio, rng)}


def run_study(codec, pipe, paths: list[Path], ratios: list[float], max_side: int, seed: int,
              labels: Path | None = None, classes: set[int] | None = None, desc: str = PROG) -> dict:
    from benchmarks.tokencast_link import reconstruct
    from edge.complexity import pad_to_multiple
    from link.dc import block_means

    tallies: dict[str, DetectionTally] = defaultdict(DetectionTally)
    rng = np.random.default_rng(seed)
    for path in tqdm(paths, desc=desc, file=sys.stderr):
        im = load_image(path, max_side)
        h, w = im.shape[:2]
        inst = pipe.segmenter.segment(im)
        if labels is None:
            gt_boxes, gt_cls, _ = detections(inst)
            roi = roi_mask(inst, (h, w))
        else:
            gt_boxes, gt_cls = yolo_boxes(labels / f"{path.stem}.txt", w, h, classes or {0})
            roi = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in gt_boxes.astype(int):
                roi[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1] = True
            b, c, s = detections([i for i in inst if i.class_id in (classes or {0})])
            tallies["original"].add(gt_boxes, gt_cls, b, c, s)
        layered = hasattr(codec, "coarse_levels")
        grid, coarse = pipe.encode_layers(pad_to_multiple(im, 16 if layered else pipe.config.factor))
        grid = grid[: -(-h // pipe.config.factor), : -(-w // pipe.config.factor)]
        means = block_means(im) if coarse is not None and pipe.config.block_means else None
        for ratio in ratios:
            for method, kept in masks_for(pipe, im, inst, grid, ratio, rng).items():
                recon = reconstruct(codec, grid, kept, w, h, seed, coarse, means)
                pred = pipe.segmenter.segment(recon)
                if labels is not None:
                    pred = [i for i in pred if i.class_id in (classes or {0})]
                t = tallies[f"{ratio:g}/{method}"]
                t.add(gt_boxes, gt_cls, *detections(pred))
                t.roi_psnr.append(masked_psnr(im, recon, roi))
    out: dict = {f"{r:g}": {m: tallies[f"{r:g}/{m}"].summary() for m in ("semantic", "random")} for r in ratios}
    if labels is not None:
        out["original"] = tallies["original"].summary()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5], help="masked ratios")
    p.add_argument("--tokenizer", type=int, choices=(1, 3), default=3,
                   help="3: fine tokens masked over the coarse layer (wire v2, default); 1: fine tokens only")
    p.add_argument("--coco", type=Path, default=None, help="coco128 root (images/val2017 + YOLO labels)")
    p.add_argument("--coco-classes", type=int, nargs="+", default=[0], help="YOLO class ids (0 = person)")
    p.add_argument("--coco-limit", type=int, default=None, help="coco images (default: --limit)")
    p.add_argument("--labelled-only", action="store_true",
                   help="coco: only images with at least one object of --coco-classes (each costs minutes on a CPU)")
    p.add_argument("--segmenter", default=SegmenterConfig.backend)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--max-side", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="first 2 images of each set")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-init", action="store_true", help="untrained weights (tests)")
    return p


def plot_study(result: dict, path: Path) -> None:
    """Semantic vs random masking per ratio: recall, AP50 and ROI-PSNR, one row per image set."""
    plt = pyplot()
    sets = [("pseudo GT", result)] + ([("coco labels", result["coco"])] if "coco" in result else [])
    fig, axes = plt.subplots(len(sets), 3, figsize=(11, 3.2 * len(sets)), squeeze=False)
    for row, (name, part) in zip(axes, sets):
        ratios = [k for k in part if k not in ("coco", "meta", "original")]
        x = np.arange(len(ratios))
        for ax, metric in zip(row, ("recall", "ap50", "roi_psnr")):
            for off, mode in ((-0.2, "semantic"), (0.2, "random")):
                vals = [part[r][mode][metric] or 0.0 for r in ratios]
                ax.bar(x + off, vals, width=0.4, label=mode)
            ax.set_xticks(x, [f"{float(r):.0%} masked" for r in ratios])
            ax.set_title(f"{name}: {metric}")
        row[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if any(not 0 < r < 1 for r in args.ratios):
        return fail(PROG, f"masked ratios must lie in (0, 1), got {args.ratios}")
    limit = 2 if args.quick and not args.limit else args.limit
    paths = images_in(args.images, limit)
    if not paths:
        return fail(PROG, f"no images in {args.images}")
    from benchmarks.tokencast_link import build_pipeline, load_codec

    codec = load_codec(args.tokenizer, device=args.device, random_init=args.random_init)
    with build_pipeline(codec, args.segmenter) as pipe:
        result = run_study(codec, pipe, paths, args.ratios, args.max_side, args.seed)
        if args.coco is not None:
            img_dir, lab_dir = args.coco / "images" / "val2017", args.coco / "object_detection" / "labels" / "val2017"
            if not img_dir.is_dir() or not lab_dir.is_dir():
                return fail(PROG, f"{args.coco} lacks images/val2017 or object_detection/labels/val2017")
            coco_paths = images_in(img_dir, 0)
            if args.labelled_only:
                wanted = set(args.coco_classes)
                coco_paths = [q for q in coco_paths if yolo_boxes(lab_dir / f"{q.stem}.txt", 1, 1, wanted)[1].size]
            coco_limit = limit if args.coco_limit is None else args.coco_limit
            coco_paths = coco_paths[:coco_limit] if coco_limit else coco_paths
            result["coco"] = run_study(codec, pipe, coco_paths, args.ratios, args.max_side,
                                       args.seed, lab_dir, set(args.coco_classes), "coco")
    result["meta"] = {
        "segmenter": args.segmenter, "tokenizer": args.tokenizer, "images": len(paths), "random_init": args.random_init, "iou": IOU,
        "limit": limit, "ratios": args.ratios, "coco_classes": args.coco_classes, "device": args.device,
        "coco_limit": args.coco_limit, "labelled_only": args.labelled_only,
        "notes": ["Pseudo GT: the segmenter's instances on the original; semantic and random keep the same "
                  "token count; recall and AP50 are class-aware; AP averages over classes present.",
                  "coco: real YOLO box labels of the chosen classes; ROI-PSNR inside those boxes; 'original' is "
                  "the detector on the uncompressed image."],
    }
    write_json(args.out / "study.json", result)
    plot_study(result, args.out / "study.png")
    for name, part in (("pseudo GT", result), ("coco", result.get("coco"))):
        for r in args.ratios if part else []:
            for m in ("semantic", "random"):
                s = part[f"{r:g}"][m]
                print(f"{name} ratio {r:g} {m:>8}: recall {s['recall']:.3f} AP50 {s['ap50']:.3f} "
                      f"ROI-PSNR {s['roi_psnr']:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
