"""Run the dashboard with uvicorn in a background thread, stopped by an event or ``close()``.

The socket is bound here, before uvicorn starts, so port 0 (tests) yields a known port and a
port already in use fails at once with OSError instead of inside the server thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from cloud.store import Store

from .app import create_app

log = logging.getLogger(__name__)


class DashboardServer:
    """A started dashboard: ``url``, ``port``; ``close()`` stops it (context manager too)."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 8080, **app_kwargs: Any) -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(create_app(store, **app_kwargs), log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="tokencast-dashboard", daemon=True)
        self._thread.start()
        log.info("dashboard on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def wait_started(self, timeout: float = 10.0) -> bool:
        """True once uvicorn accepts connections; False if it died or the timeout passed."""
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def serve_dashboard(store: Store, host: str, port: int, stop_event: threading.Event, *,
                    thumb_dir: Path | None = None, **app_kwargs: Any) -> None:
    """Serve until ``stop_event`` is set (blocks; run it in a thread beside the worker).

    A port that cannot be bound is logged and the function returns: the worker goes on without
    its dashboard rather than dying with it.
    """
    try:
        server = DashboardServer(store, host, port, thumb_dir=thumb_dir, **app_kwargs)
    except OSError as exc:
        log.error("dashboard not started: cannot listen on %s:%d (%s)", host, port, exc.strerror or exc)
        return
    with server:
        if not server.wait_started():
            log.error("dashboard on %s did not start", server.url)
            return
        stop_event.wait()
