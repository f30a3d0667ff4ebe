"""In-process link for the demo and tests: a pair of queues, one per direction."""

from __future__ import annotations

import queue
import threading

from link.errors import TransportError
from link.transports.base import Transport
from link.transports.config import TransportConfig


class LoopbackTransport(Transport):
    name = "loopback"

    def __init__(self, inbox: queue.Queue[bytes], outbox: queue.Queue[bytes]) -> None:
        self._inbox, self._outbox = inbox, outbox
        self._closed = False

    def send(self, data: bytes) -> None:
        if self._closed:
            raise TransportError("loopback endpoint is closed")
        self._outbox.put(bytes(data))

    def recv(self, timeout: float | None = None) -> bytes | None:
        if self._closed:
            raise TransportError("loopback endpoint is closed")
        try:
            return self._inbox.get(timeout=timeout) if timeout != 0 else self._inbox.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closed = True


class LoopbackLink:
    """Two connected endpoints: what ``edge`` sends, ``cloud`` receives, and back."""

    def __init__(self) -> None:
        up: queue.Queue[bytes] = queue.Queue()
        down: queue.Queue[bytes] = queue.Queue()
        self.edge = LoopbackTransport(inbox=down, outbox=up)
        self.cloud = LoopbackTransport(inbox=up, outbox=down)

    def endpoints(self) -> tuple[LoopbackTransport, LoopbackTransport]:
        return self.edge, self.cloud


_channels: dict[str, LoopbackLink] = {}
_lock = threading.Lock()


def channel(name: str) -> LoopbackLink:
    """The process-wide named link, so two ``make_transport`` calls on one name connect."""
    with _lock:
        return _channels.setdefault(name, LoopbackLink())


def create(cfg: TransportConfig) -> Transport:
    link = channel(cfg.loopback.channel)
    return link.edge if cfg.loopback.side == "edge" else link.cloud
