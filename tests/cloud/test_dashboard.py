"""The dashboard over a worker fed real frames: JSON API, paging, bounded images, escaping, and a
real headless Chromium clicking through it (screenshots kept as test artefacts).

Frames are real pictures (scikit-image samples) encoded by the random-init codec, packed and
sealed by the link, fed to the worker, restored and stored: the dashboard reads what the
worker wrote. One frame loses a fragment (partial), two are staged in one batch (equal receive
times: the paging cursor must still neither skip nor repeat), one fragment is forged (auth
reject), and one quarantine entry carries markup in its detail (escaping).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from cloudkit import cloud_config, device_key
from PIL import Image
from starlette.testclient import TestClient

from cloud.dashboard import DashboardServer, create_app, serve_dashboard
from cloud.store import make_store
from cloud.worker import Delivery, Worker
from link.frame import Frame
from link.packet import pack
from link.security import Sealer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
W, H = 128, 96
MTU = 60  # several fragments per frame, so one can be lost
XSS = "<script>alert('pwned')</script> & <b>bold</b>"


def _pictures() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in ("chelsea", "coffee", "astronaut"):
        im = Image.fromarray(np.asarray(getattr(data, name)())[..., :3])
        out.append(np.asarray(im.resize((W, H), Image.Resampling.BILINEAR)))
    return out


class Fleet:
    """Three devices' worth of real frames in a store, plus the rejects."""

    def __init__(self, root: Path, codec) -> None:
        self.cfg = cloud_config(root, timeout_s=5.0)
        self.store = make_store(self.cfg.store)
        self.worker = Worker(self.cfg, self.store, {1: codec})
        pictures = _pictures()
        grids = codec.encode(pictures)
        rng = np.random.default_rng(0)
        self.sealers = {d: Sealer(device_key(d), d) for d in (1, 2, 3)}
        for device in (1, 2, 3):
            batch: list[bytes] = []
            for counter in (1, 2, 3):
                i = (device + counter) % 3
                kept = rng.random(grids[i].shape) < 0.3
                frags = pack(Frame.from_index_grid(grids[i], kept, device_id=device, counter=counter,
                                                   capture_ms=1_700_000_000_000 + counter, width=W, height=H,
                                                   tokenizer_id=1), mtu=MTU, sealer=self.sealers[device])
                assert len(frags) >= 3
                if device == 2 and counter == 2:
                    frags = frags[:1] + frags[2:]  # the channel lost one: a partial frame
                if device == 3 and counter < 3:
                    batch += frags  # staged together: both frames get the same receive time
                    continue
                for f in frags:
                    self.worker.submit(f)
                self.worker.drain()
            if batch:
                self.worker.ingest([Delivery(f) for f in batch])
                self.worker.drain()
        forged = bytearray(pack(Frame.from_index_grid(grids[0], np.ones(grids[0].shape, bool), device_id=1,
                                                      counter=9, capture_ms=1, width=W, height=H, tokenizer_id=1),
                                mtu=MTU, sealer=self.sealers[1])[0])
        forged[-1] ^= 0xFF
        self.worker.submit(bytes(forged))
        self.store.quarantine("malformed", 2, b"\x01\x02", XSS, counter=7)

    def close(self) -> None:
        self.store.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, codec):
    f = Fleet(tmp_path_factory.mktemp("fleet"), codec)
    yield f
    f.close()


@pytest.fixture
def client(fleet):
    with TestClient(create_app(fleet.store, page_size=4)) as c:
        yield c


def test_api_lists_devices_frames_and_rejects(client):
    devices = client.get("/api/devices").json()["devices"]
    assert [d["device_id"] for d in devices] == [1, 2, 3]
    assert all(d["frames"] == 3 and d["last_seen"] > 0 and d["last_seen_iso"].endswith("UTC") for d in devices)
    by_id = {d["device_id"]: d for d in devices}
    assert by_id[2]["fragment_loss"] > 0 and by_id[1]["fragment_loss"] == 0
    assert by_id[1]["rejects"] == 1 and by_id[2]["rejects"] == 1  # forged fragment; injected entry

    frames = client.get("/api/frames", params={"limit": 50}).json()["frames"]
    assert len(frames) == 9
    times = [f["received_at"] for f in frames]
    assert times == sorted(times, reverse=True)  # newest first
    partial = next(f for f in frames if f["device_id"] == 2 and f["counter"] == 2)
    assert not partial["complete"] and partial["lost_ratio"] > 0
    assert all(f["bpp"] > 0 and 0 < f["kept_ratio"] < 1 and f["restore_ms"] > 0 for f in frames)
    only2 = client.get("/api/frames", params={"device": 2}).json()["frames"]
    assert {f["device_id"] for f in only2} == {2} and len(only2) == 3

    q = client.get("/api/quarantine").json()
    assert q["counts"] == {"auth": 1, "malformed": 1}
    assert {r["reason"] for r in q["rejects"]} == {"auth", "malformed"}
    assert client.get("/healthz").json() == {"status": "ok", "frames": 9, "pending": 0}


