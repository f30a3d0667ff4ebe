"""The demo's pictures: a folder of the user's images, or sample images bundled with scikit-image.

The samples (astronaut, coffee, chelsea, rocket, immunohistochemistry) are public domain or CC0
and ship inside the scikit-image wheel, so the demo needs no download. They are centre-cropped
to 4:3 and resized to 512x384, a typical low-resolution camera frame. A user's images are kept
as they are, except that a side longer than the wire allows (255 tokens of 8 px) is scaled down.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
SAMPLE_SIZE = (512, 384)  # width, height
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
MAX_SIDE = 255 * 8  # a grid side is one byte on the wire


class ImageInputError(ValueError):
    """No images, or an image that cannot be read; the message names the path."""


@dataclass
class DemoImage:
    """One picture of the run. A folder's files are read when ``rgb`` is first asked for, so an
    unreadable file fails that image alone (the demo skips and records it) and a big folder is
    not all in memory at once."""

    name: str  # unique, safe as a file stem
    _rgb: np.ndarray | None = None  # uint8 (H, W, 3)
    path: Path | None = None

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            if self.path is None:
                raise ImageInputError(f"{self.name}: no pixels and no file")
            return read_image(self.path)
        return self._rgb


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 pixels of one file, scaled down to what the wire allows; ImageInputError if unreadable."""
    try:
        with Image.open(path) as im:
            return np.asarray(_fit(im.convert("RGB"), path.name))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"{path}: cannot read image ({exc})") from None


def _safe_stem(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    out, i = stem, 2
    while out in taken:
        out, i = f"{stem}-{i}", i + 1
    taken.add(out)
    return out


def _fit(im: Image.Image, name: str) -> Image.Image:
    if max(im.size) <= MAX_SIDE:
        return im
    scale = MAX_SIDE / max(im.size)
    size = (max(8, int(im.width * scale)), max(8, int(im.height * scale)))
    log.info("%s: %dx%d is larger than the wire allows; scaled to %dx%d", name, *im.size, *size)
    return im.resize(size, Image.Resampling.LANCZOS)


def crop_resize(rgb: np.ndarray, size: tuple[int, int] = SAMPLE_SIZE) -> np.ndarray:
    """Centre-crop to the aspect of ``size`` (width, height), then resize to it."""
    h, w = rgb.shape[:2]
    tw, th = size
    if w * th > h * tw:
        cw, ch = h * tw // th, h
    else:
        cw, ch = w, w * th // tw
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    im = Image.fromarray(rgb[y0 : y0 + ch, x0 : x0 + cw])
    return np.asarray(im.resize(size, Image.Resampling.LANCZOS))


def sample_images(limit: int | None = None) -> list[DemoImage]:
    from skimage import data

    out = []
    for name in SAMPLES[:limit]:
        rgb = np.asarray(getattr(data, name)())
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        out.append(DemoImage(name, crop_resize(rgb[..., :3].astype(np.uint8))))
    return out


def folder_images(directory: Path, limit: int | None = None) -> list[DemoImage]:
    if not directory.is_dir():
        raise ImageInputError(f"{directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise ImageInputError(f"{directory}: no images ({', '.join(EXTENSIONS)})")
    taken: set[str] = set()
    return [DemoImage(_safe_stem(path.stem, taken), path=path) for path in files[:limit]]
