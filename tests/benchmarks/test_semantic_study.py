"""semantic_study.py on tiny images (pseudo GT) and a tiny coco-shaped folder (real labels)."""

from __future__ import annotations

import json
import math

from benchmarks.semantic_study import average_precision, main
from tests.benchmarks.conftest import write_images


def test_quick_run_with_coco_labels(tiny_images, tmp_path):
    coco = tmp_path / "coco"
    write_images(coco / "images" / "val2017", n=1)
    labels = coco / "object_detection" / "labels" / "val2017"
    labels.mkdir(parents=True)
    (labels / "im0.txt").write_text("0 0.5 0.5 0.4 0.6\n2 0.2 0.2 0.1 0.1\n")
    out = tmp_path / "study"
    assert main(["--images", str(tiny_images), "--out", str(out), "--quick", "--random-init", "--ratios", "0.5",
                 "--coco", str(coco)]) == 0
    study = json.loads((out / "study.json").read_text())
    assert (out / "study.png").stat().st_size > 0
    for part in (study, study["coco"]):
        for method in ("semantic", "random"):
            assert {"recall", "ap50", "roi_psnr"} <= set(part["0.5"][method])
    assert study["coco"]["0.5"]["semantic"]["objects"] == 1  # person only by default
    assert "original" in study["coco"]


def test_average_precision():
    assert average_precision([(0.9, True), (0.8, True)], 2) == 1.0
    assert average_precision([(0.9, False), (0.8, True)], 1) == 0.5
    assert average_precision([], 3) == 0.0
    assert math.isnan(average_precision([(0.5, False)], 0))
