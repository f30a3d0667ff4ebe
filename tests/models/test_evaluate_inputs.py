"""``models eval`` on awkward input: big pictures are scaled down, unreadable ones skipped and
listed, nothing evaluated is exit 2, and the JSON is always strict (no NaN, no Infinity)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.evaluate import main, read_image, strict_json

ARGS = ["--random-init", "--steps", "1", "--device", "cpu", "--mask-ratios", "0.5"]


def strict_load(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_big_image_scaled_unreadable_skipped(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    y, x = np.mgrid[:900, :1200]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(images / "big.jpg")
    (images / "zz_broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out), "--max-side", "96", *ARGS]) == 0
    data = strict_load((out / "models_eval.json").read_text())
    (rec,) = data["images"]
    assert (rec["width"], rec["height"], rec["original_size"]) == (96, 72, [1200, 900]) and rec["grid"] == [9, 12]
    (bad,) = data["failed"]
    assert bad["image"].endswith("zz_broken.png") and data["summary"]["failed"] == 1
    assert any("zz_broken.png: skipped: cannot read image" in r.getMessage() for r in caplog.records)


def test_nothing_readable_is_exit_2_with_strict_json(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tokencast models eval: no image could be read (1 skipped")
    data = strict_load((out / "models_eval.json").read_text())
    assert data["summary"]["images"] == 0 and data["summary"]["psnr_all_tokens"] is None
    assert data["summary"]["ratios"]["0.5"]["gain_over_naive_db"] is None


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["--images", str(tmp_path / "absent"), "--out", str(tmp_path / "o"), *ARGS]) == 2
    assert capsys.readouterr().err.strip() == f"tokencast models eval: --images {tmp_path / 'absent'} does not exist"


def test_strict_json_replaces_non_finite_floats():
    assert strict_json({"a": [float("nan"), 1.0], "b": float("inf"), "c": "x"}) == {"a": [None, 1.0], "b": None, "c": "x"}


@pytest.mark.parametrize("max_side, expected", [(0, (30, 40)), (40, (30, 40)), (20, (15, 20))])
def test_read_image_scales_only_when_larger(tmp_path, max_side, expected):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    rgb, original = read_image(tmp_path / "a.png", max_side)
    assert rgb.shape[:2] == expected and (original is None) == (expected == (30, 40))
