"""Load test: simulated cameras -> real Mosquitto on loopback -> a real worker process -> the store.

    python -m benchmarks.load_test --cameras 20 --phase-seconds 60 --out runs/load_test.json

Each camera is the edge's own sending half (``edge.outbox.Outbox`` + ``edge.sender.Sender`` +
``link.transports.mqtt.MqttPublisher``) fed with small sealed frames (64x64 pictures, an 8x8
token grid, LoRa-sized fragments) at a set rate; the worker is ``tokencast cloud serve`` with a
random-init codec in its own process. Phases:

1. *calibrate*: every camera enqueues a burst at once; the worker's store rate over it is the
   capacity C of this CPU.
2. *sustain*: ``--load`` x C frames/s (default 0.7 C) for ``--phase-seconds``.
3. *overload*: twice the sustain rate for ``--phase-seconds``.
4. *drain*: cameras stop capturing; wait until every frame that was not evicted by an outbox's
   policy is stored.

Sampled every second: the broker's backlog (``$SYS/broker/store/messages/count``), the worker's
staged-but-not-stored frames (the store's ``pending``, its queue), and the outboxes' depth.
Reported per phase: offered and stored frames/s, queue maxima, latency capture -> stored
(capture time rides in the frame; the outbox wait, broker, staging, batching and restore are
all in it). Overall: frames sent / stored / evicted by policy / lost / stored twice, and whether
the worker is still alive. Back-pressure chain, end to end: the worker acknowledges a fragment
once staged (the broker's ``max_inflight_messages`` bounds what is unacknowledged), the store is
the elastic buffer, each outbox is bounded by ``max_frames`` with its drop policy.

Only 127.0.0.1 is ever used; the broker is started here on a free port and stopped at the end;
the run stops by itself. Writes one JSON object (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.outbox import Outbox, Packed
from edge.sender import Sender, SenderConfig
from link.frame import Frame
from link.packet import pack
from link.security import Sealer
from link.transports.config import MqttConfig

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"  # the only host this benchmark ever talks to
IMAGE = 64  # pixels per side: an 8x8 token grid, 2-3 fragments at MTU 51
MTU = 51


def device_key(device_id: int) -> bytes:
    return bytes((device_id * 17 + i) & 0xFF for i in range(16))


def write_keys(directory: Path, devices: list[int]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for d in devices:
        path = directory / f"{d}.key"
        path.write_text(device_key(d).hex())
        path.chmod(0o600)
    return directory


def make_frame(device_id: int, counter: int, capture_ms: int, *, image: int = IMAGE, keep: float = 0.5) -> Frame:
    rng = np.random.default_rng(device_id * 100_003 + counter)
    g = image // 8
    kept = rng.random((g, g)) < keep
    return Frame.from_index_grid(rng.integers(0, 1024, size=(g, g)), kept, device_id=device_id, counter=counter,
                                 capture_ms=capture_ms, width=image, height=image, tokenizer_id=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed")
    return found


class LocalBroker:
    """A Mosquitto bound to 127.0.0.1 with persistence and $SYS stats every second."""

    def __init__(self, workdir: Path, *, max_queued: int = 1_000_000, max_inflight: int = 100) -> None:
        self.workdir, self.port = workdir, free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {LOOPBACK}\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 5\nuser {getpass.getuser()}\n"
            f"max_queued_messages {max_queued}\nmax_inflight_messages {max_inflight}\nsys_interval 1\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker_toml(workdir: Path, port: int, *, name: str = "load", shared: bool = True, steps: int = 1,
                max_batch: int = 16, max_wait_ms: float = 50, lease_s: float = 30.0) -> Path:
    path = workdir / f"{name}.toml"
    path.write_text(f"""
