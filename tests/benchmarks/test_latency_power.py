"""latency_power.py runs on the edge: it must work without ever importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks.latency_power import parse_pmic

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_without_torch(tiny_images, tmp_path):
    out = tmp_path / "lat"
    script = textwrap.dedent(f"""
        import sys
        from benchmarks import latency_power
        rc = latency_power.main(["--images", {str(tiny_images)!r}, "--out", {str(out)!r}, "--quick",
                                 "--random-init", "--bpp", "0.12", "--frame-size", "96x64"])
        assert rc == 0, rc
        assert "torch" not in sys.modules, "latency_power imported torch"
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=240)
    data = json.loads((out / "latency.json").read_text())
    assert {"stages", "total_p50_ms", "fps", "peak_rss_mb", "power_source", "energy_per_frame_mj",
            "link_budget"} <= set(data)
    assert set(data["stages"]) == {"encode", "detect", "score", "wait", "select", "pack"}
    assert data["frame_size"] == [96, 64] and data["runs"][0]["detector"] == "yolox"
    assert all({"p50_ms", "p95_ms"} <= set(v) for v in data["stages"].values())
    assert [r["sf"] for r in data["link_budget"]] == [7, 8, 9, 10, 11, 12]
    assert data["link_budget"][0]["frames_per_hour"] > data["link_budget"][-1]["frames_per_hour"]
    assert data["torch_loaded"] is False


def test_parse_pmic():
    text = "  VDD_CORE_A current(7)=2.00000000A\n  VDD_CORE_V volt(15)=0.50000000V\n  EXT5V_V volt(24)=5.1V\n"
    assert parse_pmic(text) == 1.0
