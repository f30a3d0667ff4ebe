"""The transport interface: move opaque byte strings, nothing else (no parsing, no crypto)."""

from __future__ import annotations

import abc
from types import TracebackType


class Transport(abc.ABC):
    """One link endpoint. ``send`` returns once the bytes are handed on (for MQTT: acknowledged)."""

    name = "transport"

    @abc.abstractmethod
    def send(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def recv(self, timeout: float | None = None) -> bytes | None:
        """Next received payload, or None when ``timeout`` passes first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection or port; idempotent."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
