"""Where pictures come from: a registry of capture sources keyed by ``capture.source``.

Each source is a small class with ``load()`` (open the device), one verb ``read()`` returning an
RGB uint8 picture, and ``close()``. Hardware libraries (OpenCV, Picamera2) are imported inside
``load()``, so a laptop without a camera stack still runs the ``images`` source, and a missing
library is a ``SourceUnavailable`` naming what to install, not an ImportError at start-up.

Errors say what the service should do: ``UnreadableImage`` -> log and skip this one,
``CaptureError`` -> transient (camera hiccup), retry after a pause and reopen after a few,
``SourceExhausted`` -> no more pictures will come (a folder without ``loop``), stop cleanly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class CaptureError(Exception):
    """A picture could not be taken; transient unless a subclass says otherwise."""


class UnreadableImage(CaptureError):
    """One image file could not be decoded; the source skips it and goes on."""


class SourceExhausted(CaptureError):
    """The source has no more pictures and never will (a folder read once)."""


class SourceUnavailable(CaptureError):
    """The source's library or device is missing; the message says what to install or check."""


@dataclass
class ImagesConfig:
    path: str = ""  # one image file, or a folder of them (read in name order)
    loop: bool = False  # start again after the last image instead of stopping


@dataclass
class VideoConfig:
    path: str = ""  # a video file (anything OpenCV's FFmpeg backend reads), frames in order
    loop: bool = False  # start again after the last frame instead of stopping
    step: int = 1  # take every step-th frame (a 25 fps file as a 5 fps camera: step = 5)


@dataclass
class V4L2Config:
    device: str = "/dev/video0"  # a device path, or an index such as "0"
    width: int = 0  # 0 = the driver's default
    height: int = 0
    fps: float = 0.0
    fourcc: str = "MJPG"  # "" = the driver's default; MJPG keeps USB 2 bandwidth low
    flush: int = 1  # frames grabbed and dropped before each read, so the picture is fresh


@dataclass
class GStreamerConfig:
    # Must end in appsink; e.g. on a Jetson CSI camera:
    # nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 !
    # nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR !
    # appsink drop=true max-buffers=1
    pipeline: str = ""


@dataclass
class RTSPConfig:
    url: str = ""
    tcp: bool = True  # RTSP over TCP: slower start, but no smeared frames on a lossy Wi-Fi


@dataclass
class Picamera2Config:
    width: int = 1280
    height: int = 720


