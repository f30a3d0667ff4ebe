"""layer_costs.py on two tiny images with untrained weights: the split adds up to the frame."""

from __future__ import annotations

import json

from benchmarks.layer_costs import main


def test_split_adds_up_and_stays_in_budget(tiny_images, tmp_path):
    out = tmp_path / "lc"
    assert main(["--images", str(tiny_images), "--out", str(out), "--size", "192x128", "--bpp", "0.3",
                 "--random-init", "--device", "cpu"]) == 0
    rep = json.loads((out / "layer_costs.json").read_text())
    assert rep["images"] == 2 and rep["size"] == [192, 128]
    for r in rep["rows"]:
        assert r["coarse_bytes"] + r["fine_bytes"] == r["total_bytes"] <= 0.3 * 192 * 128 / 8
        assert r["coarse_fragments"] >= 1 and r["coarse_overhead_bytes"] < r["coarse_bytes"]
        assert r["fine_tokens"] == 0 or r["bits_per_fine_token"] > r["bits_per_fine_token_payload"] > 0
