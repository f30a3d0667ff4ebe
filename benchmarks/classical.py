"""Classical image codecs at a matched rate: JPEG, WebP, AVIF, HEIC and JPEG 2000 through Pillow.

Each codec is one small entry in ``CODECS``: a quality range and ``encode(image, q) -> bytes``.
``at_rate`` finds the largest file under a byte budget by bisection over the quality (sizes are
monotone in quality for all five, closely enough; every probed size is checked, so a result
never exceeds the budget). Where even the lowest quality is too big, the image is coded at half,
then quarter resolution and upsampled back (bicubic) after decoding, as a rate-constrained
sender would. JPEG 2000's knob is the compression ratio (``quality_mode="rates"``), searched on
a log scale. A codec whose Pillow plugin is missing is reported unavailable, not an error.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

SCALES = (1, 2, 4)


@dataclass(frozen=True)
class Codec:
    name: str
    lo: float  # lowest quality knob (smallest file)
    hi: float  # highest quality knob
    encode: Callable[[Image.Image, float], bytes]
    integer: bool = True
    log_scale: bool = False


@dataclass
class Coded:
    codec: str
    data: bytes
    quality: float
    scale: int  # 1 full resolution, 2 half, 4 quarter
    recon: np.ndarray  # decoded, upsampled back to the original size
    fits: bool  # False: even the smallest setting is over budget (data is that smallest file)


def _save(fmt: str, **kw: object) -> Callable[[Image.Image, float], bytes]:
    def enc(im: Image.Image, q: float) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **{k: (v(q) if callable(v) else v) for k, v in kw.items()})
        return buf.getvalue()

    return enc


def _heic(im: Image.Image, q: float) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(im).save(buf, format="HEIF", quality=int(q))
    return buf.getvalue()


def _jp2(im: Image.Image, ratio: float) -> bytes:
    # The knob is the compression ratio; search runs from high ratio (small) to low (large), so
    # the searched value is -log(ratio).
    buf = io.BytesIO()
    im.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(math.exp(-ratio))],
            irreversible=True)
    return buf.getvalue()


def available_codecs() -> dict[str, Codec]:
    """The codecs this Pillow build can write, by name."""
    out: dict[str, Codec] = {
        "jpeg": Codec("jpeg", 1, 95, _save("JPEG", quality=int, optimize=True)),
    }
    if features.check("webp"):
        out["webp"] = Codec("webp", 0, 100, _save("WEBP", quality=int, method=6))
    if features.check("avif"):
        out["avif"] = Codec("avif", 0, 100, _save("AVIF", quality=int, speed=6))
    try:
        import pillow_heif  # noqa: F401

        out["heic"] = Codec("heic", 0, 100, _heic)
    except ImportError:
        pass
    if features.check("jpg_2000"):
        out["jpeg2000"] = Codec("jpeg2000", -math.log(2000.0), -math.log(2.0), _jp2, integer=False)
    return out


def decode(data: bytes) -> np.ndarray:
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _search(codec: Codec, im: Image.Image, budget: int, iters: int) -> tuple[bytes, float, bool]:
    """(largest file <= budget, its knob, True), or (smallest file, lowest knob, False)."""
    lo_data = codec.encode(im, codec.lo)
    if len(lo_data) > budget:
        return lo_data, codec.lo, False
    hi_data = codec.encode(im, codec.hi)
    if len(hi_data) <= budget:
        return hi_data, codec.hi, True
    best, best_q = lo_data, codec.lo
    lo, hi = codec.lo, codec.hi
    for _ in range(iters):
        if (hi - lo <= 1) if codec.integer else (hi - lo < 1e-3):
            break
        mid = (lo + hi) // 2 if codec.integer else (lo + hi) / 2
        data = codec.encode(im, mid)
        if len(data) <= budget:
            lo, best, best_q = mid, data, mid
        else:
            hi = mid
    return best, best_q, True


def at_rate(codec: Codec, image: np.ndarray, target_bpp: float, iters: int = 8) -> Coded:
    """The best file of ``codec`` within ``target_bpp`` bits per (original) pixel."""
    h, w = image.shape[:2]
    budget = int(target_bpp * w * h / 8)
    smallest: tuple[bytes, float, int] | None = None
    for scale in SCALES:
        im = Image.fromarray(image)
        if scale > 1:
            im = im.resize((max(w // scale, 8), max(h // scale, 8)), Image.Resampling.LANCZOS)
        data, q, fits = _search(codec, im, budget, iters)
        if smallest is None or len(data) < len(smallest[0]):
            smallest = (data, q, scale)
        if fits:
            return Coded(codec.name, data, q, scale, _upsample(decode(data), w, h), True)
    data, q, scale = smallest  # type: ignore[misc]
    return Coded(codec.name, data, q, scale, _upsample(decode(data), w, h), False)


def _upsample(image: np.ndarray, w: int, h: int) -> np.ndarray:
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
