"""rate_distortion.py end to end on two tiny images with untrained weights, plus its pure parts."""

from __future__ import annotations

import json
import math

import numpy as np

from benchmarks import classical
from benchmarks.quality import ms_ssim, ms_ssim_scales
from benchmarks.rate_distortion import main

FIELDS = {"method", "image", "target_bpp", "bpp", "psnr", "ms_ssim", "roi_psnr", "haarpsi", "dss", "vsi"}


def test_quick_run_writes_records_csv_and_plot(tiny_images, tmp_path):
    out = tmp_path / "rd"
    assert main(["--images", str(tiny_images), "--out", str(out), "--quick", "--random-init",
                 "--codecs", "jpeg", "webp"]) == 0
    records = json.loads((out / "rd.json").read_text())
    assert (out / "rd.csv").is_file() and (out / "rd.png").stat().st_size > 0
    assert all(FIELDS <= set(r) for r in records)
    methods = {r["method"] for r in records}
    assert {"tokencast", "tokencast-random", "tokenizer-all", "jpeg", "webp"} <= methods
    for r in records:
        if r["method"] in ("tokencast", "tokencast-random") and r["bpp"] is not None:
            assert r["bpp"] <= r["target_bpp"] + 1e-9  # the exact byte budget is never exceeded
    summary = json.loads((out / "rd_summary.json").read_text())
    assert summary["notes"] and summary["summary"]


def test_classical_search_stays_under_budget():
    rng = np.random.default_rng(1)
    im = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    for name in ("jpeg", "webp"):
        coded = classical.at_rate(classical.available_codecs()[name], im, 2.0, iters=4)
        assert coded.recon.shape == im.shape
        if coded.fits:
            assert len(coded.data) * 8 <= 2.0 * 64 * 96


def test_ms_ssim_fewer_scales_for_small_images():
    assert ms_ssim_scales(512) == 5 and ms_ssim_scales(96) == 4 and ms_ssim_scales(12) == 1
    im = (np.random.default_rng(2).random((40, 60, 3)) * 255).astype(np.uint8)
    assert math.isclose(ms_ssim(im, im), 1.0, rel_tol=1e-6)
