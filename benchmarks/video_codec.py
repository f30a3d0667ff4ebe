"""A real video codec at a byte target, with a packet-loss model: the baseline for temporal coding.

``encode_sweep`` codes the frames with PyAV (FFmpeg's libx265 for HEVC, libsvtav1 for AV1) with
a closed GOP of ``gop`` frames, no B-frames and no scene-cut keyframes (the GOP matches the
tokencast key interval), at each quantiser of a sweep and at full and half resolution (a codec
starved of bits does better on fewer pixels; half-size output is scaled back up with bicubic).
Sizes are the coded packets (parameter sets included, no container) cut into radio packets of
the MTU, each paying ``PACKET_OVERHEAD`` as a tokencast fragment pays its header and tag.
``pick`` takes the sweep point with the best PSNR whose mean bytes/frame on air is within the
target.

Loss model (``conceal``): each frame's bytes travel in packets of ``mtu`` bytes, each lost with
probability p. A frame is decodable when all its packets arrived and so did every frame before
it in its GOP (P-frames need their reference chain); an undecodable frame is concealed by
repeating the last decodable one (freeze). A real decoder might show a corrupted picture instead;
freeze is the common concealment and never worse in PSNR than showing garbage.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

CODECS = {"hevc": "libx265", "av1": "libsvtav1"}
# Per radio packet, what a tokencast fragment also pays: a 4-byte sequence header (stream, frame,
# packet) and the 8-byte AES-CCM tag, as benchmarks/channel.py charges classical files.
PACKET_OVERHEAD = 12
DEFAULT_MTU = 222


def packets(size: int, mtu: int) -> list[int]:
    """On-air sizes of the packets carrying ``size`` coded bytes at ``mtu`` (overhead included)."""
    body = mtu - PACKET_OVERHEAD
    n = max(1, math.ceil(size / body))
    return [min(body, size - i * body) + PACKET_OVERHEAD for i in range(n)]


class CodecUnavailable(RuntimeError):
    """PyAV or the chosen encoder is not installed."""


@dataclass
class Coded:
    codec: str
    q: int
    scale: int
    sizes: list[int]  # bytes per frame
    decoded: list[np.ndarray]  # RGB uint8 at the input size

    def mean_bytes(self, mtu: int = DEFAULT_MTU) -> float:
        """Mean bytes on air per frame at ``mtu``, packet overhead included."""
        return float(np.mean([sum(packets(s, mtu)) for s in self.sizes]))


def _options(codec: str, q: int, gop: int) -> dict[str, str]:
    if codec == "hevc":
        return {"x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:qp={q}:log-level=error",
                "preset": "medium"}
    return {"svtav1-params": f"keyint={gop}:scd=0:enable-overlays=0", "crf": str(q), "preset": "8"}


def encode(frames: list[np.ndarray], codec: str, q: int, gop: int, scale: int = 1, fps: int = 10) -> Coded:
    try:
        import av
    except ImportError as exc:
        raise CodecUnavailable(f"the video baseline needs PyAV: pip install av ({exc})") from exc
    import cv2

    h, w = frames[0].shape[:2]
    sw, sh = (w // scale) & ~1, (h // scale) & ~1  # 4:2:0 wants even sides
    buf = io.BytesIO()
    sizes: list[int] = []
    with av.open(buf, "w", format="matroska") as out:
        try:
            stream = out.add_stream(CODECS[codec], rate=fps, options=_options(codec, q, gop))
        except Exception as exc:  # noqa: BLE001 - PyAV raises several types for a missing encoder
            raise CodecUnavailable(f"encoder {CODECS[codec]} unavailable in this PyAV build: {exc}") from exc
        stream.width, stream.height, stream.pix_fmt = sw, sh, "yuv420p"
        stream.gop_size = gop
        for i, img in enumerate(frames):
            small = img if scale == 1 else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(small[:sh, :sw]), format="rgb24")
            vf.pts = i
            for pkt in stream.encode(vf):
                sizes.append(pkt.size)
                out.mux(pkt)
        for pkt in stream.encode():
            sizes.append(pkt.size)
            out.mux(pkt)
    buf.seek(0)
    decoded = []
    with av.open(buf, "r") as inp:
        for frame in inp.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            if rgb.shape[:2] != (h, w):  # half/quarter size, or a decoder that did not crop its padding
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)
            decoded.append(rgb)
    if len(decoded) != len(frames) or len(sizes) != len(frames):
        raise RuntimeError(f"{codec}: {len(frames)} frames in, {len(sizes)} packets and {len(decoded)} frames out")
    return Coded(codec, q, scale, sizes, decoded)


def encode_sweep(frames: list[np.ndarray], codec: str, gop: int, qs: list[int], scales=(1, 2)) -> list[Coded]:
    return [encode(frames, codec, q, gop, s) for s in scales for q in qs]


def pick(points: list[Coded], target_bytes: float, score, mtu: int = DEFAULT_MTU) -> Coded | None:
    """The point with the best ``score(coded)`` whose mean bytes/frame on air is within ``target_bytes``."""
    ok = [p for p in points if p.mean_bytes(mtu) <= target_bytes]
    return max(ok, key=score) if ok else None


def conceal(coded: Coded, gop: int, loss: float, mtu: int, rng: np.random.Generator) -> tuple[list[np.ndarray], int]:
    """(the frames shown under the loss model, frames not decodable)."""
    shown: list[np.ndarray] = []
    last: np.ndarray | None = None
    chain_ok = True
    bad = 0
    for i, (size, img) in enumerate(zip(coded.sizes, coded.decoded, strict=True)):
        if i % gop == 0:
            chain_ok = True
        arrived = bool((rng.random(len(packets(size, mtu))) >= loss).all())
        chain_ok = chain_ok and arrived
        if chain_ok:
            last = img
        else:
            bad += 1
        shown.append(last if last is not None else np.zeros_like(img))
    return shown, bad
