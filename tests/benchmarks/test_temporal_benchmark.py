"""benchmarks/temporal.py runs end to end (random-init models, a tiny video) and writes what the
README promises: per-condition means with airtime and frames/hour, the video codec rows, the
equal-PSNR comparison and a plot; bad input is one line with exit 2. Timings are not tested."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import temporal

cv2 = pytest.importorskip("cv2")
pytest.importorskip("av")
H, W = 64, 96


def write_video(path, n=4):
    y, x = np.mgrid[:H, :W]
    base = np.stack([(x * 3) % 256, (y * 3) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (W, H))
    for i in range(n):
        f = base.copy()
        f[16:40, 4 + 12 * i : 28 + 12 * i] = 250
        out.write(f)
    out.release()
    return path


@pytest.mark.slow
def test_writes_json_and_plot_with_every_condition(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TOKENCAST_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    video = write_video(tmp_path / "v.avi")
    out = tmp_path / "out"
    assert temporal.main(["--video", str(video), "--frames", "4", "--step", "1", "--gop", "2", "--budget", "400",
                          "--key-ratio", "1", "--coarse-repeat", "2", "--delta-min-packets", "2", "--ladder", "200", "--loss", "0.3",
                          "--match-tries", "1", "--out", str(out), "--random-init"]) == 0
    report = json.loads((out / "temporal.json").read_text())
    res = report["results"]
    assert {"delta", "independent", "delta_loss0.3", "independent_loss0.3", "independent_200"} <= set(res)
    d, ind = res["delta"], res["independent"]
    assert (d["key_frames"], d["delta_frames"]) == (2, 2) and ind["key_frames"] == 4
    assert d["bytes_per_frame"] <= 400 and ind["bytes_per_frame"] <= 400  # copies are paid from the budget
    assert (d["coarse_repeat"], ind["coarse_repeat"]) == (2, 1)
    assert all(r["fragments"] >= 2 for r in report["per_frame"]["delta"])
    for r in res.values():
        assert r["frames_per_hour_1pct_sf7"] == pytest.approx(36.0 / r["airtime_sf7_s"])
        assert r["airtime_sf10_s"] > r["airtime_sf7_s"]
    if "hevc" in res:  # none when no sweep point fits the delta stream's bytes
        assert res["hevc"]["bytes_per_frame"] <= d["bytes_per_frame"]
    assert len(report["per_frame"]["delta"]) == 4 and (out / "temporal.png").stat().st_size > 0
    assert report["config"]["restorer"] == "random"


def test_match_independent_reaims_until_within():
    results = {"independent_100": {"bytes_per_frame": 100.0, "psnr": 20.0, "loss": 0.0},
               "independent_400": {"bytes_per_frame": 400.0, "psnr": 23.0, "loss": 0.0}}
    asked = []

    def run(label, budget):  # a concave curve: the linear aim overshoots, the second lands
        asked.append(budget)
        results[label] = {"budget": budget, "bytes_per_frame": float(budget), "loss": 0.0,
                          "psnr": 20.0 + 3.0 * ((budget - 100) / 300) ** 0.5}
        return results[label]

    m = temporal.match_independent(run, results, 21.0, 0.3, 3)
    assert asked[0] == 200 and len(asked) >= 2 and abs(m["psnr"] - 21.0) <= 0.3
    assert temporal.match_independent(run, results, 30.0, 0.3, 3) is None  # outside the curve


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert temporal.main(["--video", str(tmp_path / "none.avi"), "--out", str(tmp_path)]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert temporal.main(["--video", str(tmp_path / "none.avi"), "--loss", "1.5"]) == 2