source = "mqtt"
worker_id = "{name}"
[broker]
host = "{LOOPBACK}"
port = {port}
client_id = "tokencast-{name}"
shared = {str(shared).lower()}
[security]
keys_dir = "{workdir / 'keys'}"
[store]
path = "{workdir / 'store' / 'tokencast.db'}"
image_dir = "{workdir / 'store' / 'frames'}"
[batch]
max_batch = {max_batch}
max_wait_ms = {max_wait_ms}
[restore]
steps = {steps}
[model]
device = "cpu"
random_init = true
[reassembly]
timeout_s = 300.0
lease_s = {lease_s}
[metrics]
enabled = false
[dashboard]
enabled = false
""")
    return path


class NullCodec:
    """Restore disabled: kept tokens stay, the rest become 0, decode paints a flat picture.

    For runs that measure delivery (loss, duplicates, queues), not pictures: the worker process
    then never imports torch, starts in a second and stores hundreds of frames per second.
    """

    def restore(self, grids: list[np.ndarray], known: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
        return [np.where(k, g, 0) for g, k in zip(grids, known, strict=True)]

    def decode(self, grids: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        return [np.full((h, w, 3), int(g.mean()) % 256, np.uint8) for g, (h, w) in zip(grids, sizes, strict=True)]

    def reconstruct(self, grids: list[np.ndarray], known: list[np.ndarray], sizes: list[tuple[int, int]],
                    seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        tokens = self.restore(grids, known, seed)
        return tokens, self.decode(tokens, sizes)


def serve_null_worker(toml: str | Path) -> int:
    """``tokencast cloud serve`` with every codec replaced by ``NullCodec`` (the rest is the real worker)."""
    import cloud.worker
    from cloud import cli

    cloud.worker.load_codecs = lambda cfg: {tid: NullCodec() for tid in cfg.model.tokenizer_ids}  # type: ignore[assignment]
    return cli.main(["serve", "--config", str(toml)])


class WorkerProcess:
    """``tokencast cloud serve`` in its own process, logging to ``<name>.log``.

    ``codec="random"``: the real worker with a random-init codec; ``"null"``: restore disabled.
    """

    def __init__(self, workdir: Path, toml: Path, name: str = "load", codec: str = "random") -> None:
        self.log = workdir / f"{name}.log"
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        if codec == "null":
            cmd = [sys.executable, "-c", "import sys; from benchmarks.load_test import serve_null_worker; "
                   "sys.exit(serve_null_worker(sys.argv[1]))", str(toml)]
        elif codec == "random":
            cmd = [sys.executable, "-m", "tokencast.cli", "cloud", "serve", "--config", str(toml)]
        else:
            raise ValueError(f"codec {codec!r} is not one of 'random', 'null'")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def wait_consuming(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "consuming " not in self.log.read_text()[self._offset :]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class CameraStats:
    enqueued: list[tuple[int, int]] = field(default_factory=list)  # (counter, capture_ms)
    evicted: list[int] = field(default_factory=list)
    max_outbox: int = 0


class Camera:
    """One simulated device: a capture thread at ``rate`` frames/s into a bounded outbox, a sender."""

    def __init__(self, device_id: int, port: int, workdir: Path, *, outbox_frames: int = 200,
                 policy: str = "drop-oldest", image: int = IMAGE, mtu: int = MTU,
                 require_subscriber: bool = True) -> None:
        self.device_id, self.image, self.mtu = device_id, image, mtu
        self.sealer = Sealer(device_key(device_id), device_id)
        self.outbox = Outbox(workdir / f"outbox-{device_id}.sqlite", max_frames=outbox_frames,
                             policy=policy)  # type: ignore[arg-type]
        self.stop = threading.Event()
        cfg = MqttConfig(host=LOOPBACK, port=port, device_id=device_id, client_id=f"tokencast-cam-{device_id}",
                         publish_timeout_s=10, reconnect_min_s=1, reconnect_max_s=2,
                         require_subscriber=require_subscriber)

        def open_transport():
            from link.transports.mqtt import MqttPublisher

            return MqttPublisher(cfg)

        self.sender = Sender(self.outbox, open_transport,
                             SenderConfig(backoff_initial_s=0.2, backoff_max_s=1.0, idle_poll_s=0.1), self.stop)
        self.stats = CameraStats()
        self.rate = 0.0
        self._capture = threading.Thread(target=self._run, name=f"cam-{device_id}", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self.sender.start()
        self._capture.start()

    def capture(self) -> None:
        """Take one picture now: pack and seal it inside the outbox transaction."""
        now_ms = int(time.time() * 1000)

        def build(counter: int) -> Packed:
            return Packed(pack(make_frame(self.device_id, counter, now_ms, image=self.image), mtu=self.mtu,
                               sealer=self.sealer))

        got = self.outbox.enqueue(build, capture_ms=now_ms)
        with self._lock:
            self.stats.enqueued.append((got.counter, now_ms))
            self.stats.evicted += got.evicted
        self.sender.wake()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self.stop.is_set():
            rate = self.rate
            if rate <= 0:
                self.stop.wait(0.05)
                next_t = time.monotonic()
                continue
            now = time.monotonic()
            if now < next_t:
                self.stop.wait(min(next_t - now, 0.05))
                continue
            self.capture()
            next_t = max(next_t + 1.0 / rate, now - 1.0)  # catch up at most one second of lag

    def depth(self) -> int:
        n = self.outbox.stats().frames
        self.stats.max_outbox = max(self.stats.max_outbox, n)
        return n

    def close(self, drain_s: float = 30.0) -> None:
        self.rate = 0.0
        deadline = time.monotonic() + drain_s
        while self.outbox.stats().frames and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop.set()
        self._capture.join(5)
        self.sender.close()
        self.outbox.close()


class BrokerBacklog:
    """Follows ``$SYS/broker/store/messages/count`` (messages the broker holds) on a loopback client."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.value = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tokencast-load-sys", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port)
        self.client.subscribe("$SYS/broker/store/messages/count", qos=0)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.value = int(msg.payload)
        except ValueError:
            pass

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3)}


