"""A tiny name -> factory registry shared by the edge's pluggable backends.

Inference runtimes and segmenters are chosen by a config string. A backend whose hardware
library is missing stays listed, marked unavailable with the reason, so selecting it raises
``BackendUnavailable`` naming what to install instead of an ImportError at ``import edge``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackendError(RuntimeError):
    """A backend failed to load or run; the message names the model and the cause."""


class UnknownBackend(ValueError):
    """A config string names no registered backend; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} backend {name!r}; valid choices: {', '.join(valid)}")


class BackendUnavailable(BackendError):
    """The backend exists but its libraries are missing on this machine."""

    def __init__(self, kind: str, name: str, reason: str, available: list[str]) -> None:
        self.kind, self.name, self.reason = kind, name, reason
        choices = ", ".join(available) or "none"
        super().__init__(f"{kind} backend {name!r} is unavailable here: {reason}; available: {choices}")


class Registry(Generic[T]):
    """Factories keyed by config string, with an availability check per entry."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._unavailable: dict[str, Callable[[], str | None]] = {}

    def register(
        self, name: str, factory: Callable[..., T], missing: Callable[[], str | None] | None = None
    ) -> None:
        """Add ``factory`` under ``name``; ``missing()`` returns why it cannot run here, or None."""
        if name in self._factories:
            raise ValueError(f"{self.kind} backend {name!r} registered twice")
        self._factories[name] = factory
        if missing is not None:
            self._unavailable[name] = missing

    def names(self) -> list[str]:
        return sorted(self._factories)

    def reason_unavailable(self, name: str) -> str | None:
        check = self._unavailable.get(name)
        return check() if check else None

    def available(self) -> list[str]:
        return [n for n in self.names() if self.reason_unavailable(n) is None]

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        if name not in self._factories:
            raise UnknownBackend(self.kind, name, self.names())
        reason = self.reason_unavailable(name)
        if reason is not None:
            log.error("%s backend %r selected but unavailable: %s", self.kind, name, reason)
            raise BackendUnavailable(self.kind, name, reason, self.available())
        return self._factories[name](*args, **kwargs)