@dataclass
class CaptureConfig:
    source: Literal["images", "video", "v4l2", "gstreamer", "rtsp", "picamera2"] = "images"
    retry_s: float = 2.0  # pause after a failed read
    reopen_after: int = 5  # consecutive failed reads before the device is closed and reopened
    images: ImagesConfig = field(default_factory=ImagesConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    v4l2: V4L2Config = field(default_factory=V4L2Config)
    gstreamer: GStreamerConfig = field(default_factory=GStreamerConfig)
    rtsp: RTSPConfig = field(default_factory=RTSPConfig)
    picamera2: Picamera2Config = field(default_factory=Picamera2Config)

    def check(self, prefix: str) -> list[tuple[str, str]]:
        required = {"images": ("images", "path"), "video": ("video", "path"),
                    "gstreamer": ("gstreamer", "pipeline"), "rtsp": ("rtsp", "url")}
        bad = []
        if self.source in required:
            table, key = required[self.source]
            if not getattr(getattr(self, table), key):
                bad.append((f"{prefix}.{table}.{key}", f"required when {prefix}.source = {self.source!r}"))
        if self.video.step < 1:
            bad.append((f"{prefix}.video.step", f"must be >= 1, got {self.video.step}"))
        if self.retry_s < 0:
            bad.append((f"{prefix}.retry_s", f"must be >= 0, got {self.retry_s}"))
        if self.reopen_after < 1:
            bad.append((f"{prefix}.reopen_after", f"must be >= 1, got {self.reopen_after}"))
        return bad


@dataclass(frozen=True)
class Picture:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    capture_ms: int  # wall clock, ms since the epoch
    name: str  # file name or source description, for logs


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CaptureSource:
    """Base class: ``load()`` once, ``read()`` per picture, ``close()`` at the end."""

    key: ClassVar[str]

    def __init__(self, cfg: CaptureConfig) -> None:
        self.cfg = cfg

    def load(self) -> None:
        pass

    def read(self) -> Picture:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> CaptureSource:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SOURCES: dict[str, type[CaptureSource]] = {}


def register(cls: type[CaptureSource]) -> type[CaptureSource]:
    SOURCES[cls.key] = cls
    return cls


def make_source(cfg: CaptureConfig) -> CaptureSource:
    try:
        return SOURCES[cfg.source](cfg)
    except KeyError:
        raise ValueError(f"capture source {cfg.source!r} is not one of {', '.join(sorted(SOURCES))}") from None


@register
class ImageFiles(CaptureSource):
    """Image files from disk: a benchmark set, a test folder, or a camera that drops JPEGs."""

    key = "images"

    def load(self) -> None:
        from PIL import Image  # noqa: F401  (fail at start-up, not at the first picture)

        self._root = Path(self.cfg.images.path)
        if not self._root.exists():
            raise SourceUnavailable(f"capture.images.path {str(self._root)!r} does not exist")
        self._queue: list[Path] = []
        self._read_this_pass = 0
        self._passes = 0

    def _listing(self) -> list[Path]:
        if self._root.is_file():
            return [self._root]
        return sorted(p for p in self._root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def read(self) -> Picture:
        if not self._queue:
            if self._passes and (not self.cfg.images.loop or self._read_this_pass == 0):
                why = "no readable images" if self._read_this_pass == 0 else "all images read"
                raise SourceExhausted(f"{why} in {self._root}")
            self._queue = self._listing()
            self._passes += 1
            self._read_this_pass = 0
            if not self._queue:
                raise SourceExhausted(f"no images in {self._root}")
        path = self._queue.pop(0)
        image = read_image(path)
        self._read_this_pass += 1
        return Picture(image, now_ms(), path.name)


def read_image(path: Path) -> np.ndarray:
    """Decode one file to (H, W, 3) uint8 RGB, or raise UnreadableImage naming it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"cannot decode {path}: {exc}") from exc


class _OpenCVSource(CaptureSource):
    """A cv2.VideoCapture; subclasses only say how to open it."""

    def load(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise SourceUnavailable(f"{self.key} capture needs OpenCV: pip install opencv-python-headless ({exc})") from exc
        self._cv2 = cv2
        self._cap = self._open(cv2)
        if not self._cap.isOpened():
            self._cap.release()
            raise CaptureError(f"cannot open {self.describe()}")
        log.info("capture: opened %s", self.describe())

    def _open(self, cv2: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return self.key

    def _grab_bgr(self) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CaptureError(f"no frame from {self.describe()}")
        return frame

    def read(self) -> Picture:
        frame = self._grab_bgr()
        return Picture(self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB), now_ms(), self.describe())

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None


@register
class VideoFile(CaptureSource):
    """Frames of a video file in order: a recorded scene replayed as a camera (tests, benchmarks).

    The frame folder case is the ``images`` source (name order). A frame that fails to decode
    mid-file is the end of the file to OpenCV, so the source is exhausted there (or loops)."""

    key = "video"

    def load(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise SourceUnavailable(f"video capture needs OpenCV: pip install opencv-python-headless ({exc})") from exc
        self._cv2 = cv2
        path = Path(self.cfg.video.path)
        if not path.is_file():
            raise SourceUnavailable(f"capture.video.path {str(path)!r} is not a file")
        self._path = path
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceUnavailable(f"cannot open video {path} (not a video OpenCV can read)")
        self._index = 0
        self._read_any = False

    def read(self) -> Picture:
        step = self.cfg.video.step
        for _ in range(step):
            ok, frame = self._cap.read()
            if not ok or frame is None:
                if not self.cfg.video.loop or not self._read_any:
                    raise SourceExhausted(f"end of video {self._path} after {self._index} frames")
                self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    raise SourceExhausted(f"video {self._path} cannot be rewound")
            self._index += 1
        self._read_any = True
        rgb = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
        return Picture(rgb, now_ms(), f"{self._path.name}#{self._index - 1}")

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None


@register
class V4L2Camera(_OpenCVSource):
    key = "v4l2"

    def describe(self) -> str:
        return f"V4L2 {self.cfg.v4l2.device}"

    def _open(self, cv2: Any) -> Any:
        c = self.cfg.v4l2
        device: int | str = int(c.device) if c.device.isdigit() else c.device
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if c.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*c.fourcc[:4].ljust(4)))
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, c.width), (cv2.CAP_PROP_FRAME_HEIGHT, c.height),
                            (cv2.CAP_PROP_FPS, c.fps)):
            if value:
                cap.set(prop, value)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _grab_bgr(self) -> np.ndarray:
        for _ in range(self.cfg.v4l2.flush):  # the driver queue holds pictures from the last poll
            self._cap.grab()
        return super()._grab_bgr()


class _LatestFrame(_OpenCVSource):
    """A stream that must be drained continuously (RTSP, live GStreamer): a thread keeps the newest."""

    def load(self) -> None:
        super().load()
        self._frame: np.ndarray | None = None
        self._frame_at = 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._drain, name=f"capture-{self.key}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            with self._cond:
                if ok and frame is not None:
                    self._frame, self._frame_at, self._failed = frame, time.monotonic(), False
                else:
                    self._failed = True
                self._cond.notify_all()
            if not ok:
                self._stop.wait(0.5)

    def _grab_bgr(self) -> np.ndarray:
        with self._cond:
            # short enough that SIGTERM during a stalled stream still stops the service promptly
            self._cond.wait_for(lambda: self._frame is not None or self._failed, timeout=2.0)
            frame, self._frame = self._frame, None
        if frame is None:
            raise CaptureError(f"no frame from {self.describe()} within 2 s")
        return frame

    def close(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._thread.join(timeout=5.0)
        super().close()


@register
class GStreamerPipeline(_LatestFrame):
    key = "gstreamer"

    def describe(self) -> str:
        return "GStreamer pipeline"

    def _open(self, cv2: Any) -> Any:
        return cv2.VideoCapture(self.cfg.gstreamer.pipeline, cv2.CAP_GSTREAMER)


@register
class RTSPStream(_LatestFrame):
    key = "rtsp"

    def describe(self) -> str:
        url = self.cfg.rtsp.url
        return "RTSP " + (url.split("@", 1)[-1] if "@" in url else url)  # no password in logs

    def _open(self, cv2: Any) -> Any:
        if self.cfg.rtsp.tcp:
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        return cv2.VideoCapture(self.cfg.rtsp.url, cv2.CAP_FFMPEG)


@register
class Picamera2Camera(CaptureSource):
    """Raspberry Pi camera through libcamera; Picamera2 comes from apt (python3-picamera2)."""

    key = "picamera2"

    def load(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceUnavailable(
                "picamera2 is not installed: apt install python3-picamera2 and create the venv with "
                f"--system-site-packages ({exc})"
            ) from exc
        c = self.cfg.picamera2
        self._cam = Picamera2()
        # "RGB888" in libcamera's naming is B,G,R in memory; ask for BGR and swap below.
        config = self._cam.create_still_configuration(main={"size": (c.width, c.height), "format": "RGB888"})
        self._cam.configure(config)
        self._cam.start()

    def read(self) -> Picture:
        try:
            frame = self._cam.capture_array("main")
        except Exception as exc:  # libcamera raises RuntimeError and friends
            raise CaptureError(f"picamera2 capture failed: {exc}") from exc
        return Picture(np.ascontiguousarray(frame[:, :, 2::-1]), now_ms(), "picamera2")

    def close(self) -> None:
        cam = getattr(self, "_cam", None)
        if cam is not None:
            cam.stop()
            cam.close()
            self._cam = None
