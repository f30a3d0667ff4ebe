"""The sender thread: drains the outbox through the transport, oldest frame first.

It only ever sends bytes that are already sealed and stored, and deletes a fragment only after
``transport.send`` returned; so a link outage just leaves frames queued, and the thread retries
with exponential backoff (jittered, so a fleet does not reconnect in lockstep after a broker
restart). After ``reopen_after`` consecutive failures the transport is closed and opened again,
which is what a re-plugged USB radio or a stale MQTT session needs. The thread polls the stop
event with a timeout and never blocks longer than one transport call.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .outbox import Outbox, Pending, StorageError

log = logging.getLogger(__name__)


class Transport(Protocol):
    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


TransportFactory = Callable[[], Transport]


@dataclass
class SenderConfig:
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    fragment_gap_s: float = 0.0  # pause between fragments, e.g. to respect a radio's duty cycle
    reopen_after: int = 3  # consecutive failures before the transport is closed and reopened
    idle_poll_s: float = 1.0  # how often an idle sender looks at the outbox without a wake-up
    drain_timeout_s: float = 60.0  # --once / --max-frames: wait this long for the queue to empty

    def check(self, prefix: str) -> list[tuple[str, str]]:
        bad = []
        for name in ("backoff_initial_s", "backoff_max_s", "fragment_gap_s", "drain_timeout_s"):
            if getattr(self, name) < 0:
                bad.append((f"{prefix}.{name}", f"must be >= 0, got {getattr(self, name)}"))
        if self.idle_poll_s <= 0:
            bad.append((f"{prefix}.idle_poll_s", f"must be > 0, got {self.idle_poll_s}"))
        if self.reopen_after < 1:
            bad.append((f"{prefix}.reopen_after", f"must be >= 1, got {self.reopen_after}"))
        return bad


def backoff_delay(failures: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Delay before retry number ``failures`` (1-based): exponential, capped, 50-100 % jitter."""
    base = min(maximum, initial * 2 ** min(failures - 1, 30))
    return base * rng.uniform(0.5, 1.0)


@dataclass
class SenderStats:
    frames_sent: int = 0
    fragments_sent: int = 0
    bytes_sent: int = 0
    failures: int = 0  # consecutive
    last_error: str = ""
    last_send_ms: float = 0.0


class Sender:
    """Owns the transport; ``start()`` a thread, ``wake()`` after each enqueue, ``close()`` at the end."""

    def __init__(
        self,
        outbox: Outbox,
        open_transport: TransportFactory,
        cfg: SenderConfig,
        stop: threading.Event,
    ) -> None:
        self.outbox, self.cfg, self.stop = outbox, cfg, stop
        self._open_transport = open_transport
        self._transport: Transport | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()  # set by close(); the service's stop event also ends the loop
        self._rng = random.Random()
        self.stats = SenderStats()
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def _stopped(self) -> bool:
        return self.stop.is_set() or self._halt.is_set()

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopped() and (left := end - time.monotonic()) > 0:
            self._halt.wait(min(left, 0.2))  # stop is polled too: either event ends the pause

    def _run(self) -> None:
        try:
            while not self._stopped():
                try:
                    pending = self.outbox.peek()
                except StorageError as exc:
                    self._failed(f"outbox: {exc}")
                    continue
                if pending is None:
                    self._wake.wait(self.cfg.idle_poll_s)
                    self._wake.clear()
                    continue
                self._send_frame(pending)
        finally:
            self._close_transport()

    def _send_frame(self, pending: Pending) -> None:
        t0 = time.monotonic()
        for idx, data in pending.fragments:
            if self._stopped():
                return
            try:
                if self._transport is None:
                    self._transport = self._open_transport()
                self._transport.send(data)
            except Exception as exc:  # LinkError, OSError, or a backend's own: all mean "retry later"
                self._failed(f"send frame {pending.counter} fragment {idx}: {type(exc).__name__}: {exc}")
                return
            try:
                self.outbox.ack(pending.counter, idx)
            except StorageError as exc:
                # Sent but not deleted: it will be sent again, same bytes, same counter.
                self._failed(f"outbox ack: {exc}")
                return
            self.stats.fragments_sent += 1
            self.stats.bytes_sent += len(data)
            if self.stats.failures:
                log.info("link back after %d failures", self.stats.failures)
            self.stats.failures, self.stats.last_error = 0, ""
            if self.cfg.fragment_gap_s:
                self._pause(self.cfg.fragment_gap_s)
        self.stats.frames_sent += 1
        self.stats.last_send_ms = (time.monotonic() - t0) * 1000
        log.info(
            "sent frame %d: %d fragments, %d bytes in %.0f ms",
            pending.counter, len(pending.fragments), sum(len(d) for _, d in pending.fragments),
            self.stats.last_send_ms,
        )

    def _failed(self, message: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = message
        delay = backoff_delay(self.stats.failures, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, self._rng)
        log.warning("%s; retry %d in %.1f s", message, self.stats.failures, delay)
        if self.stats.failures % self.cfg.reopen_after == 0:
            self._close_transport()
        self._pause(delay)

    def _close_transport(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            except Exception as exc:
                log.warning("closing transport: %s", exc)
            self._transport = None

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the thread and close the transport; False if the thread did not end in time."""
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Sender:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
