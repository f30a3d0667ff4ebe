"""Calibration / validation images: a directory of the user's photos, or scikit-image's samples.

The same images calibrate INT8 ranges and measure accuracy, resized (centre crop to the aspect,
then bicubic) to the export's input size so every model sees exactly what the report describes.
The default set is scikit-image's bundled photos (no download), never project data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import CalibrationError

DEFAULT_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class CalibImage:
    name: str
    sha256: str  # of the source RGB pixels, so the cache key follows the content
    pixels: np.ndarray  # (H, W, 3) uint8 at the export's input size


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``image`` to the aspect of ``size`` (H, W), then resize to it."""
    h, w = image.shape[:2]
    th, tw = size
    scale = min(h / th, w / tw)
    ch, cw = int(round(th * scale)), int(round(tw * scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(image[top : top + ch, left : left + cw])
    return np.asarray(crop.resize((tw, th), Image.Resampling.BICUBIC), dtype=np.uint8)


def _rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, -1)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def _sources(directory: Path | None) -> list[tuple[str, np.ndarray]]:
    if directory is None:
        import skimage.data

        return [(f"skimage.data.{n}", _rgb(getattr(skimage.data, n)())) for n in DEFAULT_SAMPLES]
    if not directory.is_dir():
        raise CalibrationError(f"--calib-images {directory} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"--calib-images {directory} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                out.append((p.name, _rgb(np.asarray(im.convert("RGB")))))
        except OSError as exc:
            raise CalibrationError(f"calibration image {p} is unreadable: {exc}") from exc
    return out


def load_images(directory: Path | None, size: tuple[int, int]) -> list[CalibImage]:
    return [CalibImage(name, hashlib.sha256(px.tobytes() + str(px.shape).encode()).hexdigest(), fit(px, size))
            for name, px in _sources(directory)]


def to_batch(image: CalibImage) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1], the edge models' input."""
    return np.ascontiguousarray(image.pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
