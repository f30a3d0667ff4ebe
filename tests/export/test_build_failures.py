"""build_engines.py when something goes wrong that is not the user's input: recorded, reported, exit 1.

Also: ``--help`` and a missing ``export`` extra never need onnx, and the shipped MaskGIT (whose
interpolation prior once had no ONNX export) exports with the real weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from export import build, build_engines, manifest, onnx_export

REPO = Path(__file__).resolve().parents[2]


def test_default_opset_matches_the_exporter():
    assert build_engines.DEFAULT_OPSET == onnx_export.DEFAULT_OPSET


def test_a_failed_export_is_in_the_manifest_and_the_rest_still_builds(tmp_path, monkeypatch, capsys):
    real = build.export_onnx

    def broken(source, *a, **k):
        if source.name == "maskgit":
            raise RuntimeError("Unsupported: ONNX export of something\n" + "graph line\n" * 400)
        return real(source, *a, **k)

    monkeypatch.setattr(build, "export_onnx", broken)
    out = tmp_path / "engines"
    rc = build_engines.main(["--out", str(out), "--random-init", "--input-size", "32x32", "--latency-runs", "1",
                             "--models", "scorer", "maskgit", "--precision", "fp32", "fp16"])
    err = capsys.readouterr().err
    assert rc == 1
    data = json.loads((out / "manifest.json").read_text())
    mg = data["models"]["maskgit"]["engines"]
    assert mg["fp32"]["status"] == "failed" and mg["fp32"]["reason"].startswith("RuntimeError: Unsupported")
    assert mg["fp16"]["status"] == "failed" and data["models"]["maskgit"]["recommended"] is None
    assert data["models"]["scorer"]["engines"]["fp32"]["status"] == "ok"
    assert "graph line" not in err and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: {ln} (recorded in {out / 'manifest.json'})" for ln in manifest.failures(data)]
    # a re-run rebuilds what failed instead of reusing it
    monkeypatch.setattr(build, "export_onnx", real)
    assert build_engines.main(["--out", str(out), "--random-init", "--input-size", "32x32", "--latency-runs", "1",
                               "--models", "maskgit", "--precision", "fp32"]) == 0
    assert json.loads((out / "manifest.json").read_text())["models"]["maskgit"]["engines"]["fp32"]["status"] == "ok"


def test_shipped_maskgit_exports(tmp_path):
    """The trained MaskGIT (interpolation prior on) through the exporter and ONNX Runtime."""
    from export.sources import load_source

    try:
        src = load_source("maskgit")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no shipped MaskGIT weights: {exc}")
    assert src.module.cfg.interp_sigma > 0
    onnx_export.export_onnx(src, tmp_path / "mg.onnx", (64, 64))
    assert (tmp_path / "mg.onnx").stat().st_size > 1_000_000


@pytest.mark.parametrize("argv", [["--help"], ["--out", "x"]])
def test_without_onnx_help_works_and_a_build_names_the_extra(argv, tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "from export import build_engines\n"
            f"raise SystemExit(build_engines.main({argv!r}))")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    if argv == ["--help"]:
        assert p.returncode == 0 and "--out" in p.stdout, p.stderr
    else:
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert p.stderr.strip().endswith("install the export extra: pip install -e '.[export]'"), p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
