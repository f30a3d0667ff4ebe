"""The service loop with injected parts, then the real CLI in a subprocess (SIGTERM, no torch)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.capture import CaptureConfig, ImagesConfig, make_source
from edge.outbox import Outbox, Packed
from edge.schedule import IntervalSchedule
from edge.sdnotify import Notifier
from edge.sender import Sender, SenderConfig
from edge.service import EdgeService, RunLimits

REPO = Path(__file__).resolve().parents[2]
FAST = SenderConfig(backoff_initial_s=0.02, backoff_max_s=0.05, idle_poll_s=0.05, drain_timeout_s=10)


@dataclass
class FakeSelection:
    kept: np.ndarray
    indices: np.ndarray
    grid_h: int = 6
    grid_w: int = 8
    width: int = 64
    height: int = 48
    tokenizer_id: int = 1
    timings: dict = field(default_factory=lambda: {"encode": 1.0, "select": 0.5})
    n_semantic: int = 0


class FakeSelector:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def select(self, image: np.ndarray) -> FakeSelection:
        self.seen.append(int(image[0, 0, 0]))
        kept = np.zeros((6, 8), bool)
        kept[0, :2] = True
        return FakeSelection(kept, np.array([image[0, 0, 0], 1]))


def fake_packer(selection: FakeSelection, counter: int, capture_ms: int) -> Packed:
    tag = int(selection.indices[0])
    return Packed([b"c%d-i%d-f%d" % (counter, tag, i) for i in range(2)])


class FakeTransport:
    """Records sends; the shared ``outage[0]`` next sends fail, as a link outage would."""

    def __init__(self, sent: list[bytes], outage: list[int]) -> None:
        self.sent, self.outage = sent, outage

    def send(self, data: bytes) -> None:
        if self.outage[0]:
            self.outage[0] -= 1
            raise ConnectionError("link down")
        self.sent.append(data)

    def close(self) -> None:
        pass


def write_folder(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((48, 64, 3), 10 + i, np.uint8)).save(folder / f"{i:03d}.png")


def make_service(tmp_path, *, folder_loop=False, transport_fails=0, outbox=None, notifier=None,
                 selector=None, sender_cfg=FAST):
    stop = threading.Event()
    sent: list[bytes] = []
    box = outbox or Outbox(tmp_path / "outbox.db")
    outage = [transport_fails]

    def open_transport() -> FakeTransport:
        return FakeTransport(sent, outage)

    source = make_source(CaptureConfig(images=ImagesConfig(path=str(tmp_path / "cam"), loop=folder_loop)))
    source.load()
    service = EdgeService(
        source=source, schedule=IntervalSchedule(0.0), selector=selector or FakeSelector(), packer=fake_packer,
        outbox=box, sender=Sender(box, open_transport, sender_cfg, stop), notifier=notifier or Notifier(None),
        stop=stop,
    )
    return service, sent, box


def test_frames_flow_in_order_and_unreadable_images_are_skipped(tmp_path, caplog):
    write_folder(tmp_path / "cam", 3)
    (tmp_path / "cam" / "001x.png").write_bytes(b"broken")
    service, sent, box = make_service(tmp_path)
    with caplog.at_level(logging.INFO), box:
        assert service.run(RunLimits(max_frames=10, drain_timeout_s=10)) == 0  # folder ends first
    assert sent == [b"c%d-i%d-f%d" % (c, 10 + c - 1, i) for c in (1, 2, 3) for i in (0, 1)]
    assert "skipped unreadable image" in caplog.text and "001x.png" in caplog.text
    assert "select" in caplog.text and "encode 1" in caplog.text  # per-stage timings


def test_link_outage_backs_off_and_loses_nothing(tmp_path, caplog):
    write_folder(tmp_path / "cam", 2)
    service, sent, box = make_service(tmp_path, transport_fails=4)
    with caplog.at_level(logging.INFO), box:
        assert service.run(RunLimits(max_frames=2, drain_timeout_s=10)) == 0
    assert sent == [b"c1-i10-f0", b"c1-i10-f1", b"c2-i11-f0", b"c2-i11-f1"]
    assert "retry 4" in caplog.text and "link back after 4 failures" in caplog.text


def test_disk_full_drops_the_frame_logs_and_recovers(tmp_path, caplog):
    write_folder(tmp_path / "cam", 4)
    box = Outbox(tmp_path / "outbox.db")
    selector = FakeSelector()

    class FillsDisk(FakeSelector):
        def select(self, image):
            if selector.seen == [10]:  # second picture: the disk is full while it is stored
                box._db.execute(f"PRAGMA max_page_count = {box._db.execute('PRAGMA page_count').fetchone()[0]}")
                big = FakeSelection(np.ones((6, 8), bool), np.arange(48))
                selector.seen.append(11)
                return big
            box._db.execute("PRAGMA max_page_count = 1073741823")
            return selector.select(image)

    def big_packer(selection, counter, capture_ms):
        if len(selection.indices) == 48:
            return Packed([os.urandom(4000)] * 3)
        return fake_packer(selection, counter, capture_ms)

    service, sent, _ = make_service(tmp_path, outbox=box, selector=FillsDisk())
    service.packer = big_packer
    with box:
        assert service.run(RunLimits(max_frames=10, drain_timeout_s=10)) == 0
    assert "disk full" in caplog.text and "001.png dropped" in caplog.text
    assert [s[:3] for s in sent[::2]] == [b"c1-", b"c3-", b"c4-"]  # counter 2 was burnt, never sent
    assert box_integrity(tmp_path / "outbox.db") == "ok"


def box_integrity(path: Path) -> str:
    import sqlite3

    return sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0]


def test_stop_event_ends_a_looping_service_quickly_and_keeps_the_queue(tmp_path):
    write_folder(tmp_path / "cam", 2)
    service, sent, box = make_service(tmp_path, folder_loop=True, transport_fails=10**9)  # link dead
    timer = threading.Timer(0.5, service.stop.set)
    timer.start()
    t0 = time.monotonic()
    with box:
        assert service.run() == 0
        assert time.monotonic() - t0 < 3.0
        assert box.stats().frames >= 2 and sent == []  # unsent frames wait for the next run


def test_notify_messages_during_a_run(tmp_path):
    write_folder(tmp_path / "cam", 2)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    with sock, Notifier(str(tmp_path / "notify"), watchdog_usec=200_000) as notifier:
        service, sent, box = make_service(tmp_path, notifier=notifier)
        with box:
            assert service.run(RunLimits(max_frames=2)) == 0
        got = []
        sock.setblocking(False)
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    assert got[0].startswith("READY=1\nSTATUS=queued 0")
    assert "WATCHDOG=1" in got
    assert any(m.startswith("STATUS=queued 2") for m in got)
    assert got[-2:] == ["STOPPING=1", "STATUS=stopping"]


# --- the real parts: tiny ONNX encoder, link packer and sealer, loopback / serial over a pty ---

KEY = bytes(range(16))


def real_config(tmp_path: Path, build, *, transport: str, loop: bool = False, n_images: int = 2,
                extra: str = "") -> Path:
    encoder = tmp_path / "encoder.onnx"
    if not encoder.exists():
        build.encoder(encoder)
    cam = tmp_path / "cam"
    if not cam.exists():
        cam.mkdir()
        for i in range(n_images):
            Image.fromarray(build.photo(96, 128, seed=i)).save(cam / f"{i:03d}.png")
    (tmp_path / "5.key").write_text(KEY.hex())
    (tmp_path / "5.key").chmod(0o600)
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[device]
id = 5
key_file = "5.key"
[capture]
source = "images"
[capture.images]
path = "cam"
loop = {str(loop).lower()}
[schedule]
interval_s = 0.2
[pipeline]
encoder = "{encoder}"
tokenizer_id = 1
[pipeline.segmenter]
backend = "none"
[pipeline.recoverability]
scorer = "{tmp_path / 'no-scorer.onnx'}"
[pipeline.budget]
unit = "bytes"
value = 150.0
[pipeline.packet]
mtu = 64
[outbox]
path = "state/outbox.sqlite"
[sender]
backoff_initial_s = 0.05
backoff_max_s = 0.2
idle_poll_s = 0.05
drain_timeout_s = 1.0
{transport}
{extra}
""")
    return path


