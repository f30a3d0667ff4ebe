"""Frames of a video file as demo pictures (``tokencast demo --video``), in order.

Read through the edge's own ``video`` capture source, so the demo sees what a camera replaying
the file would; a file OpenCV cannot open is an ``ImageInputError`` (one line, exit 2).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tokencast.samples import MAX_SIDE, DemoImage, ImageInputError

log = logging.getLogger(__name__)


def video_frames(path: Path, limit: int, step: int = 1) -> list[DemoImage]:
    """Up to ``limit`` frames, every ``step``-th, named ``frame_00001`` (file index)."""
    from edge.capture import CaptureConfig, CaptureError, SourceExhausted, VideoConfig, make_source

    src = make_source(CaptureConfig(source="video", video=VideoConfig(path=str(path), step=step)))
    frames: list[DemoImage] = []
    try:
        with src:
            while len(frames) < limit:
                try:
                    pic = src.read()
                except SourceExhausted:
                    break
                if max(pic.image.shape[:2]) > MAX_SIDE:
                    raise ImageInputError(f"{path}: frames of {pic.image.shape[1]}x{pic.image.shape[0]} exceed "
                                          f"{MAX_SIDE} px a side; scale the video first")
                index = int(pic.name.rsplit("#", 1)[-1])
                frames.append(DemoImage(f"frame_{index:05d}", pic.image))
    except CaptureError as exc:
        log.error("video %s: %s", path, exc)
        raise ImageInputError(f"{path}: {exc}") from None
    if not frames:
        raise ImageInputError(f"{path}: no frames")
    return frames
