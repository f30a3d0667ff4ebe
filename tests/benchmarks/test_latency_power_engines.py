"""latency_power.py finds each precision's files where build_engines.py put them (its manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import latency_power


def fake_engines(folder: Path, precisions: tuple[str, ...]) -> Path:
    """A build_engines-shaped folder: one stub encoder per precision, recorded in manifest.json."""
    folder.mkdir()
    engines = {}
    for i, p in enumerate(precisions):
        latency_power.write_stub_encoder(folder / f"encoder.{p}.onnx", seed=i)
        engines[p] = {"file": f"encoder.{p}.onnx", "status": "ok"}
    (folder / "manifest.json").write_text(json.dumps({"schema": 1, "models": {"encoder": {"engines": engines}}}))
    return folder


def test_each_precision_runs_the_file_build_engines_made(tiny_images, tmp_path):
    engines = fake_engines(tmp_path / "engines", ("fp32", "int8"))
    out = tmp_path / "lat"
    rc = latency_power.main(["--images", str(tiny_images), "--out", str(out), "--quick", "--idle-seconds", "0",
                             "--engines", str(engines), "--precision", "fp32", "int8", "--bpp", "0.12",
                             "--tokenizer", "1"])  # the stub encoders are one-layer ("encoder" in the manifest)
    assert rc == 0
    runs = json.loads((out / "latency.json").read_text())["runs"]
    assert [(r["precision"], Path(r["encoder"]).name) for r in runs] == [
        ("fp32", "encoder.fp32.onnx"), ("int8", "encoder.int8.onnx")]
    assert all(r["frames"] >= 3 and r["scorer"] is None for r in runs)


@pytest.mark.parametrize("manifest", [True, False])
def test_a_precision_never_built_is_one_line_naming_the_build_command(tiny_images, tmp_path, capsys, manifest):
    engines = fake_engines(tmp_path / "engines", ("fp32",)) if manifest else tmp_path / "nothing"
    rc = latency_power.main(["--images", str(tiny_images), "--out", str(tmp_path / "lat"), "--quick",
                             "--engines", str(engines), "--precision", "int8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("latency_power: nothing ran: int8:") and "build_engines.py --out" in err[0]


def test_unreadable_image_is_skipped_and_said(tmp_path, tiny_images, capsys):
    (tiny_images / "broken.png").write_bytes(b"not a png")
    images, notes = latency_power.load_images(tiny_images, 0)
    assert len(images) >= 1 and len(notes) == 1 and "broken.png: skipped" in notes[0]