def run(args: argparse.Namespace) -> dict[str, object]:
    from cloud.store.sqlite import SqliteStore

    workdir = Path(tempfile.mkdtemp(prefix="tokencast-load-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    devices = list(range(1, args.cameras + 1))
    write_keys(workdir / "keys", devices)
    broker = LocalBroker(workdir, max_inflight=args.broker_inflight)
    broker.start()
    worker = cams = backlog = store = None
    samples: list[dict[str, float]] = []
    phases: list[dict[str, object]] = []
    try:
        worker = WorkerProcess(workdir, worker_toml(workdir, broker.port, steps=args.steps, max_batch=args.max_batch),
                               codec=args.codec)
        worker.wait_consuming()
        store = SqliteStore(workdir / "store" / "tokencast.db", workdir / "store" / "frames")
        backlog = BrokerBacklog(broker.port)
        time.sleep(1.5)
        baseline = backlog.value  # retained and $SYS messages the broker holds anyway
        cams = [Camera(d, broker.port, workdir, outbox_frames=args.outbox_frames) for d in devices]
        for c in cams:
            c.start()
        t_start = time.monotonic()

        def sample(phase: str) -> dict[str, float]:
            s = {"t": round(time.monotonic() - t_start, 2), "phase": phase, "stored": store.count_frames(),
                 "worker_pending": store.pending_frames(), "broker_backlog": max(0, backlog.value - baseline),
                 "outbox_frames": sum(c.depth() for c in cams)}
            samples.append(s)
            return s

        def phase(name: str, rate: float, seconds: float) -> dict[str, object]:
            per_cam = rate / len(cams)
            for c in cams:
                c.rate = per_cam
            t0, u0, stored0 = time.monotonic(), time.time(), store.count_frames()
            enq0 = sum(len(c.stats.enqueued) for c in cams)
            seen: list[dict[str, float]] = []
            while time.monotonic() - t0 < seconds:
                time.sleep(1.0)
                seen.append(sample(name))
            dt = time.monotonic() - t0
            return {"phase": name, "seconds": round(dt, 1), "offered_fps": round(rate, 2),
                    "captured_fps": round((sum(len(c.stats.enqueued) for c in cams) - enq0) / dt, 2),
                    "stored_fps": round((store.count_frames() - stored0) / dt, 2),
                    "max_worker_pending": max(s["worker_pending"] for s in seen),
                    "end_worker_pending": seen[-1]["worker_pending"],
                    "max_broker_backlog": max(s["broker_backlog"] for s in seen),
                    "max_outbox_frames": max(s["outbox_frames"] for s in seen),
                    "t0": round(t0 - t_start, 2), "t1": round(time.monotonic() - t_start, 2),
                    "_unix": (u0, time.time())}

        # 1. calibrate: a burst from every camera, timed until stored
        burst = args.calibrate_frames
        t0 = time.monotonic()
        for _ in range(max(1, burst // len(cams))):
            for c in cams:
                c.capture()
        n_burst = sum(len(c.stats.enqueued) for c in cams)
        deadline = t0 + 120
        while store.count_frames() < n_burst and time.monotonic() < deadline:
            time.sleep(0.05)
        # end to end, from the first capture: packing, outbox, PUBACKs, staging, restore, store
        capacity = store.count_frames() / max(1e-3, time.monotonic() - t0)
        capacity = args.capacity or capacity
        sustain = args.rate or args.load * capacity
        phases.append({"phase": "calibrate", "frames": n_burst, "capacity_fps": round(capacity, 2),
                       "seconds": round(time.monotonic() - t0, 1)})
        # 2-3. sustain, then twice that
        phases.append(phase("sustain", sustain, args.phase_seconds))
        phases.append(phase("overload", 2 * sustain, args.phase_seconds))
        # 4. drain
        for c in cams:
            c.rate = 0.0
        t0 = time.monotonic()
        want = sum(len(c.stats.enqueued) - len(c.stats.evicted) for c in cams)
        while time.monotonic() - t0 < args.drain_timeout:
            s = sample("drain")
            if s["stored"] >= want and s["worker_pending"] == 0 and s["outbox_frames"] == 0:
                break
            time.sleep(1.0)
        phases.append({"phase": "drain", "seconds": round(time.monotonic() - t0, 1),
                       "end_worker_pending": samples[-1]["worker_pending"]})
        time.sleep(1.0)  # anything still arriving now would be a second store
        for c in cams:
            c.close(drain_s=5)
        worker_alive = worker.alive()
        # accounting
        frames = store.list_frames(limit=10_000_000)
        stored_keys = [(f.device_id, f.counter) for f in frames]
        sent = {(c.device_id, n) for c in cams for n, _ in c.stats.enqueued}
        evicted = {(c.device_id, n) for c in cams for n in c.stats.evicted}
        captured = {(c.device_id, n): ms for c in cams for n, ms in c.stats.enqueued}
        expected = sent - evicted
        lost = expected - set(stored_keys)
        for p in phases:
            if "_unix" in p:
                lo, hi = p.pop("_unix")  # type: ignore[misc]
                lat = [f.stored_at - captured[f.key] / 1000 for f in frames
                       if f.key in captured and lo <= captured[f.key] / 1000 < hi]
                p["latency_capture_to_stored_s"] = percentiles(lat)
                p["frames_captured_in_phase_stored"] = len(lat)
        result: dict[str, object] = {
            "host": LOOPBACK, "cameras": args.cameras, "phase_seconds": args.phase_seconds,
            "image": IMAGE, "mtu": MTU, "codec": args.codec, "restore_steps": args.steps, "max_batch": args.max_batch,
            "outbox_max_frames": args.outbox_frames, "broker_max_inflight": args.broker_inflight,
            "cpu_count": os.cpu_count(),
            "phases": phases,
            "totals": {"sent": len(sent), "evicted_by_outbox_policy": len(evicted), "stored": len(stored_keys),
                       "stored_unique": len(set(stored_keys)), "lost": len(lost),
                       # the outbox evicts its oldest frame, which may be half sent: that half arrives
                       # and is stored as a partial frame, so it is counted here, not as lost
                       "evicted_partly_sent": len(evicted & set(stored_keys)),
                       "stored_never_sent": len(set(stored_keys) - sent),
                       "stored_twice": len(stored_keys) - len(set(stored_keys)),
                       "pngs": len(list((workdir / "store" / "frames").rglob("*.png"))),
                       "duplicates_dropped": sum(d.duplicates for d in store.list_devices()),
                       "rejects": store.quarantine_counts(), "worker_alive": worker_alive,
                       "end_worker_pending": store.pending_frames()},
            "max_outbox_frames_per_camera": max(c.stats.max_outbox for c in cams),
            "samples": samples,
        }
        return result
    finally:
        if backlog is not None:
            backlog.close()
        if cams is not None:
            for c in cams:
                if not c.stop.is_set():
                    c.stop.set()
                    c.sender.close()
        if worker is not None:
            worker.stop()
        if store is not None:
            store.close()
        broker.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="tokencast load test on 127.0.0.1 (see the module docstring)")
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--phase-seconds", type=float, default=60.0)
    p.add_argument("--load", type=float, default=0.7, help="sustain rate as a fraction of the calibrated capacity")
    p.add_argument("--rate", type=float, default=None, help="sustain rate in frames/s (skips --load)")
    p.add_argument("--capacity", type=float, default=None, help="use this capacity instead of the calibrated one")
    p.add_argument("--calibrate-frames", type=int, default=200)
    p.add_argument("--codec", choices=("random", "null"), default="random",
                   help="the worker's codec: random-init model, or restore disabled (delivery only)")
    p.add_argument("--steps", type=int, default=1, help="restore steps of the worker's random-init codec")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--outbox-frames", type=int, default=200, help="each camera's outbox bound (drop-oldest)")
    p.add_argument("--broker-inflight", type=int, default=100, help="mosquitto max_inflight_messages")
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.add_argument("--out", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=1))
    t = result["totals"]
    return 0 if t["lost"] == 0 and t["stored_twice"] == 0 and t["worker_alive"] else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
