"""When to send a frame: on a fixed interval, or when the scene changed.

A schedule says how often the service should look (``poll_s``) and, for each picture it looks
at, whether that picture is worth the airtime (``decide``). Motion is frame differencing on a
small grey image: cheap enough for a Pi Zero, and the reference image follows slow changes
(clouds, dusk) so only real changes trigger. ``max_gap_s`` sends a heartbeat frame even in a
still scene, so the cloud can tell "nothing happened" from "the camera is dead".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


@dataclass
class ScheduleConfig:
    mode: Literal["interval", "motion"] = "interval"
    interval_s: float = 60.0  # interval mode: one frame this often; 0 = as fast as the pipeline goes
    poll_s: float = 0.5  # motion mode: look this often
    min_gap_s: float = 5.0  # motion mode: never send more often than this
    max_gap_s: float = 3600.0  # motion mode: send a heartbeat frame at least this often; 0 = never
    width: int = 64  # motion mode: width of the grey image compared
    pixel_delta: int = 25  # grey levels a pixel must change by to count as changed
    min_fraction: float = 0.02  # share of changed pixels that counts as motion
    adapt: float = 0.05  # how fast the reference follows the scene (0..1 per look)

    def check(self, prefix: str) -> list[tuple[str, str]]:
        bad = []
        for name in ("interval_s", "poll_s", "min_gap_s", "max_gap_s"):
            if getattr(self, name) < 0:
                bad.append((f"{prefix}.{name}", f"must be >= 0, got {getattr(self, name)}"))
        if not 8 <= self.width <= 1024:
            bad.append((f"{prefix}.width", f"must be in 8..1024, got {self.width}"))
        if not 1 <= self.pixel_delta <= 255:
            bad.append((f"{prefix}.pixel_delta", f"must be in 1..255, got {self.pixel_delta}"))
        if not 0.0 < self.min_fraction <= 1.0:
            bad.append((f"{prefix}.min_fraction", f"must be in (0, 1], got {self.min_fraction}"))
        if not 0.0 <= self.adapt <= 1.0:
            bad.append((f"{prefix}.adapt", f"must be in [0, 1], got {self.adapt}"))
        return bad


@dataclass(frozen=True)
class Decision:
    send: bool
    reason: str  # "interval", "motion 0.041", "heartbeat", "still 0.003", "cooldown"


class Schedule(Protocol):
    poll_s: float

    def decide(self, image_rgb: np.ndarray, now: float | None = None) -> Decision: ...


class IntervalSchedule:
    """Send every picture it is shown, shown once per ``interval_s``."""

    def __init__(self, interval_s: float) -> None:
        self.poll_s = interval_s

    def decide(self, image_rgb: np.ndarray, now: float | None = None) -> Decision:
        return Decision(True, "interval")


class MotionSchedule:
    """Send when enough pixels of a downscaled grey image differ from the reference."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self.poll_s = cfg.poll_s
        self._reference: np.ndarray | None = None
        self._last_sent: float | None = None

    def decide(self, image_rgb: np.ndarray, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        grey = small_grey(image_rgb, self.cfg.width)
        if self._reference is None or self._reference.shape != grey.shape:
            self._reference = grey
            return self._sent(now, "first")
        fraction = changed_fraction(self._reference, grey, self.cfg.pixel_delta)
        self._reference += self.cfg.adapt * (grey - self._reference)
        since = now - self._last_sent if self._last_sent is not None else float("inf")
        if fraction >= self.cfg.min_fraction:
            if since < self.cfg.min_gap_s:
                return Decision(False, f"cooldown {fraction:.3f}")
            self._reference = grey  # re-arm on the new scene, not on the old one
            return self._sent(now, f"motion {fraction:.3f}")
        if self.cfg.max_gap_s > 0 and since >= self.cfg.max_gap_s:
            return self._sent(now, "heartbeat")
        return Decision(False, f"still {fraction:.3f}")

    def _sent(self, now: float, reason: str) -> Decision:
        self._last_sent = now
        return Decision(True, reason)


def make_schedule(cfg: ScheduleConfig) -> Schedule:
    if cfg.mode == "interval":
        return IntervalSchedule(cfg.interval_s)
    if cfg.mode == "motion":
        return MotionSchedule(cfg)
    raise ValueError(f"schedule mode {cfg.mode!r} is not one of 'interval', 'motion'")


def small_grey(image_rgb: np.ndarray, width: int) -> np.ndarray:
    """Block-average ``image_rgb`` (H, W, 3) uint8 down to about ``width`` columns of float32 grey."""
    h, w = image_rgb.shape[:2]
    step = max(1, w // width)
    hh, ww = (h // step) * step, (w // step) * step
    rgb = image_rgb[:hh, :ww].astype(np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if rgb.ndim == 3 else rgb
    return grey.reshape(hh // step, step, ww // step, step).mean(axis=(1, 3))


def changed_fraction(reference: np.ndarray, grey: np.ndarray, pixel_delta: int) -> float:
    """Share of pixels whose grey level moved by at least ``pixel_delta``."""
    return float(np.mean(np.abs(grey - reference) >= pixel_delta))
