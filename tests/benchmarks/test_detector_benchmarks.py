"""The detector's benchmark scripts on a tiny coco-shaped folder: recall, mask IoU, tiling, priors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import segmenter_recall, shape_priors, tiling_recall

# the astronaut photo (512 x 512): her box, and a rough polygon of head and shoulders (normalised)
PERSON_BOX = "0 0.45 0.55 0.7 0.9"
PERSON_POLY = "1 0.25 0.15 0.55 0.1 0.7 0.4 0.8 0.95 0.15 0.95 0.2 0.4"


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("coco")
    for part in ("val2017", "train2017"):
        (root / "images" / part).mkdir(parents=True)
        (root / "object_detection" / "labels" / part).mkdir(parents=True)
        (root / "instance_segmentation" / "labels" / part).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(data.astronaut()).save(root / "images" / part / f"{i:03d}.jpg")
            (root / "object_detection" / "labels" / part / f"{i:03d}.txt").write_text(PERSON_BOX + "\n")
            (root / "instance_segmentation" / "labels" / part / f"{i:03d}.txt").write_text(PERSON_POLY + "\n")
    return root


def test_recall_and_mask_iou_per_mode(coco, tmp_path):
    out = tmp_path / "r.json"
    argv = ["--images", str(coco / "images/val2017"), "--labels", str(coco / "object_detection/labels/val2017"),
            "--polygons", str(coco / "instance_segmentation/labels/val2017"), "--out", str(out)]
    assert segmenter_recall.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["backend"] == "yolox" and res["gt_persons"] == 4 and res["recall_iou50"] == 1.0
    ious = res["mask_iou"]
    assert set(ious) == {"box", "ellipse", "colour"} and ious["box"]["instances"] == 4
    assert all(0.0 < v["mean_pixels"] <= 1.0 for v in ious.values())
    assert segmenter_recall.main([*argv[:-2], "--polygons", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_tiling_mosaics_shrink_the_labels_and_run_both_ways(coco, tmp_path):
    frames = tiling_recall.mosaics(coco / "images/val2017", coco / "object_detection/labels/val2017", 2)
    assert len(frames) == 1 and frames[0][0].shape == (1080, 1920, 3) and len(frames[0][1]) == 4
    heights = frames[0][1][:, 3] - frames[0][1][:, 1]
    # the 16:9 crop keeps rows 112..400 of 512, the box (rows 51..512) is cut to them, 288 px -> 540 px
    assert np.allclose(heights, 540.0, atol=1.0)
    out = tmp_path / "t.json"
    assert tiling_recall.main(["--coco", str(coco), "--out", str(out), "--grid", "2"]) == 0
    runs = {r["tiling"]: r for r in json.loads(out.read_text())["runs"]}
    assert runs["always"]["ms_per_frame_p50"] > runs["never"]["ms_per_frame_p50"]
    assert runs["never"]["persons"] == runs["always"]["persons"] == 4


def test_shape_priors_are_built_from_the_train_polygons(coco, tmp_path):
    priors, count = shape_priors.build(coco, shrink=0.0)
    assert priors.shape == (80, 16, 16) and priors.dtype == np.float16 and count[0] == 4 and count[1:].sum() == 0
    assert 0.3 < float(priors[0].mean()) < 0.8 and float(priors[0][0, 0]) < float(priors[0][12, 8])
    assert shape_priors.main(["--coco", str(tmp_path), "--out", str(tmp_path / "p.npy")]) == 2
