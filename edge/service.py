"""The camera loop: capture -> schedule -> select -> pack and seal -> outbox; a sender drains it.

Every part is passed in (source, schedule, selector, packer, outbox, sender, notifier), so tests
drive the loop with fakes and ``edge.assemble`` builds the real ones from the config. The loop
waits on the one stop event (set by SIGTERM/SIGINT) with short timeouts, pings the systemd
watchdog only while both the loop and the sender thread are alive, and logs per-stage timings
for every frame it keeps.

Packing happens inside the outbox transaction that allocates the counter (see ``edge.outbox``):
the sealed fragments are stored, so a replay after a restart sends the same bytes under the same
counter and nothing is ever re-packed under a new one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .capture import CaptureError, CaptureSource, SourceExhausted, SourceUnavailable, UnreadableImage
from .outbox import FrameTooLarge, Outbox, OutboxError, OutboxFull, Packed
from .sampler import BudgetTooSmall
from .schedule import Schedule
from .sdnotify import Notifier
from .sender import Sender

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1


class Selector(Protocol):
    """What the service needs of ``edge.pipeline.EdgePipeline``."""

    def select(self, image_rgb_uint8: np.ndarray) -> Any: ...  # None: nothing to send for this picture


# (selection, counter, capture_ms) -> sealed fragments; called inside the outbox transaction.
FramePacker = Callable[[Any, int, int], Packed]


@dataclass
class RunLimits:
    once: bool = False  # one frame, schedule bypassed, wait until it is sent, exit
    once_tries: int = 10  # --once: pictures tried (unreadable, failed) before giving up with exit 1
    max_frames: int | None = None  # stop after this many frames are queued, and sent
    drain_timeout_s: float = 60.0


class EdgeService:
    def __init__(
        self,
        *,
        source: CaptureSource,
        schedule: Schedule,
        selector: Selector,
        packer: FramePacker,
        outbox: Outbox,
        sender: Sender,
        notifier: Notifier,
        stop: threading.Event,
        retry_s: float = 2.0,
        reopen_after: int = 5,
    ) -> None:
        self.source, self.schedule, self.selector, self.packer = source, schedule, selector, packer
        self.outbox, self.sender, self.notifier, self.stop = outbox, sender, notifier, stop
        self.retry_s, self.reopen_after = retry_s, reopen_after
        self.frames_queued = 0
        self.looks = 0
        self._capture_failures = 0
        self._last_select_ms = 0.0

    def run(self, limits: RunLimits | None = None) -> int:
        limits = limits or RunLimits()
        max_frames = 1 if limits.once else limits.max_frames
        self.sender.start()
        self.notifier.ready(self.status_line())
        log.info("edge service running (next counter %d)", self.outbox.next_counter)
        code = EXIT_OK
        try:
            code = self._loop(limits.once, max_frames, limits.once_tries)
            if code == EXIT_OK and max_frames is not None and not self.stop.is_set():
                code = self._drain(limits.drain_timeout_s)
        finally:
            self.notifier.stopping()
            self.notifier.status("stopping")
            if not self.sender.close(timeout=5.0):
                log.error("sender thread did not stop within 5 s")
        log.info("edge service stopped: %s", self.status_line())
        return code

    def _tick(self) -> bool:
        """Ping the watchdog if due; False when the sender thread died (then systemd should restart us)."""
        if not self.sender.is_alive():
            log.error("sender thread died; stopping so the service manager restarts us")
            return False
        self.notifier.ping_if_due()
        return True

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop.is_set() and (left := end - time.monotonic()) > 0:
            self.stop.wait(min(left, 1.0))
            if not self._tick():
                return

    def _loop(self, once: bool, max_frames: int | None, once_tries: int = 10) -> int:
        next_look = time.monotonic()
        tries = 0
        while not self.stop.is_set():
            if not self._tick():
                return EXIT_FAILED
            self._wait(next_look - time.monotonic())
            if self.stop.is_set():
                break
            # --once bypasses the schedule: a picture that could not be used is followed by the
            # next one at once, not after the interval (which made --once look hung)
            next_look = time.monotonic() + (0.0 if once else self.schedule.poll_s)
            try:
                queued = self._look(force=once)
                if queued and max_frames is not None and self.frames_queued >= max_frames:
                    break
            except SourceExhausted as exc:
                if once and not self.frames_queued:
                    log.error("--once: no frame sent: %s", exc)
                    return EXIT_FAILED
                log.info("capture: %s; stopping", exc)
                break
            except SourceUnavailable as exc:
                log.error("capture: %s", exc)
                return EXIT_FAILED
            tries += 1
            if once and not queued and tries >= once_tries:
                log.error("--once: no frame sent: none of %d pictures could be used (see the warnings above)", tries)
                return EXIT_FAILED
        return EXIT_OK

    def _look(self, force: bool) -> bool:
        """Take one picture and queue it if the schedule wants it; True when a frame was queued."""
        t0 = time.monotonic()
        try:
            pic = self.source.read()
        except UnreadableImage as exc:
            log.warning("capture: skipped unreadable image: %s", exc)
            return False
        except (SourceExhausted, SourceUnavailable):
            raise
        except CaptureError as exc:
            self._capture_error(exc)
            return False
        self._capture_failures = 0
        self.looks += 1
        t1 = time.monotonic()
        decision = self.schedule.decide(pic.image)
        t2 = time.monotonic()
        if not (decision.send or force):
            log.debug("look %d (%s): not sent, %s", self.looks, pic.name, decision.reason)
            return False
        try:
            selection = self.selector.select(pic.image)
        except BudgetTooSmall as exc:  # the picture's fault (too small for the budget): no traceback
            log.error("picture %s skipped: %s", pic.name, exc)
            return False
        except Exception:
            log.exception("pipeline failed on %s; picture skipped", pic.name)
            return False
        t3 = time.monotonic()
        self._last_select_ms = (t3 - t2) * 1000
        if selection is None:  # an event-triggered selector with nothing happening (edge.temporal)
            log.debug("look %d (%s): not sent, no event", self.looks, pic.name)
            return False
        try:
            queued = self.outbox.enqueue(lambda counter: self.packer(selection, counter, pic.capture_ms),
                                         capture_ms=pic.capture_ms)
        except OutboxFull as exc:
            log.error("outbox: disk full, frame from %s dropped; will retry with the next frame: %s", pic.name, exc)
            return False
        except (FrameTooLarge, OutboxError) as exc:
            log.error("outbox: frame from %s not stored: %s", pic.name, exc)
            return False
        except Exception:
            log.exception("packing failed for %s; picture skipped", pic.name)
            return False
        t4 = time.monotonic()
        on_queued = getattr(self.selector, "queued", None)
        if on_queued is not None:  # a key frame becomes the reference under its counter (edge.temporal)
            on_queued(selection, queued.counter)
        self.sender.wake()
        self.frames_queued += 1
        log.info(
            "frame %d from %s (%s): %d bytes; capture %.0f ms, schedule %.1f ms, select %.0f ms%s, "
            "pack+store %.0f ms",
            queued.counter, pic.name, decision.reason if decision.send else "forced", queued.nbytes,
            (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, _stage_timings(selection),
            (t4 - t3) * 1000,
        )
        self.notifier.status(self.status_line())
        return True

    def _capture_error(self, exc: CaptureError) -> None:
        self._capture_failures += 1
        log.warning("capture failed (%d in a row): %s", self._capture_failures, exc)
        if self._capture_failures % self.reopen_after == 0:
            log.warning("capture: reopening the source")
            self.source.close()
            try:
                self.source.load()
            except CaptureError as again:
                log.warning("capture: reopen failed: %s", again)
        self._wait(self.retry_s)

    def _drain(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < end:
            if self.outbox.stats().frames == 0:
                return EXIT_OK
            self._wait(0.05)
        left = self.outbox.stats().frames
        if left and not self.stop.is_set():
            log.error("%d frames still queued after %.0f s; they stay in the outbox for the next run", left, timeout)
            return EXIT_FAILED
        return EXIT_OK

    def status_line(self) -> str:
        try:
            stats = self.outbox.stats()
            queue = f"queue {stats.frames} ({stats.nbytes} B)"
        except OutboxError:
            queue = "queue unreadable"
        s = self.sender.stats
        link = "link ok" if not s.failures else f"link down ({s.failures} failures)"
        return f"queued {self.frames_queued}, sent {s.frames_sent}, {queue}, {link}, select {self._last_select_ms:.0f} ms"


def _stage_timings(selection: Any) -> str:
    timings = getattr(selection, "timings", None)
    if not isinstance(timings, dict) or not timings:
        return ""
    return " (" + ", ".join(f"{k} {float(v):.0f}" for k, v in timings.items()) + ")"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set ``stop``; the previous handlers come back on exit (main thread only)."""

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