def test_before_cursor_pages_every_frame_once_even_with_equal_receive_times(client, fleet):
    seen, before = [], None
    while True:
        params = {"limit": 2, **({"before": before} if before else {})}
        body = client.get("/api/frames", params=params).json()
        seen += [(f["device_id"], f["counter"]) for f in body["frames"]]
        before = body["next_before"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 9
    assert seen == [(f.device_id, f.counter) for f in fleet.store.list_frames(limit=50)]
    tied = [f.received_at for f in fleet.store.list_frames(3, limit=50) if f.counter < 3]
    assert tied[0] == tied[1]  # the case the cursor's tie-break exists for
    # a plain unix time means "received strictly before"
    newest = fleet.store.list_frames(limit=1)[0]
    older = client.get("/api/frames", params={"before": repr(newest.received_at), "limit": 50}).json()["frames"]
    expected = [f for f in fleet.store.list_frames(limit=50) if f.received_at < newest.received_at]
    assert len(older) == len(expected) == 7  # the newest two were staged together: both excluded
    for bad in ({"before": "yesterday"}, {"device": "x"}, {"limit": 0}, {"limit": 10_000}):
        r = client.get("/api/frames", params=bad)
        assert r.status_code == 400 and "error" in r.json()


def test_images_are_bounded_and_made_once(fleet, tmp_path):
    app = create_app(fleet.store, thumb_side=64, max_side=100, thumb_dir=tmp_path / "thumbs")
    cache = app.state.dashboard.images
    with TestClient(app) as c:
        for name, side in (("thumb.jpg", 64), ("mask-thumb.jpg", 64), ("image.png", 100), ("mask.png", 100)):
            r = c.get(f"/frames/1/1/{name}")
            assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
            im = Image.open(__import__("io").BytesIO(r.content))
            assert max(im.size) == side and im.size[0] / im.size[1] == pytest.approx(W / H, rel=0.05)
        made = cache.generated
        assert c.get("/frames/1/1/thumb.jpg").status_code == 200 and cache.generated == made  # cached
        assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == 2  # kept on disk across restarts
        assert c.get("/frames/1/1/other.png").status_code == 404
        assert c.get("/frames/1/99/thumb.jpg").status_code == 404
        assert c.get(f"/frames/1/{1 << 40}").status_code == 404  # past u32: no such frame, no crash
    with TestClient(create_app(fleet.store, max_side=4096)) as c:  # small enough: the stored file as is
        r = c.get("/frames/1/1/image.png")
        assert r.content == fleet.store.frame_paths(1, 1).image.read_bytes()


def test_html_escapes_network_text_and_sends_security_headers(client):
    r = client.get("/quarantine")
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    page = client.get("/")
    assert page.text.count('class="card"') == 4 and 'rel="next"' in page.text  # page_size 4 of 9
    assert client.get("/frames/2/2").status_code == 200
    missing = client.get("/frames/5/5")
    assert missing.status_code == 404 and "no such frame" in missing.text
    assert client.get("/api/quarantine/1/payload").status_code == 200


def test_serve_dashboard_stops_on_the_event_and_survives_a_busy_port(fleet, caplog):
    import socket
    import threading
    import urllib.request

    stop = threading.Event()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    thread = threading.Thread(target=serve_dashboard, args=(fleet.store, "127.0.0.1", port, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                assert json.load(r)["status"] == "ok"
            break
        except OSError:
            assert time.monotonic() < deadline, "dashboard did not come up"
            time.sleep(0.1)
    serve_dashboard(fleet.store, "127.0.0.1", port, threading.Event())  # port taken: logs, returns
    assert "dashboard not started" in caplog.text
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def _artifacts(tmp_path: Path) -> Path:
    root = Path(os.environ.get("TOKENCAST_ARTIFACTS") or tmp_path)
    out = root / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_dashboard_in_headless_chromium(fleet, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    chromium = CHROMIUM if CHROMIUM.exists() else (Path(shutil.which("chromium") or "/nonexistent"))
    if not chromium.exists():
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    shots = _artifacts(tmp_path)
    problems: list[str] = []
    with DashboardServer(fleet.store, "127.0.0.1", 0, page_size=48) as server, sync_api.sync_playwright() as pw:
        assert server.wait_started()
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

            page.goto(server.url + "/")
            assert page.locator("table.devices tbody tr").count() == 3
            assert page.locator("a.card").count() == 9
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function("() => [...document.querySelectorAll('a.card img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=20_000)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shots / "fleet.png"), full_page=True)

            page.select_option("select[name=device]", "2")  # the script submits the filter
            page.wait_for_url("**device=2**")
            assert set(page.locator("a.card").evaluate_all("cs => cs.map(c => c.dataset.device)")) == {"2"}

            page.locator("a.card", has_text="#2").first.click()
            page.wait_for_url("**/frames/2/2")
            assert "frame 2" in page.locator("h1").inner_text()
            page.wait_for_function("() => ['recon', 'mask'].every(id => document.getElementById(id).naturalWidth > 0)")
            facts = page.locator("table.facts").inner_text()
            assert "lost tokens" in facts and "bits per pixel" in facts and "restore time" in facts
            page.screenshot(path=str(shots / "frame.png"), full_page=True)

            page.goto(server.url + "/quarantine")
            assert page.locator("table.rejects tr.reject").count() == 2
            assert "<script>alert('pwned')</script>" in page.locator("td.detailtext").all_inner_texts()[0]
            assert set(page.locator("table.reasons td a").all_inner_texts()) == {"auth", "malformed"}
            page.screenshot(path=str(shots / "quarantine.png"), full_page=True)
        finally:
            browser.close()
    print(f"dashboard screenshots: {shots}")
    assert not problems, problems
    assert all((shots / n).stat().st_size > 1000 for n in ("fleet.png", "frame.png", "quarantine.png"))
