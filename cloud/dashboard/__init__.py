"""The cloud's web dashboard: fleet, frames, quarantine, JSON API (Starlette, served by uvicorn).

``create_app(store)`` is the ASGI app (mount it anywhere); ``serve_dashboard(store, host, port,
stop_event)`` runs it until the event is set; ``DashboardServer`` is the same as a handle.
"""

from .app import create_app
from .server import DashboardServer, serve_dashboard

__all__ = ["DashboardServer", "create_app", "serve_dashboard"]
