"""``tokencast edge run --once`` ends: a frame sent is exit 0, no usable picture is exit 1 at once.

It used to wait the schedule's interval (5 minutes by default) after each unusable picture, so
with an unreadable image it looked hung.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from edge import cli

KEY = bytes(range(16))


def config(tmp_path: Path, build, *, loop: bool, budget: float = 150.0) -> Path:
    encoder = tmp_path / "encoder.onnx"
    build.encoder(encoder)
    (tmp_path / "5.key").write_text(KEY.hex())
    (tmp_path / "5.key").chmod(0o600)
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[device]
id = 5
key_file = "5.key"
[capture]
source = "images"
[capture.images]
path = "cam"
loop = {str(loop).lower()}
[schedule]
interval_s = 300.0
[pipeline]
encoder = "{encoder}"
tokenizer_id = 1
[pipeline.segmenter]
backend = "none"
[pipeline.recoverability]
scorer = "{tmp_path / 'no-scorer.onnx'}"
[pipeline.budget]
unit = "bytes"
value = {budget}
[transport]
type = "loopback"
[outbox]
path = "state/outbox.sqlite"
""")
    return path


@pytest.mark.parametrize("loop", [False, True])
def test_once_with_no_readable_image_exits_1_without_waiting(tmp_path, build, capsys, loop):
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "bad.jpg").write_bytes(b"not a jpeg")
    t0 = time.monotonic()
    assert cli.main(["run", "--config", str(config(tmp_path, build, loop=loop)), "--once"]) == 1
    assert time.monotonic() - t0 < 20
    errors = [ln.split(": ", 1)[1] for ln in capsys.readouterr().err.splitlines() if " ERROR " in ln]
    assert errors == [f"--once: no frame sent: no readable images in {tmp_path / 'cam'}"]


def test_once_with_pictures_the_budget_cannot_hold_gives_up_after_its_tries(tmp_path, build, capsys):
    (tmp_path / "cam").mkdir()
    Image.fromarray(build.photo(64, 64)).save(tmp_path / "cam" / "a.png")
    t0 = time.monotonic()
    assert cli.main(["run", "--config", str(config(tmp_path, build, loop=True, budget=5)), "--once"]) == 1
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err
    errors = [ln.split(": ", 1)[1] for ln in err.splitlines() if " ERROR " in ln]
    assert "Traceback" not in err and len(errors) == 11
    assert "below the minimum" in errors[0] and "for a 64x64 image" in errors[0]
    assert errors[-1].startswith("--once: no frame sent: none of 10 pictures could be used")


def test_once_sends_one_frame_after_an_unreadable_one(tmp_path, build):
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "0-bad.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(build.photo(64, 64)).save(tmp_path / "cam" / "1-good.png")
    t0 = time.monotonic()
    assert cli.main(["run", "--config", str(config(tmp_path, build, loop=False)), "--once"]) == 0
    assert time.monotonic() - t0 < 20
