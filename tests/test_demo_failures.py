"""One picture failing never costs the others: skipped, logged, recorded, and the run goes on.

A budget below an empty frame's cost names the smallest budget that works for that picture; a
run in which nothing could be sent exits 2 and still writes its report; lost frames are named.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from edge.sampler import BudgetConfig, budget_limit
from tokencast import demo
from tokencast.demo import summarize


def folder(tmp_path: Path, sizes: dict[str, tuple[int, int]], broken: tuple[str, ...] = ()) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(d / f"{name}.png")
    for name in broken:
        (d / name).write_bytes(b"\x89PNG truncated")
    return d


def run(images: Path, out: Path, *extra: str) -> tuple[int, dict]:
    rc = demo.main(["--images", str(images), "--out", str(out), "--random-init", *extra])
    return rc, json.loads((out / "report.json").read_text())


def test_bad_and_too_small_images_are_skipped_and_the_rest_is_reported(tmp_path, capsys, caplog):
    images = folder(tmp_path, {"a_good": (96, 128), "b_dot": (1, 1), "c_small": (48, 64)}, broken=("d_bad.png",))
    rc, report = run(images, tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    assert [r["name"] for r in report["images"]] == ["a_good"] and report["images"][0]["received"]
    failed = {f["name"]: f for f in report["failed"]}
    assert set(failed) == {"b_dot", "c_small", "d_bad"} == set(report["summary"]["failed"])
    assert failed["d_bad"]["error"] == "ImageInputError" and "cannot read image" in failed["d_bad"]["message"]
    for name, (w, h) in (("b_dot", (1, 1)), ("c_small", (64, 48))):
        f = failed[name]
        assert f["error"] == "BudgetTooSmall" and f"for a {w}x{h} image" in f["message"]
        assert f"{name}: skipped: {f['message']}" in [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        # the minimum named is enough for an empty frame, and the default is below it
        minimum = float(re.search(r"minimum (\S+) bpp", f["message"]).group(1))
        empty = float(re.search(r"costs (\d+) bytes", f["message"]).group(1))
        assert budget_limit(BudgetConfig("bpp", minimum), w, h) >= empty > budget_limit(BudgetConfig("bpp", 0.074), w, h)
    assert (tmp_path / "out" / "reconstructions" / "a_good.png").is_file()


def test_a_budget_too_small_for_every_image_exits_2_naming_the_minimum(tmp_path, capsys, caplog):
    images = folder(tmp_path, {"one": (96, 128)})
    rc, report = run(images, tmp_path / "out", "--budget-bpp", "0.001")
    lines = [f"ERROR {r.name}: {r.getMessage()}" for r in caplog.records if r.levelname == "ERROR"]
    lines += [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("tokencast")]
    assert rc == 2 and report["images"] == [] and report["failed"][0]["error"] == "BudgetTooSmall"
    assert re.fullmatch(r"ERROR tokencast\.demo: one: skipped: budget 0\.001 bpp is below the minimum [0-9.]+ bpp "
                        r"for a 128x96 image \(an empty frame costs \d+ bytes\)", lines[0]), lines
    assert lines[1].startswith("tokencast demo: nothing sent: 1 of 1 images skipped")
    # the minimum it names works
    minimum = re.search(r"minimum (\S+) bpp", lines[0]).group(1)
    rc, report = run(images, tmp_path / "out2", "--budget-bpp", minimum)
    assert rc == 0 and report["images"][0]["bytes"] > 0


def test_summary_names_lost_frames_and_says_what_the_means_cover():
    base = {"bytes": 100, "fragments_sent": 2, "fragments_lost": 0, "psnr": 20.0}
    rows = [{**base, "name": "a", "received": True}, {**base, "name": "b", "received": False, "psnr": None,
                                                       "fragments_lost": 2}]
    s = summarize(rows, [{"name": "c"}])
    assert s["lost"] == ["b"] and s["failed"] == ["c"] and s["received"] == 1
    assert s["mean"]["psnr"] == 20.0 and s["quality_over"] == "received frames"
