"""Broker restart in the middle of a 500-frame stream from five cameras: 0 lost, 0 stored twice.

Real processes: Mosquitto (restarted with SIGTERM on the same port, persistence on) and the
worker (``tokencast cloud serve`` on a plain persistent subscription, ``broker.shared = false``,
restore disabled so the run measures delivery). Each camera is the edge's real sending half:
``edge.outbox.Outbox`` -> ``edge.sender.Sender`` -> ``MqttPublisher`` (QoS 1, waits for PUBACK),
one MQTT connection each. What keeps it whole: the outbox deletes a fragment only after its
PUBACK, the broker persists the worker's session queue, the worker acknowledges after staging,
and the store keys frames by (device, counter).

Shared subscriptions are not restored by Mosquitto 2.0.11 (see link/README.md, "MQTT" and
``tests/link/test_mqtt.py::test_broker_restart_loses_nothing[True]``, an xfail), so a fleet of
workers behind one broker loses what arrives between the restart and their resubscription.
"""

from __future__ import annotations

import threading
import time

import pytest

from benchmarks.load_test import Camera, WorkerProcess, worker_toml, write_keys
from cloud.store.sqlite import SqliteStore

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEVICES = [1, 2, 3, 4, 5]
FRAMES_PER_DEVICE = 100


def test_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice(tmp_path, mosquitto):
    write_keys(tmp_path / "keys", DEVICES)
    worker = WorkerProcess(tmp_path, worker_toml(tmp_path, mosquitto.port, name="restart", shared=False),
                           name="restart", codec="null")
    cams: list[Camera] = []
    store = None
    try:
        worker.wait_consuming()
        store = SqliteStore(tmp_path / "store" / "tokencast.db", tmp_path / "store" / "frames")
        cams = [Camera(d, mosquitto.port, tmp_path, outbox_frames=10_000) for d in DEVICES]
        for c in cams:
            c.start()
        produced = threading.Event()

        def produce() -> None:
            for _ in range(FRAMES_PER_DEVICE):
                for c in cams:
                    c.capture()
                time.sleep(0.02)
            produced.set()

        producer = threading.Thread(target=produce)
        producer.start()
        deadline = time.monotonic() + 60
        while store.count_frames() < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        stored_before = store.count_frames()
        queued_before = sum(c.outbox.stats().frames for c in cams)
        mosquitto.restart()  # mid-stream: cameras are still capturing and sending
        producer.join(120)
        assert produced.is_set()
        sent = sum(len(c.stats.enqueued) for c in cams)
        deadline = time.monotonic() + 120
        while store.count_frames() < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # anything still arriving now would be a second store
        frames = store.list_frames(limit=10_000)
        keys = [f.key for f in frames]
        expected = {(c.device_id, n) for c in cams for n, _ in c.stats.enqueued}
        evicted = sum(len(c.stats.evicted) for c in cams)
        duplicates = sum(d.duplicates for d in store.list_devices())
        print(f"\nbroker restart: sent {sent} frames, stored {len(keys)} ({len(set(keys))} unique), "
              f"stored before the restart {stored_before}, queued in outboxes at the restart {queued_before}, "
              f"lost {len(expected - set(keys))}, duplicate deliveries dropped {duplicates}")
        assert sent == len(DEVICES) * FRAMES_PER_DEVICE == 500 and evicted == 0
        assert 0 < stored_before < 500
        assert len(keys) == len(set(keys)) == 500 and set(keys) == expected  # 0 lost, 0 stored twice
        assert all(f.complete for f in frames)
        assert len(list((tmp_path / "store" / "frames").rglob("*.png"))) == 1000  # image + mask, no strays
        assert store.pending_frames() == 0 and store.quarantine_counts() == {}
        assert worker.alive()
    finally:
        for c in cams:
            c.close(drain_s=1)
        worker.stop()
        if store is not None:
            store.close()
