"""The ``video`` capture source: frames of a file in order, step, loop, end, and bad paths."""

from __future__ import annotations

import numpy as np
import pytest

from edge.capture import CaptureConfig, SourceExhausted, SourceUnavailable, VideoConfig, make_source

cv2 = pytest.importorskip("cv2")


def write_video(path, n=6, h=32, w=48):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    for i in range(n):
        out.write(np.full((h, w, 3), 40 * i, np.uint8))
    out.release()
    return path


def source(path, **kw):
    return make_source(CaptureConfig(source="video", video=VideoConfig(path=str(path), **kw)))


def test_frames_come_in_order_with_step_then_the_source_is_exhausted(tmp_path):
    path = write_video(tmp_path / "v.avi")
    with source(path, step=2) as src:
        pics = [src.read() for _ in range(3)]
        with pytest.raises(SourceExhausted, match="end of video"):
            src.read()
    means = [p.image.mean() for p in pics]
    assert pics[0].image.shape == (32, 48, 3) and pics[0].image.dtype == np.uint8
    assert means == sorted(means) and abs(means[1] - 120) < 8  # frames 1, 3, 5: grey 40, 120, 200
    assert pics[2].name == "v.avi#5"


def test_loop_rewinds(tmp_path):
    path = write_video(tmp_path / "v.avi", n=2)
    with source(path, loop=True) as src:
        names = [src.read().name for _ in range(5)]
    assert len(names) == 5


def test_missing_or_unreadable_file_is_unavailable(tmp_path):
    with pytest.raises(SourceUnavailable, match="not a file"):
        source(tmp_path / "none.avi").load()
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video")
    with pytest.raises(SourceUnavailable, match="cannot open video"):
        source(junk).load()


def test_config_requires_a_path_and_a_positive_step():
    bad = CaptureConfig(source="video", video=VideoConfig(step=0)).check("capture")
    assert ("capture.video.path", "required when capture.source = 'video'") in bad
    assert any(k == "capture.video.step" for k, _ in bad)