def opener():
    from link.security import KeyStore, Opener

    return Opener(KeyStore({5: KEY}))


def frames_from(fragments: list[bytes]) -> dict[int, list[bytes]]:
    from link.packet import open_fragment

    by_counter: dict[int, list[bytes]] = {}
    for data in fragments:
        by_counter.setdefault(open_fragment(data, opener()).header.counter, []).append(data)
    return by_counter


def test_end_to_end_over_loopback_with_the_real_pipeline(tmp_path, build):
    from edge.assemble import build_service
    from edge.config import load_edge_config
    from edge.pipeline import EdgePipeline
    from link.reassembly import unpack
    from link.transports.loopback import channel

    name = f"edge-test-{tmp_path.name}"
    cfg = load_edge_config(real_config(tmp_path, build, transport=f"[transport.loopback]\nchannel = '{name}'"))
    stop = threading.Event()
    with build_service(cfg, stop) as service:
        assert service.run(RunLimits(max_frames=2, drain_timeout_s=10)) == 0
    cloud = channel(name).cloud
    got = []
    while (data := cloud.recv(timeout=0)) is not None:
        got.append(data)
    frames = frames_from(got)
    assert sorted(frames) == [1, 2]
    with EdgePipeline.from_config(cfg.pipeline) as pipeline:
        for counter, name_ in ((1, "000.png"), (2, "001.png")):
            received = unpack(frames[counter], opener())
            assert received.complete and received.device_id == 5 and received.counter == counter
            expected = pipeline.select(np.asarray(Image.open(tmp_path / "cam" / name_).convert("RGB")))
            assert np.array_equal(received.kept, expected.kept)
            assert np.array_equal(received.indices, expected.indices)
            assert sum(len(f) for f in frames[counter]) <= 150


