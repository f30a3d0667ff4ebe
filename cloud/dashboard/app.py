"""The dashboard as a Starlette app over the store's read API: HTML pages, JSON API, images.

Routes::

    /                                   devices with last-seen and link statistics + frame grid
                                        (?device=&limit=&before=: filter and keyset paging)
    /frames/{device}/{counter}          one frame: reconstruction, received-token mask, metrics
    /frames/{device}/{counter}/{file}   image.png, mask.png (capped at max_side), thumb.jpg, mask-thumb.jpg
    /quarantine                         rejects by reason (?reason=)
    /api/devices  /api/frames?device=&limit=&before=  /api/frames/{device}/{counter}
    /api/quarantine?reason=&limit=  /api/quarantine/{id}/payload
    /healthz                            200 when the store answers, 503 otherwise

Endpoints are plain ``def``: Starlette runs them in its thread pool, so a slow store read or
thumbnail never blocks the event loop. The app only reads; the worker is the only writer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.store import FrameRecord, Store, StoreError

from . import pages
from .images import ImageCache
from .paging import BadCursor, Cursor, page

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent
STATIC_FILES = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           b'fill="#18202b"/><rect x="3" y="3" width="4" height="4" fill="#7fb0ff"/><rect x="9" y="9" width="4" '
           b'height="4" fill="#7fb0ff"/></svg>')
FRAME_FILES = {"image.png": ("image", "full"), "mask.png": ("mask", "full"),
               "thumb.jpg": ("image", "thumb"), "mask-thumb.jpg": ("mask", "thumb")}
MAX_LIMIT = 200
U32 = 0xFFFF_FFFF
IMMUTABLE = "public, max-age=31536000, immutable"  # a stored frame's images never change
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class BadRequest(ValueError):
    pass


class _SecurityHeaders:
    """Pure ASGI middleware: the same headers on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def frame_json(f: FrameRecord) -> dict[str, Any]:
    d = dataclasses.asdict(f)
    base = pages.frame_url(f)
    d.update(detail_url=base, image_url=f"{base}/image.png", mask_url=f"{base}/mask.png",
             thumb_url=f"{base}/thumb.jpg", received_at_iso=pages.iso(f.received_at))
    return d


def _int_arg(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name}={value} outside [{lo}, {hi}]")
    return value


