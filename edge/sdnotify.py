"""systemd's notify protocol: tell the service manager we are ready, alive, busy or stopping.

The protocol is one AF_UNIX datagram per message, ``KEY=value`` lines, sent to the socket named
in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). When the variable is
unset (tests, a shell, a non-systemd init) every call is a no-op, so the service code never asks
whether it runs under systemd. Written here instead of depending on python-systemd because that
package needs libsystemd headers to build, which a Jetson or Pi image often lacks.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages; ``with Notifier.from_env() as n: n.ready()``."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self.watchdog_usec = watchdog_usec
        self._last_ping = 0.0
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """Read ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (honouring ``$WATCHDOG_PID``)."""
        env = os.environ if env is None else env
        watchdog = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, message: str) -> bool:
        """Send one datagram; returns False (and logs once per call) if it could not be sent."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            # The manager being gone is not a reason to stop taking pictures.
            log.warning("sd_notify %r failed: %s", message.split("=", 1)[0], exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        self._last_ping = time.monotonic()
        return self.notify("WATCHDOG=1")

    def watchdog_due(self, now: float | None = None) -> bool:
        interval = self.watchdog_interval
        if interval is None or self._sock is None:
            return False
        return (time.monotonic() if now is None else now) - self._last_ping >= interval

    def ping_if_due(self) -> bool:
        """Call from the main loop each iteration; pings at most every half watchdog period."""
        return self.watchdog() if self.watchdog_due() else False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _socket_address(address: str) -> str | bytes:
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")  # abstract namespace: leading NUL, no file
    return address
