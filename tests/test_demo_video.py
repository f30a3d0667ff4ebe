"""``tokencast demo --video``: one camera's stream of key and delta frames end to end (random-init
models), the delta frames far smaller than the key frames, none degraded on a clean link, and
bad input one line with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tokencast import demo

cv2 = pytest.importorskip("cv2")
H, W = 96, 128


@pytest.fixture(scope="module", autouse=True)
def demo_env(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENCAST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield
    torch.set_num_threads(threads)


def write_video(path, n=5):
    """A textured still scene with a bright square walking across it."""
    y, x = np.mgrid[:H, :W]
    base = np.stack([(x * 2) % 256, (y * 2) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (W, H))
    for i in range(n):
        f = base.copy()
        f[32:64, 8 + 16 * i : 40 + 16 * i] = 255
        out.write(f)
    out.release()
    return path


def test_video_stream_sends_key_then_small_delta_frames(tmp_path, capsys):
    video = write_video(tmp_path / "walk.avi")
    out = tmp_path / "out"
    code = demo.main(["--video", str(video), "--frames", "4", "--gop", "3", "--out", str(out), "--random-init",
                      "--budget-bpp", "0.3"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    rows = report["images"]
    assert [r["frame_type"] for r in rows] == ["key", "delta", "delta", "key"]
    assert [r["name"] for r in rows] == ["frame_00000", "frame_00001", "frame_00002", "frame_00003"]
    assert all(r["received"] and r["degraded"] is False for r in rows)
    assert rows[1]["ref_counter"] == 1 and max(rows[1]["bytes"], rows[2]["bytes"]) < rows[0]["bytes"]
    assert report["summary"]["key_frames"] == 2 and report["summary"]["degraded"] == []
    assert "2 key and 2 delta frames; 0 degraded" in capsys.readouterr().out


def test_video_needs_tokenizer_3_and_a_readable_file(tmp_path, capsys):
    video = write_video(tmp_path / "walk.avi", n=2)
    assert demo.main(["--video", str(video), "--tokenizer", "1", "--out", str(tmp_path / "o")]) == 2
    assert "needs --tokenizer 3" in capsys.readouterr().err
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"nope")
    assert demo.main(["--video", str(junk), "--out", str(tmp_path / "o"), "--random-init"]) == 2
    err = capsys.readouterr().err
    assert "junk.avi" in err and "Traceback" not in err
