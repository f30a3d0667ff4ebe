"""``tokencast models eval`` on two tiny pictures with untrained weights: the JSON it promises."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from models.evaluate import main, naive_fill


def test_eval_writes_per_image_and_summary_figures(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out), "--mask-ratios", "0.3", "0.5", "--limit", "3",
                 "--random-init", "--steps", "2", "--device", "cpu"]) == 0
    data = json.loads((out / "models_eval.json").read_text())
    assert data["summary"]["images"] == len(data["images"]) >= 2
    for rec in data["images"]:
        assert rec["grid"] == [5, 7] and rec["psnr_all_tokens"] > 0
        for key in ("0.3", "0.5"):
            r = rec["ratios"][key]
            assert {"psnr_restored", "psnr_restored_tokens", "psnr_naive_fill", "restore_s"} <= set(r)
            assert abs(r["masked_ratio"] - float(key)) < 0.1
    s = data["summary"]["ratios"]["0.5"]
    assert abs(s["gain_over_naive_db"] - (s["psnr_restored"] - s["psnr_naive_fill"])) < 1e-9


def test_eval_rejects_bad_ratios_and_empty_folders(tmp_path):
    assert main(["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--random-init"]) == 2
    assert main(["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--mask-ratios", "1.2"]) == 2


def test_naive_fill_copies_the_nearest_known_token():
    g = np.arange(12).reshape(3, 4)
    known = np.zeros((3, 4), bool)
    known[0, 0] = known[2, 3] = True
    out = naive_fill(g, known)
    assert out[0, 1] == 0 and out[2, 2] == 11 and out[0, 0] == 0 and out[2, 3] == 11
