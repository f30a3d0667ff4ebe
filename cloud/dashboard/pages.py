"""Server-rendered HTML of the dashboard: plain functions from store records to strings.

Every value that reaches the page goes through ``esc`` (device ids are integers today, but
reject reasons and details quote bytes that came off the network, and a future device name
will too). URLs are built only from integers and ``urlencode``. No inline script or style:
the CSP forbids them, the CSS and the small script are served from ``/static``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from urllib.parse import urlencode

from cloud.store import DeviceSummary, FrameRecord, QuarantineRecord

from .paging import Cursor


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def age(now: float, t: float | None) -> str:
    if t is None:
        return "never"
    s = max(0.0, now - t)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def iso(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def frame_url(f: FrameRecord, what: str = "") -> str:
    return f"/frames/{int(f.device_id)}/{int(f.counter)}" + (f"/{what}" if what else "")


def layout(title: str, body: str, *, quarantined: int = 0, active: str = "") -> str:
    def nav(href: str, label: str, key: str) -> str:
        cls = ' class="active"' if key == active else ""
        return f'<a href="{href}"{cls}>{label}</a>'

    badge = f' <span class="badge">{quarantined}</span>' if quarantined else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · tokencast</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head><body>'
        '<header><a class="brand" href="/">tokencast</a><nav>'
        + nav("/", "Fleet", "fleet") + nav("/quarantine", f"Quarantine{badge}", "quarantine")
        + f"</nav></header><main>{body}</main></body></html>"
    )


def devices_table(devices: list[DeviceSummary], now: float, selected: int | None) -> str:
    if not devices:
        return '<p class="empty">No device has sent anything yet.</p>'
    rows = []
    for d in devices:
        sel = ' class="selected"' if d.device_id == selected else ""
        rows.append(
            f'<tr{sel} data-device="{esc(d.device_id)}">'
            f'<td><a href="/?{urlencode({"device": d.device_id})}">{esc(d.device_id)}</a></td>'
            f'<td title="{esc(iso(d.last_seen))}">{esc(age(now, d.last_seen))}</td>'
            f"<td>{esc(d.frames)}</td><td>{esc(d.complete_frames)}</td>"
            f"<td>{esc(d.fragments_received)} / {esc(d.fragments_total)}</td>"
            f'<td class="{"warn" if d.fragment_loss > 0 else ""}">{esc(pct(d.fragment_loss))}</td>'
            f"<td>{esc(f'{d.mean_bpp:.3f}')}</td><td>{esc(pct(d.mean_kept_ratio))}</td>"
            f"<td>{esc(pct(d.mean_lost_ratio))}</td><td>{esc(d.wire_bytes)}</td>"
            f"<td>{esc(d.duplicates)}</td>"
            f'<td class="{"warn" if d.rejects else ""}">{esc(d.rejects)}</td>'
            f'<td>{esc("—" if d.last_counter is None else d.last_counter)}</td></tr>'
        )
    head = ("<tr><th>device</th><th>last seen</th><th>frames</th><th>complete</th><th>fragments</th>"
            "<th>fragment loss</th><th>mean bpp</th><th>mean kept</th><th>mean lost</th><th>bytes</th>"
            "<th>duplicates</th><th>rejects</th><th>last counter</th></tr>")
    return f'<table class="devices"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _thumb_dims(f: FrameRecord, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(f.width, f.height, 1))
    return max(1, round(f.width * scale)), max(1, round(f.height * scale))


def frame_card(f: FrameRecord, now: float, thumb_side: int) -> str:
    w, h = _thumb_dims(f, thumb_side)
    flags = "" if f.complete else '<span class="tag lost">partial</span>'
    return (
        f'<a class="card" href="{frame_url(f)}" data-device="{esc(f.device_id)}" data-counter="{esc(f.counter)}">'
        f'<img src="{frame_url(f, "thumb.jpg")}" width="{w}" height="{h}" loading="lazy" '
        f'alt="device {esc(f.device_id)} frame {esc(f.counter)}">'
        f'<span class="line"><b>device {esc(f.device_id)}</b> · #{esc(f.counter)}{flags}</span>'
        f'<span class="line muted" title="{esc(iso(f.received_at))}">{esc(age(now, f.received_at))}</span>'
        f'<span class="line">{esc(f.wire_bytes)} B · {esc(f"{f.bpp:.3f}")} bpp · kept {esc(pct(f.kept_ratio))}'
        + (f' · <span class="warn">lost {esc(pct(f.lost_ratio))}</span>' if f.lost_ratio else "")
        + "</span></a>"
    )


def fleet_page(devices: list[DeviceSummary], frames: list[FrameRecord], *, now: float, device: int | None,
               limit: int, next_cursor: Cursor | None, paged: bool, thumb_side: int, total: int) -> str:
    options = ['<option value="">all devices</option>'] + [
        f'<option value="{esc(d.device_id)}"{" selected" if d.device_id == device else ""}>'
        f"device {esc(d.device_id)}</option>" for d in devices
    ]
    base = {"device": device} if device is not None else {}
    newest = ""
    if frames and not paged:
        newest = esc(str(Cursor.after(frames[0])))
    api = "/api/frames?" + urlencode({**base, "limit": 1})
    pager = []
    if paged:
        pager.append(f'<a class="button" href="/?{urlencode({**base, "limit": limit})}">newest</a>')
    if next_cursor is not None:
        q = urlencode({**base, "limit": limit, "before": str(next_cursor)})
        pager.append(f'<a class="button" rel="next" href="/?{q}">older →</a>')
    grid = "".join(frame_card(f, now, thumb_side) for f in frames)
    if not frames:
        grid = '<p class="empty">No frames stored yet.</p>'
    return (
        f"<h1>Devices</h1>{devices_table(devices, now, device)}"
        f'<section class="frames"><div class="toolbar"><h1>Frames</h1>'
        f'<form method="get" action="/"><label>device <select name="device" data-autosubmit>'
        f'{"".join(options)}</select></label><input type="hidden" name="limit" value="{esc(limit)}">'
        f'<noscript><button>filter</button></noscript></form>'
        f'<span class="muted">{esc(total)} stored{"" if device is None else f" from device {esc(device)}"}, newest first</span>'
        f'<span id="fresh" class="fresh" hidden data-newest="{newest}" data-api="{esc(api)}">'
        f'<a href="/?{esc(urlencode(base))}">new frames: refresh</a></span></div>'
        f'<div class="grid">{grid}</div><nav class="pager">{"".join(pager)}</nav></section>'
    )


def _row(name: str, value: object) -> str:
    return f"<tr><th>{esc(name)}</th><td>{esc(value)}</td></tr>"


def frame_page(f: FrameRecord, now: float) -> str:
    capture = None if f.capture_ms is None else f.capture_ms / 1000
    rows = [
        _row("device", f.device_id), _row("counter", f.counter),
        _row("captured", iso(capture) if capture is not None else "unknown (first fragment lost)"),
        _row("received", f"{iso(f.received_at)} ({age(now, f.received_at)})"), _row("stored", iso(f.stored_at)),
        _row("image", f"{f.width} × {f.height} px"), _row("token grid", f"{f.grid_h} × {f.grid_w}"),
        _row("bytes on the wire", f.wire_bytes), _row("bits per pixel", f"{f.bpp:.4f}"),
        _row("kept tokens", pct(f.kept_ratio)), _row("lost tokens", pct(f.lost_ratio)),
        _row("fragments", f"{f.fragments_received} received / {f.fragments_total} sent"
                          + ("" if f.complete else " (at least)")),
        _row("restore time", f"{f.restore_ms:.1f} ms"),
        _row("PSNR", "—" if f.psnr is None else f"{f.psnr:.2f} dB"),
        _row("tokenizer", f.tokenizer_id), _row("worker", f.worker or "—"),
    ]
    title = f"Device {f.device_id} · frame {f.counter}"
    back = f"/?{urlencode({'device': f.device_id})}"
    return (
        f'<p><a href="{back}">← frames of device {esc(f.device_id)}</a></p><h1>{esc(title)}</h1>'
        f'<div class="detail"><figure><img id="recon" src="{frame_url(f, "image.png")}" '
        f'width="{esc(f.width)}" height="{esc(f.height)}" alt="reconstruction">'
        f"<figcaption>reconstruction</figcaption></figure>"
        f'<figure><img id="mask" src="{frame_url(f, "mask.png")}" width="{esc(f.width)}" '
        f'height="{esc(f.height)}" alt="received tokens">'
        f'<figcaption>tokens: as received · <span class="masked">masked (generated)</span> · '
        f'<span class="lostc">lost (generated)</span></figcaption></figure>'
        f'<table class="facts">{"".join(rows)}</table></div>'
    )


def quarantine_page(counts: dict[str, int], records: Iterable[QuarantineRecord], now: float,
                    reason: str | None) -> str:
    total = sum(counts.values())
    count_rows = "".join(
        f'<tr><td><a href="/quarantine?{urlencode({"reason": r})}">{esc(r)}</a></td><td>{esc(n)}</td></tr>'
        for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ) or '<tr><td colspan="2" class="empty">nothing rejected</td></tr>'
    rows = "".join(
        f'<tr class="reject"><td title="{esc(iso(q.received_at))}">{esc(age(now, q.received_at))}</td>'
        f"<td>{esc(q.reason)}</td><td>{esc('—' if q.device_id is None else q.device_id)}</td>"
        f"<td>{esc('—' if q.counter is None else q.counter)}</td><td>{esc(q.size)}</td>"
        f'<td class="detailtext">{esc(q.detail)}</td>'
        f'<td><a href="/api/quarantine/{int(q.id)}/payload">bytes</a></td></tr>'
        for q in records
    )
    heading = "Recent rejects" + (f" ({esc(reason)})" if reason else "")
    clear = ' <a href="/quarantine">all reasons</a>' if reason else ""
    return (
        f"<h1>Quarantine</h1><p class=\"muted\">{esc(total)} inputs rejected. Device ids here are as the "
        f"input claimed: unauthenticated.</p>"
        f'<table class="reasons"><thead><tr><th>reason</th><th>count</th></tr></thead><tbody>{count_rows}</tbody></table>'
        f"<h2>{heading}</h2>{clear}"
        f'<table class="rejects"><thead><tr><th>when</th><th>reason</th><th>device</th><th>counter</th>'
        f"<th>bytes</th><th>detail</th><th>payload</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def error_page(status: int, message: str) -> str:
    return f'<h1>{esc(status)}</h1><p class="error">{esc(message)}</p><p><a href="/">back to the fleet</a></p>'
