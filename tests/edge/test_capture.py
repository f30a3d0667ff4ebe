"""Capture sources: a folder of images (looping, unreadable files skipped), the registry, guards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.capture import (
    SOURCES,
    CaptureConfig,
    CaptureError,
    ImagesConfig,
    SourceExhausted,
    SourceUnavailable,
    UnreadableImage,
    make_source,
)

SHARED = Path("/work/shared/data/coco128/images")


def write_images(folder: Path, n: int = 3) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n):
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = 40 * i, 255 - 40 * i, 7
        Image.fromarray(img).save(folder / f"{i:03d}.png")
        images.append(img)
    return images


def images_source(path: Path, loop: bool = False):
    return make_source(CaptureConfig(source="images", images=ImagesConfig(path=str(path), loop=loop)))


def test_folder_in_name_order_then_exhausted(tmp_path):
    expected = write_images(tmp_path / "cam")
    (tmp_path / "cam" / "notes.txt").write_text("not an image")  # other files are ignored
    with images_source(tmp_path / "cam") as src:
        got = [src.read() for _ in range(3)]
        with pytest.raises(SourceExhausted):
            src.read()
    assert [p.name for p in got] == ["000.png", "001.png", "002.png"]
    for pic, img in zip(got, expected, strict=True):
        assert pic.image.dtype == np.uint8 and pic.image.shape == (48, 64, 3)
        assert np.array_equal(pic.image, img) and pic.capture_ms > 1_600_000_000_000


def test_loop_and_unreadable_files_are_skipped(tmp_path):
    write_images(tmp_path / "cam", 2)
    (tmp_path / "cam" / "001b.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    with images_source(tmp_path / "cam", loop=True) as src:
        names = []
        for _ in range(6):
            try:
                names.append(src.read().name)
            except UnreadableImage as exc:
                assert "001b.jpg" in str(exc)
                names.append("skipped")
    assert names == ["000.png", "001.png", "skipped", "000.png", "001.png", "skipped"]


def test_folder_of_only_bad_files_ends_instead_of_spinning(tmp_path):
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "a.png").write_bytes(b"nope")
    with images_source(tmp_path / "cam", loop=True) as src:
        with pytest.raises(UnreadableImage):
            src.read()
        with pytest.raises(SourceExhausted, match="no readable images"):
            src.read()


def test_single_file_and_missing_path(tmp_path):
    write_images(tmp_path, 1)
    with images_source(tmp_path / "000.png") as src:
        assert src.read().image.shape == (48, 64, 3)
    with pytest.raises(SourceUnavailable, match="does not exist"):
        images_source(tmp_path / "nowhere").load()


def test_registry_names_every_source():
    assert sorted(SOURCES) == ["gstreamer", "images", "picamera2", "rtsp", "v4l2", "video"]
    cfg = CaptureConfig()
    cfg.source = "webcam"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="gstreamer, images, picamera2, rtsp, v4l2, video"):
        make_source(cfg)


def test_missing_camera_is_a_capture_error():
    pytest.importorskip("cv2")
    cfg = CaptureConfig(source="v4l2")
    cfg.v4l2.device = "/dev/video-tokencast-none"
    with pytest.raises(CaptureError):
        make_source(cfg).load()


def test_picamera2_missing_names_the_package():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceUnavailable, match="python3-picamera2"):
            make_source(CaptureConfig(source="picamera2")).load()
    else:
        pytest.skip("picamera2 is installed here")


def test_required_source_keys_are_named():
    assert CaptureConfig(source="rtsp").check("capture") == [
        ("capture.rtsp.url", "required when capture.source = 'rtsp'")
    ]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared sample images not present")
def test_reads_shared_sample_photos():
    folder = next((p for p in sorted(SHARED.rglob("*")) if p.is_dir() and any(p.glob("*.jpg"))), None)
    if folder is None:
        pytest.skip("no jpg folder under the shared images")
    with images_source(folder) as src:
        pic = src.read()
    assert pic.image.ndim == 3 and pic.image.shape[2] == 3 and pic.image.dtype == np.uint8
