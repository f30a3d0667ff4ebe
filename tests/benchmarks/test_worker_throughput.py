"""worker_throughput.py end to end on two tiny pictures: the real worker stores every frame."""

from __future__ import annotations

import json

from benchmarks.worker_throughput import main


def test_quick_run_stores_every_frame_for_each_batch_size(tiny_images, tmp_path):
    out = tmp_path / "wt"
    assert main(["--images", str(tiny_images), "--out", str(out), "--quick", "--max-batch", "1", "3"]) == 0
    data = json.loads((out / "worker_throughput.json").read_text())
    assert [r["max_batch"] for r in data["runs"]] == [1, 3]
    for r in data["runs"]:
        assert r["frames"] == 4 and r["frames_per_s"] > 0
    assert data["runs"][0]["batches"] == 4 and data["runs"][1]["batches"] == 2


def test_bad_arguments_fail_cleanly(tiny_images, tmp_path):
    assert main(["--images", str(tiny_images), "--out", str(tmp_path), "--keep", "0"]) != 0
    assert main(["--images", str(tmp_path / "none"), "--out", str(tmp_path)]) != 0
