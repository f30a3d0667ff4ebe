"""Two worker processes, a real Mosquitto, 200 frames from 4 devices, one worker SIGKILLed mid-stream.

Fragments are LoRa-sized (2-3 per frame), so the shared subscription splits most frames between
the workers: the store's staging is what reassembles them. The killed worker's unacknowledged
messages come back when it restarts with the same client id (its persistent session); frames it
had claimed are taken over by the other worker when their lease runs out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cloudkit import DEVICES, Edge, write_keys

from cloud.store.sqlite import SqliteStore
from link.transports.config import MqttConfig
from link.transports.mqtt import MqttPublisher

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FRAMES_PER_DEVICE = 50


def worker_toml(tmp: Path, name: str, port: int) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f"""
source = "mqtt"
worker_id = "{name}"
[broker]
host = "127.0.0.1"
port = {port}
client_id = "tokencast-test-{name}"
group = "workers"
[security]
keys_dir = "{tmp / 'keys'}"
[store]
path = "{tmp / 'store' / 'tokencast.db'}"
image_dir = "{tmp / 'store' / 'frames'}"
[batch]
max_batch = 8
max_wait_ms = 20
[restore]
steps = 1
[model]
device = "cpu"
random_init = true
[reassembly]
timeout_s = 300.0
lease_s = 3.0
[metrics]
enabled = false
[dashboard]
enabled = false
""")
    return path


def start_worker(tmp: Path, name: str, port: int) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tokencast.cli", "cloud", "serve", "--config",
                             str(worker_toml(tmp, name, port))], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    return proc, log


def wait_consuming(procs: list[tuple[subprocess.Popen, Path]], since: list[int], timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    for (proc, log), offset in zip(procs, since, strict=True):
        while "consuming $share" not in log.read_text()[offset:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)


def test_two_workers_store_every_frame_exactly_once_across_a_sigkill(tmp_path, mosquitto):
    write_keys(tmp_path / "keys")
    a, b = start_worker(tmp_path, "a", mosquitto.port), start_worker(tmp_path, "b", mosquitto.port)
    procs = [a, b]
    store = None
    try:
        wait_consuming([a, b], [0, 0])
        pubs = {d: MqttPublisher(MqttConfig(port=mosquitto.port, device_id=d, client_id=f"edge-{d}"))
                for d in DEVICES}
        edges = {d: Edge(d) for d in DEVICES}
        store = SqliteStore(tmp_path / "store" / "tokencast.db", tmp_path / "store" / "frames")
        sent = resent = 0
        stored_at_kill = None
        for c in range(1, FRAMES_PER_DEVICE + 1):
            for d in DEVICES:
                frags = edges[d].fragments(c)
                for f in frags:
                    pubs[d].send(f)
                if c % 10 == 0:  # an edge retry after a lost PUBACK: the same frame again
                    for f in frags:
                        pubs[d].send(f)
                    resent += len(frags)
                sent += 1
            if c == FRAMES_PER_DEVICE // 2:
                time.sleep(1.0)  # let worker a get busy, then kill it mid-stream
                stored_at_kill = store.count_frames()
                a[0].send_signal(signal.SIGKILL)
                a[0].wait()
        offset = len(a[1].read_text())
        a = start_worker(tmp_path, "a", mosquitto.port)  # same client id: its session comes back
        procs = [a, b]
        wait_consuming([a], [offset])
        deadline = time.monotonic() + 150
        while store.count_frames() < sent and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2.0)  # anything still arriving would be a second store of a frame
        for p in pubs.values():
            p.close()
        frames = store.list_frames(limit=10_000)
        keys = [f.key for f in frames]
        assert sent == 200 and len(keys) == 200 and len(set(keys)) == 200
        assert set(keys) == {(d, c) for d in DEVICES for c in range(1, FRAMES_PER_DEVICE + 1)}
        assert all(f.complete and f.lost_ratio == 0 for f in frames)  # nothing lost, nothing partial
        assert len(list((tmp_path / "store" / "frames").rglob("*.png"))) == 400  # image + mask, no strays
        assert store.pending_frames() == 0
        assert 0 < stored_at_kill < 200
        by_worker = {w: sum(f.worker == w for f in frames) for w in ("a", "b")}
        assert by_worker["a"] > 0 and by_worker["b"] > 0
        duplicates = sum(d.duplicates for d in store.list_devices())
        assert duplicates >= resent
        print(f"\nsent {sent} frames (+{resent} fragments resent), stored {len(keys)}, "
              f"stored before the kill {stored_at_kill}, by worker {by_worker}, duplicates dropped {duplicates}")
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _log in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if store is not None:
            store.close()
