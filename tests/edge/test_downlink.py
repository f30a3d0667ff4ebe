"""The MQTT downlink end to end on a real Mosquitto: the worker asks for a key frame when a delta's
reference is missing or a key frame arrived incomplete, and ACKs complete key frames; the camera's
next frame is a key frame, an ACK moves its reference; forged, replayed and truncated control
messages are rejected with a log line while the service runs on; the serial (LoRa) path has no
downlink and stays as it was.

The camera's encoder is the fake of ``test_temporal`` (real output contract) and the worker's codec
a stub that returns the known tokens: what is under test is the link between them, not the models."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image
from test_temporal import codebook, make_pipeline, scene

from cloud.cli import attach_downlink
from cloud.config import CloudConfig
from cloud.store import make_store
from cloud.worker import Delivery, Worker
from edge.config import EdgeConfig
from edge.downlink import ControlReceiver
from edge.packer import LinkPacker
from edge.reference import TemporalConfig
from edge.temporal import TemporalSelector
from link.control import (
    ACK,
    KEY_REQUEST,
    REASON_INCOMPLETE_KEY,
    REASON_MISSING_REFERENCE,
    ControlOpener,
    key_request,
    parse,
    seal,
)
from link.frame import FRAME_DELTA, FRAME_KEY
from link.header2 import parse_header2
from link.security import Sealer
from link.transports import has_downlink, make_transport
from link.transports.config import MqttConfig, SerialConfig, TransportConfig
from link.transports.mqtt import MqttConsumer

DEV = 7
KEY = bytes((DEV * 17 + i) & 0xFF for i in range(16))


class StubCodec:
    """The TokenCodec2 call contract: known tokens come back, the rest 0, black pictures."""

    def reconstruct(self, grids, known, coarse, coarse_known, sizes, seed=0):
        return [np.where(k, g, 0) for g, k in zip(grids, known, strict=True)], \
            [np.zeros((h, w, 3), np.uint8) for h, w in sizes]


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


class Cloud:
    """A worker on its own store, fed from the shared subscription, publishing on the downlink."""

    def __init__(self, root: Path, port: int, consumer: MqttConsumer | None = None) -> None:
        cfg = CloudConfig(source="none", worker_id="w-test")
        (root / "keys").mkdir(parents=True, exist_ok=True)
        (root / "keys" / f"{DEV}.key").write_text(KEY.hex())
        cfg.security.keys_dir = root / "keys"
        cfg.store.path, cfg.store.image_dir = root / "store" / "tc.db", root / "store" / "frames"
        cfg.model.tokenizer_ids = [3]
        cfg.downlink.key_request_interval_s = 0.0
        self.store = make_store(cfg.store)
        self.worker = Worker(cfg, self.store, {3: StubCodec()})
        self.consumer = consumer or MqttConsumer(MqttConfig(role="consumer", port=port, client_id="cloud", group="g"))
        self.worker.downlink = attach_downlink(cfg, self.worker, self.consumer.send_down, self.worker.metrics)

    def take(self, fragments: int):
        """Stage ``fragments`` deliveries from the broker, then store every pending frame."""
        got = []
        deadline = time.monotonic() + 10
        while len(got) < fragments and time.monotonic() < deadline:
            if (m := self.consumer.recv_message(timeout=0.2)) is not None:
                got.append(m)
        assert len(got) == fragments
        self.worker.ingest([Delivery(m.payload, m.ack, 0.0, m.device_id) for m in got])
        return {r.counter: r for r in self.worker.drain()}

    def close(self) -> None:
        self.store.close()


class Spy:
    """A plain MQTT client on every camera's ``ctl`` topic: what the cloud really published."""

    def __init__(self, port: int) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, msg: self.got.append((msg.topic, bytes(msg.payload)))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("tokencast/+/ctl", qos=1)
        assert subscribed.wait(5)

    def messages(self) -> list[tuple[str, int, int, int]]:
        return [(topic, *(lambda m: (m.type, m.counter, m.detail))(parse(data)[0])) for topic, data in self.got]

    def publish(self, data: bytes) -> None:
        self.client.publish(f"tokencast/{DEV}/ctl", data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Camera:
    """The edge's temporal selector, packer and MQTT transport with its control receiver."""

    def __init__(self, port: int, config: TemporalConfig) -> None:
        self.selector = TemporalSelector(make_pipeline()[0], config, codebook=codebook())
        self.receiver = ControlReceiver(ControlOpener(KEY, DEV), self.selector.keeper, use_ack=config.use_ack)
        self.packer = LinkPacker(DEV, 222, Sealer(KEY, DEV))
        self.transport = make_transport(TransportConfig(type="mqtt", mqtt=MqttConfig(device_id=DEV, port=port)),
                                        self.receiver.handle)

    def send(self, counter: int, image: np.ndarray, *, drop_first: bool = False):
        sel = self.selector.select(image)
        frags = self.packer(sel, counter, 1_700_000_000_000 + counter).fragments
        for f in frags[1 if drop_first else 0:]:
            self.transport.send(f)
        self.selector.queued(sel, counter)
        return sel, len(frags) - drop_first

    def close(self) -> None:
        self.transport.close()


@pytest.mark.broker
def test_missing_reference_brings_a_key_request_and_acks_move_the_reference(tmp_path, mosquitto):
    spy = Spy(mosquitto.port)
    cam = Camera(mosquitto.port, TemporalConfig(enabled=True, use_ack=True, threshold=0.2, key_interval=1000))
    cloud = Cloud(tmp_path / "a", mosquitto.port)
    img = scene()
    try:
        sel, n = cam.send(1, img)
        assert sel.frame_type == FRAME_KEY
        recs = cloud.take(n)
        assert recs[1].complete and cam.selector.keeper.reference is None  # not before the ACK arrives
        assert wait_for(lambda: cam.selector.keeper.reference is not None)
        assert cam.selector.keeper.reference.counter == 1  # the ACK moved the reference
        assert spy.messages() == [(f"tokencast/{DEV}/ctl", ACK, 1, 0x03)]

        # the worker restarts on an empty store: reference 1 is gone, the camera does not know it
        cloud.close()
        cloud = Cloud(tmp_path / "b", mosquitto.port, consumer=cloud.consumer)
        sel, n = cam.send(2, img)
        assert (sel.frame_type, sel.ref_counter) == (FRAME_DELTA, 1)
        recs = cloud.take(n)
        assert recs[2].degraded  # restored without a reference, never with a wrong one
        assert wait_for(lambda: cam.selector.keeper.key_reason() == "requested")
        assert spy.messages()[-1] == (f"tokencast/{DEV}/ctl", KEY_REQUEST, 2, REASON_MISSING_REFERENCE)

        sel, n = cam.send(3, img)
        assert (sel.frame_type, sel.reason) == (FRAME_KEY, "requested")  # the next frame is a key frame
        assert cam.selector.keeper.reference.counter == 1  # sent, not yet acknowledged
        recs = cloud.take(n)
        assert recs[3].complete
        assert wait_for(lambda: cam.selector.keeper.reference.counter == 3)
        sel, n = cam.send(4, img)
        assert (sel.frame_type, sel.ref_counter) == (FRAME_DELTA, 3)
        assert not cloud.take(n)[4].degraded
        assert cam.receiver.stats.accepted == {"ack": 2, "key_request": 1} and not cam.receiver.stats.rejected
        m = cloud.worker.metrics  # the restarted worker's: one key request, one ack
        assert m.value("tokencast_control_sent_total", type="key_request") == m.value(
            "tokencast_control_sent_total", type="ack") == 1
    finally:
        cam.close()
        cloud.consumer.close()
        cloud.close()
        spy.close()


@pytest.mark.broker
def test_without_acks_a_lost_or_incomplete_key_frame_is_asked_for_again(tmp_path, mosquitto):
    spy = Spy(mosquitto.port)
    cam = Camera(mosquitto.port, TemporalConfig(enabled=True, threshold=0.2, key_interval=1000))
    cloud = Cloud(tmp_path, mosquitto.port)
    img = scene()
    try:
        sel = cam.selector.select(img)  # key frame 1 is lost on the way: never published
        cam.selector.queued(sel, 1)
        sel, n = cam.send(2, img)
        assert (sel.frame_type, sel.ref_counter) == (FRAME_DELTA, 1)
        assert cloud.take(n)[2].degraded
        assert wait_for(lambda: cam.selector.keeper.key_reason() == "requested")
        sel, n = cam.send(3, img, drop_first=True)  # the key frame loses its coarse fragment
        assert sel.frame_type == FRAME_KEY
        rec = cloud.take(n)[3]
        assert not rec.complete
        assert wait_for(lambda: cam.selector.keeper.key_reason() == "requested")
        sel, n = cam.send(4, img)
        assert (sel.frame_type, sel.reason) == (FRAME_KEY, "requested")
        assert cloud.take(n)[4].complete
        assert wait_for(lambda: len(spy.got) == 3)
        assert [m[1:] for m in spy.messages()] == [(KEY_REQUEST, 2, REASON_MISSING_REFERENCE),
                                                   (KEY_REQUEST, 3, REASON_INCOMPLETE_KEY), (ACK, 4, 3)]
        assert cam.selector.keeper.reference.counter == 4  # no use_ack: the ACK changes nothing here
    finally:
        cam.close()
        cloud.consumer.close()
        cloud.close()
        spy.close()


@pytest.mark.broker
def test_key_requests_are_rate_limited_per_device(tmp_path, mosquitto):
    spy = Spy(mosquitto.port)
    cloud = Cloud(tmp_path, mosquitto.port)
    cloud.worker.downlink.cfg.key_request_interval_s = 60.0
    try:
        sender = cloud.worker.downlink
        assert sender.request_key(DEV, 10, REASON_MISSING_REFERENCE)
        assert not sender.request_key(DEV, 11, REASON_MISSING_REFERENCE)  # within the interval
        assert not sender.request_key(99, 11, REASON_MISSING_REFERENCE)  # no key for device 99: logged
        assert wait_for(lambda: len(spy.got) == 1)
        time.sleep(0.3)
        assert [m[1:3] for m in spy.messages()] == [(KEY_REQUEST, 10)]
        assert sender.stats.rate_limited == 1 and sender.stats.failed == 1
    finally:
        cloud.consumer.close()
        cloud.close()
        spy.close()


# -- the service keeps running under bad control messages -----------------------------------------

def service_config(tmp_path: Path, transport: TransportConfig) -> EdgeConfig:
    cam = tmp_path / "cam"
    cam.mkdir(parents=True)
    Image.fromarray(scene()).save(cam / "000.png")
    key_file = tmp_path / f"{DEV}.key"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    cfg = EdgeConfig()
    cfg.device.id, cfg.device.key_file = DEV, key_file
    cfg.capture.source = "images"
    cfg.capture.images.path, cfg.capture.images.loop = str(cam), True
    cfg.schedule.interval_s = 0.25
    cfg.pipeline.tokenizer_id = 3
    cfg.temporal = TemporalConfig(enabled=True, threshold=0.2, key_interval=1000)
    cfg.transport = transport
    cfg.outbox.path = tmp_path / "outbox.sqlite"
    cfg.sender.idle_poll_s, cfg.sender.backoff_initial_s = 0.05, 0.05
    return cfg


@pytest.mark.broker
def test_the_service_rejects_bad_control_messages_and_runs_on(tmp_path, mosquitto, caplog):
    from edge.assemble import build_service
    from edge.service import RunLimits

    cfg = service_config(tmp_path, TransportConfig(type="mqtt", mqtt=MqttConfig(device_id=DEV, port=mosquitto.port)))
    assert not cfg.problems()
    consumer = MqttConsumer(MqttConfig(role="consumer", port=mosquitto.port, client_id="cloud", group="g"))
    spy = Spy(mosquitto.port)
    frames: dict[int, int] = {}  # counter -> frame type, as the cloud receives them
    stop = threading.Event()
    selector = TemporalSelector(make_pipeline()[0], cfg.temporal, codebook=codebook())

    def collect() -> None:
        while not stop.is_set():
            if (m := consumer.recv_message(timeout=0.1)) is not None:
                h = parse_header2(m.payload)
                frames[h.counter] = h.frame_type
                m.ack()

    def key_frames_after(counter: int, wait_frames: int = 3) -> list[int]:
        assert wait_for(lambda: max(frames, default=0) >= counter + wait_frames, 15)
        return [c for c, t in frames.items() if c > counter and t == FRAME_KEY]

    collector = threading.Thread(target=collect)
    collector.start()
    result: list[int] = []
    try:
        with build_service(cfg, stop, selector=selector) as service:
            runner = threading.Thread(target=lambda: result.append(service.run(RunLimits())))
            runner.start()
            assert wait_for(lambda: 1 in frames) and frames[1] == FRAME_KEY  # connected and subscribed
            now = max(frames)
            good = seal(key_request(DEV, now, REASON_MISSING_REFERENCE), KEY)
            forged = bytearray(good)
            forged[-1] ^= 0xFF
            for bad in (bytes(forged), good[:9], seal(key_request(DEV, now, 1), bytes(16)),
                        seal(key_request(DEV + 1, now, 1), KEY), b"\x02" + bytes(30), b""):
                spy.publish(bad)
            assert key_frames_after(now) == []  # none of them asked for anything
            now = max(frames)
            spy.publish(good)
            keys = key_frames_after(now)
            assert len(keys) == 1  # the real request: one key frame
            now = max(frames)
            spy.publish(good)  # the same bytes again: a replay
            assert key_frames_after(now) == []
            assert runner.is_alive() and not result
            stop.set()
            runner.join(10)
        assert result == [0]
    finally:
        stop.set()
        collector.join()
        consumer.close()
        spy.close()
    text = caplog.text
    for reason in ("auth", "malformed", "version", "replay"):
        assert f"control message rejected ({reason}" in text
    assert text.count("control message rejected") == 7


def test_the_serial_lora_path_has_no_downlink_and_refuses_acks(tmp_path):
    from edge.assemble import open_downlink

    serial = TransportConfig(type="serial", serial=SerialConfig(url="loop://", pace=False))
    cfg = service_config(tmp_path, serial)
    selector = TemporalSelector(make_pipeline()[0], cfg.temporal, codebook=codebook())
    assert not has_downlink(serial) and open_downlink(cfg, selector) is None
    assert not cfg.problems()
    cfg.temporal.use_ack = True  # nobody could ever acknowledge: a config error, not a silent stall
    assert [k for k, _ in cfg.problems()] == ["temporal.use_ack"]
    calls: list[bytes] = []
    with make_transport(serial, calls.append) as transport:  # the callback is simply not used
        transport.send(b"frame")
        assert transport.recv(timeout=1.0) == b"frame" and calls == []
    mqtt_cfg = service_config(tmp_path / "m", TransportConfig(type="mqtt", mqtt=MqttConfig(device_id=DEV)))
    assert isinstance(open_downlink(mqtt_cfg, selector), ControlReceiver)
    mqtt_cfg.transport.mqtt.downlink = False
    assert open_downlink(mqtt_cfg, selector) is None


# -- the keeper's side: ack timeout, stale requests ---------------------------------------------------

def test_an_unacknowledged_key_frame_is_sent_again_after_the_ack_timeout():
    from edge.reference import ReferenceKeeper

    now = [0.0]
    keeper = ReferenceKeeper(TemporalConfig(enabled=True, use_ack=True, ack_timeout_s=10, key_interval=3),
                             clock=lambda: now[0])
    grid, coarse = np.zeros((6, 8)), np.zeros((4, 3, 4))

    def key(counter: int) -> None:
        keeper.key_sent(counter, grid, coarse, scale=1, width=64, height=48)

    key(1)
    assert keeper.key_reason() == "unacknowledged"  # no reference yet: every frame is a key frame
    assert keeper.acknowledge(1) and keeper.key_reason() is None
    keeper.delta_sent()
    keeper.delta_sent()
    assert keeper.key_reason() == "schedule"
    key(4)  # its ACK is lost
    now[0] += 9.9
    assert keeper.key_reason() is None and keeper.reference.counter == 1  # deltas against 1 meanwhile
    now[0] += 0.1
    assert keeper.key_reason() == "ack timeout"
    key(5)
    assert keeper.key_reason() is None and keeper.last_key_counter() == 5
    assert keeper.acknowledge(5) and keeper.reference.counter == 5
    assert not keeper.acknowledge(4)  # older than the reference now: never moves it back
    now[0] += 100
    assert keeper.key_reason() is None  # nothing pending, nothing overdue
    with pytest.raises(ValueError, match="ack_timeout_s"):
        TemporalConfig(ack_timeout_s=-1)


def test_a_key_request_answered_by_a_newer_key_frame_is_stale():
    from edge.reference import ReferenceKeeper

    keeper = ReferenceKeeper(TemporalConfig(enabled=True))
    receiver = ControlReceiver(ControlOpener(KEY, DEV), keeper, use_ack=False)
    keeper.key_sent(5, np.zeros((6, 8)), np.zeros((4, 3, 4)), scale=1, width=64, height=48)
    assert receiver.handle(seal(key_request(DEV, 4, REASON_MISSING_REFERENCE), KEY)) is not None
    assert keeper.key_reason() is None and receiver.stats.stale == 1  # key frame 5 went out after frame 4
    receiver.handle(seal(key_request(DEV, 5, REASON_INCOMPLETE_KEY), KEY))
    assert keeper.key_reason() == "requested"  # about key frame 5 itself: honoured
    assert receiver.handle(b"\x81") is None and receiver.stats.rejected == {"malformed": 1}