class PtyReader:
    """The far end of a serial link: a pseudo-terminal whose master side the test reads."""

    def __init__(self) -> None:
        import pty
        import tty

        self.master, self.slave = pty.openpty()
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.data = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.data += os.read(self.master, 4096)
                except OSError:
                    return

    def fragments(self) -> list[bytes]:
        from link.framing import Deframer

        return Deframer().feed(bytes(self.data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self.slave)


SERIAL = "[transport]\ntype = 'serial'\n[transport.serial]\nurl = '{url}'\npace = false\nbaudrate = 115200\n"

# Runs the real `tokencast edge ...` entry point with torch made unimportable, then reports
# whether torch (or anything under it) was loaded and the process's peak RSS.
WRAPPER = """
import importlib.abc, json, resource, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("the edge must not import torch")
sys.meta_path.insert(0, NoTorch())
from tokencast.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)
sys.exit(rc)
"""


def spawn(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update({"PYTHONPATH": str(REPO), **(env_extra or {})})
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_stops_the_cli_cleanly_without_torch(tmp_path, build):
    import json
    import signal

    pty_end = PtyReader()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    config = real_config(tmp_path, build, transport=SERIAL.format(url=pty_end.path), loop=True)
    proc = spawn(["edge", "run", "--config", str(config)],
                 {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"})
    try:
        messages = []
        while not any(m.startswith("STATUS=queued 3") for m in messages):
            messages.append(notify.recv(4096).decode())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.settimeout(0.5)
        try:
            while True:
                messages.append(notify.recv(4096).decode())
        except TimeoutError:
            pass
        notify.close()
        time.sleep(0.2)
        pty_end.close()
    report = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and report["rc"] == 0, err
    assert stopped_in < 5.0, f"took {stopped_in:.1f} s to stop"
    assert report["torch"] == []
    assert "received SIGTERM, stopping" in err and "Traceback" not in err
    assert messages[0].startswith("READY=1") and "WATCHDOG=1" in messages
    assert messages[-2:] == ["STOPPING=1", "STATUS=stopping"]
    frames = frames_from(pty_end.fragments())
    # Sent in order over the serial line. "queued 3" means accepted, not yet on the air: a frame
    # still being paced out at SIGTERM stays in the outbox for the next start.
    sent = list(frames)
    assert sent and sent == list(range(1, len(sent) + 1))
    print(f"edge service peak RSS {report['maxrss_kb'] / 1024:.0f} MiB")


@pytest.mark.slow
def test_restart_replays_the_stored_bytes_under_the_same_counters(tmp_path, build):
    import sqlite3

    dead = SERIAL.format(url=str(tmp_path / "no-such-tty"))
    config = real_config(tmp_path, build, transport=dead, loop=True)
    first = spawn(["edge", "run", "--config", str(config), "--max-frames", "2"])
    out, err = first.communicate(timeout=60)
    assert first.returncode == 1 and "2 frames still queued" in err, err  # link down: kept, not lost
    db = sqlite3.connect(tmp_path / "state" / "outbox.sqlite")
    stored = {c: [bytes(d) for (d,) in db.execute("SELECT data FROM fragments WHERE counter = ? ORDER BY idx", (c,))]
              for c in (1, 2)}
    db.close()

    pty_end = PtyReader()
    try:
        config = real_config(tmp_path, build, transport=SERIAL.format(url=pty_end.path), loop=True)
        second = spawn(["edge", "run", "--config", str(config), "--once"])
        out, err = second.communicate(timeout=60)
        time.sleep(0.3)
    finally:
        pty_end.close()
    assert second.returncode == 0, err
    frames = frames_from(pty_end.fragments())
    # the two queued frames first, never renumbered; then the new one above the counter mark
    # written ahead before the restart (a restart skips up to a block: edge/counter_mark.py)
    assert list(frames)[:2] == [1, 2] and len(frames) == 3 and list(frames)[2] > 2
    assert frames[1] == stored[1] and frames[2] == stored[2]  # byte for byte what was sealed before


@pytest.mark.broker
@pytest.mark.slow
def test_broker_outage_then_delivery_through_mosquitto(tmp_path, build, mosquitto):
    from edge.assemble import build_service
    from edge.config import load_edge_config
    from link.transports import make_transport
    from link.transports.config import MqttConfig, TransportConfig

    mqtt = (f"[transport]\ntype = 'mqtt'\n[transport.mqtt]\ndevice_id = 5\nport = {mosquitto.port}\n"
            "connect_timeout_s = 1.0\npublish_timeout_s = 2.0\n")
    cfg = load_edge_config(real_config(tmp_path, build, transport=mqtt, loop=True))
    mosquitto.stop()  # the link is down while the camera works: frames wait in the outbox
    with build_service(cfg, threading.Event()) as service:
        assert service.run(RunLimits(max_frames=2, drain_timeout_s=1.0)) == 1
        assert service.outbox.stats().frames == 2
    mosquitto.start()
    consumer = make_transport(TransportConfig(type="mqtt", mqtt=MqttConfig(
        role="consumer", port=mosquitto.port, connect_timeout_s=5.0, client_id="test-cloud")))
    try:
        with build_service(cfg, threading.Event()) as service:  # a restart, link back
            assert service.run(RunLimits(once=True, drain_timeout_s=20)) == 0
        got = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len({c for c in frames_from(got)}) < 3:
            if (data := consumer.recv(timeout=0.5)) is not None:
                got.append(data)
    finally:
        consumer.close()
    got_counters = list(frames_from(got))  # the new frame continues above the counter mark (edge/counter_mark.py)
    assert got_counters[:2] == [1, 2] and len(got_counters) == 3 and got_counters[2] > 2
