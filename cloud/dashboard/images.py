"""Bounded images for the dashboard: thumbnails made once, full images capped in size.

A frame's PNGs never change once stored (``put_frame`` is idempotent per device and counter),
so each derived image is made once and kept: in a bounded in-memory LRU, and also on disk when
the app is given a ``thumb_dir`` (then they survive a restart). A stored image whose longer
side exceeds ``max_side`` is served downscaled, so a camera sending 4K frames cannot make every
browser on the fleet view pull 30 MB per card. Files are opened by the path the store returns;
nothing from the request reaches the filesystem but two integers.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from PIL import Image

Kind = Literal["image", "mask"]
Size = Literal["thumb", "full"]
THUMB_QUALITY = 82


class ImageCache:
    """(device, counter, kind, size) -> (bytes, media type); generation is serialised per key."""

    def __init__(self, *, thumb_side: int = 256, max_side: int = 2048, thumb_dir: Path | None = None,
                 max_bytes: int = 64 << 20) -> None:
        if thumb_side < 16 or max_side < thumb_side:
            raise ValueError(f"need 16 <= thumb_side <= max_side, got {thumb_side}, {max_side}")
        self.thumb_side, self.max_side, self.thumb_dir = thumb_side, max_side, thumb_dir
        self.max_bytes = max_bytes
        self._lru: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self.generated = 0  # derived images made (tests check "once")

    def get(self, source: Path, device_id: int, counter: int, kind: Kind, size: Size) -> tuple[bytes, str] | None:
        """The bytes to serve, or None for a full image small enough to send as the stored file."""
        key = (device_id, counter, kind, size)
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                return hit
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:  # another request may have made it while we waited
                hit = self._lru.get(key)
            if hit is None:
                hit = self._load_disk(key) or self._make(source, key)
                if hit is None:
                    return None
                self._remember(key, hit)
        with self._lock:
            self._key_locks.pop(key, None)
        return hit

    def _disk_path(self, key: tuple) -> Path | None:
        if self.thumb_dir is None:
            return None
        device_id, counter, kind, size = key
        ext = "jpg" if size == "thumb" else "png"
        return self.thumb_dir / str(device_id) / f"{counter:010d}.{kind}.{size}{self.thumb_side if size == 'thumb' else self.max_side}.{ext}"

    def _load_disk(self, key: tuple) -> tuple[bytes, str] | None:
        path = self._disk_path(key)
        if path is None or not path.is_file():
            return None
        return path.read_bytes(), "image/jpeg" if path.suffix == ".jpg" else "image/png"

    def _make(self, source: Path, key: tuple) -> tuple[bytes, str] | None:
        size = key[3]
        with Image.open(source) as im:
            if size == "full" and max(im.size) <= self.max_side:
                return None
            im = im.convert("RGB")
            side = self.thumb_side if size == "thumb" else self.max_side
            im.thumbnail((side, side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            if size == "thumb":
                im.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
                out = (buf.getvalue(), "image/jpeg")
            else:
                im.save(buf, format="PNG", compress_level=3)
                out = (buf.getvalue(), "image/png")
        self.generated += 1
        path = self._disk_path(key)
        if path is not None:
            _write_atomic(path, out[0])
        return out

    def _remember(self, key: tuple, value: tuple[bytes, str]) -> None:
        with self._lock:
            if key in self._lru:
                return
            self._lru[key] = value
            self._bytes += len(value[0])
            while self._bytes > self.max_bytes and len(self._lru) > 1:
                _, (data, _) = self._lru.popitem(last=False)
                self._bytes -= len(data)


def _write_atomic(path: Path, data: bytes) -> None:
    """Best effort: a thumbnail that cannot be written is simply made again next time."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