class Dashboard:
    def __init__(self, store: Store, images: ImageCache, page_size: int) -> None:
        self.store, self.images, self.page_size = store, images, page_size

    # -- shared ---------------------------------------------------------------------------------
    def _frames_query(self, request: Request, default_limit: int) -> tuple[int | None, int, Cursor | None]:
        device = _int_arg(request, "device", None, 0, U32)
        limit = _int_arg(request, "limit", default_limit, 1, MAX_LIMIT)
        raw = request.query_params.get("before", "")
        try:
            before = Cursor.parse(raw) if raw else None
        except BadCursor as exc:
            raise BadRequest(str(exc)) from None
        return device, limit or default_limit, before

    def _html(self, title: str, body: str, status: int = 200, active: str = "") -> HTMLResponse:
        try:
            quarantined = sum(self.store.quarantine_counts().values())
        except StoreError:
            quarantined = 0
        return HTMLResponse(pages.layout(title, body, quarantined=quarantined, active=active), status_code=status)

    def _error(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/healthz":
            return JSONResponse({"error": message}, status_code=status)
        return self._html(str(status), pages.error_page(status, message), status)

    def guarded(self, handler: Any) -> Any:
        def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except BadRequest as exc:
                return self._error(request, 400, str(exc))
            except StoreError as exc:
                log.warning("dashboard: store read failed: %s", exc)
                return self._error(request, 503, f"store unavailable ({exc.reason})")

        return endpoint

    # -- HTML -----------------------------------------------------------------------------------
    def fleet(self, request: Request) -> Response:
        device, limit, before = self._frames_query(request, self.page_size)
        frames, next_cursor = page(self.store, device, limit, before)
        body = pages.fleet_page(self.store.list_devices(), frames, now=time.time(), device=device, limit=limit,
                                next_cursor=next_cursor, paged=before is not None,
                                thumb_side=self.images.thumb_side, total=self.store.count_frames(device))
        return self._html("fleet", body, active="fleet")

    def frame(self, request: Request) -> Response:
        f = self._get_frame(request)
        if f is None:
            return self._error(request, 404, "no such frame")
        return self._html(f"device {f.device_id} frame {f.counter}", pages.frame_page(f, time.time()))

    def quarantine(self, request: Request) -> Response:
        reason = request.query_params.get("reason") or None
        limit = _int_arg(request, "limit", 100, 1, 1000) or 100
        body = pages.quarantine_page(self.store.quarantine_counts(), self.store.list_quarantine(limit=limit, reason=reason),
                                     time.time(), reason)
        return self._html("quarantine", body, active="quarantine")

    # -- files ----------------------------------------------------------------------------------
    def frame_file(self, request: Request) -> Response:
        name = request.path_params["file"]
        if name not in FRAME_FILES:
            return self._error(request, 404, f"no file {name!r}; choose from {', '.join(FRAME_FILES)}")
        key = _frame_key(request)
        paths = None if key is None else self.store.frame_paths(*key)
        if key is None or paths is None:
            return self._error(request, 404, "no such frame")
        device, counter = key
        kind, size = FRAME_FILES[name]
        source = paths.image if kind == "image" else paths.mask
        try:
            made = self.images.get(source, device, counter, kind, size)  # type: ignore[arg-type]
        except OSError as exc:
            log.warning("dashboard: cannot read %s: %s", source, exc)
            return self._error(request, 404, "image file missing")
        if made is None:
            return FileResponse(source, media_type="image/png", headers={"cache-control": IMMUTABLE})
        data, media = made
        return Response(data, media_type=media, headers={"cache-control": IMMUTABLE})

    @staticmethod
    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "favicon.svg":
            return Response(FAVICON, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"})
        if name not in STATIC_FILES:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})

    # -- JSON -----------------------------------------------------------------------------------
    def api_devices(self, request: Request) -> Response:
        out = []
        for d in self.store.list_devices():
            item = dataclasses.asdict(d)
            item.update(fragment_loss=d.fragment_loss, last_seen_iso=pages.iso(d.last_seen))
            out.append(item)
        return JSONResponse({"devices": out})

    def api_frames(self, request: Request) -> Response:
        device, limit, before = self._frames_query(request, 50)
        frames, next_cursor = page(self.store, device, limit, before)
        return JSONResponse({"frames": [frame_json(f) for f in frames],
                             "next_before": None if next_cursor is None else str(next_cursor)})

    def api_frame(self, request: Request) -> Response:
        f = self._get_frame(request)
        if f is None:
            return self._error(request, 404, "no such frame")
        return JSONResponse(frame_json(f))

    def api_quarantine(self, request: Request) -> Response:
        reason = request.query_params.get("reason") or None
        limit = _int_arg(request, "limit", 100, 1, 1000) or 100
        records = [dataclasses.asdict(q) for q in self.store.list_quarantine(limit=limit, reason=reason)]
        return JSONResponse({"counts": self.store.quarantine_counts(), "rejects": records})

    def api_quarantine_payload(self, request: Request) -> Response:
        qid = request.path_params["qid"]
        data = self.store.quarantine_payload(qid) if qid < 1 << 63 else None
        if data is None:
            return self._error(request, 404, "no such quarantine entry")
        return Response(data, media_type="application/octet-stream",
                        headers={"content-disposition": f'attachment; filename="quarantine-{int(qid)}.bin"'})

    def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "frames": self.store.count_frames(),
                             "pending": self.store.pending_frames()})

    def _get_frame(self, request: Request) -> FrameRecord | None:
        key = _frame_key(request)
        return None if key is None else self.store.get_frame(*key)


def _frame_key(request: Request) -> tuple[int, int] | None:
    """(device, counter) from the path; None outside the wire's u32 range (no such frame can exist)."""
    device, counter = request.path_params["device"], request.path_params["counter"]
    return (device, counter) if device <= U32 and counter <= U32 else None


def create_app(store: Store, *, thumb_dir: Path | None = None, thumb_side: int = 256, max_side: int = 2048,
               page_size: int = 48) -> Starlette:
    """The dashboard over ``store`` (read only). ``thumb_dir`` keeps thumbnails across restarts;
    ``thumb_side`` and ``max_side`` bound every image served; ``page_size`` frames per grid page."""
    if not 1 <= page_size <= MAX_LIMIT:
        raise ValueError(f"page_size must be in [1, {MAX_LIMIT}], got {page_size}")
    d = Dashboard(store, ImageCache(thumb_side=thumb_side, max_side=max_side, thumb_dir=thumb_dir), page_size)
    g = d.guarded
    routes = [
        Route("/", g(d.fleet)),
        Route("/frames/{device:int}/{counter:int}", g(d.frame)),
        Route("/frames/{device:int}/{counter:int}/{file}", g(d.frame_file)),
        Route("/quarantine", g(d.quarantine)),
        Route("/static/{name}", d.static),
        Route("/api/devices", g(d.api_devices)),
        Route("/api/frames", g(d.api_frames)),
        Route("/api/frames/{device:int}/{counter:int}", g(d.api_frame)),
        Route("/api/quarantine", g(d.api_quarantine)),
        Route("/api/quarantine/{qid:int}/payload", g(d.api_quarantine_payload)),
        Route("/healthz", g(d.healthz)),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)])
    app.state.dashboard = d
    return app
