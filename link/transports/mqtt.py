"""MQTT v5 transport (paho-mqtt 2.x): QoS 1, persistent sessions, acknowledged both ways.

Publisher (edge): ``send`` publishes to ``<prefix>/<device_id>/up`` and blocks until the
broker's PUBACK, so the edge's outbox deletes a frame only once the broker holds it. While the
connection is down paho queues the message and resends it after the automatic reconnect
(backoff ``reconnect_min_s``..``reconnect_max_s``); past ``publish_timeout_s`` ``send`` raises
TransportTimeout and the message may still go out later, so delivery is at least once (the
cloud drops duplicates by device id and counter). A retained last will on
``<prefix>/<device_id>/status`` says "offline" when the device vanishes.

Consumer (cloud): subscribes to ``$share/<group>/<prefix>/+/up`` with manual acknowledgement:
``recv_message`` returns a ``Message`` whose ``ack()`` the worker calls after it has stored the
result; an unacked message is redelivered after a reconnect. Sessions use clean_start=False and
a session expiry interval, so the broker queues messages for a worker that is briefly away.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from link.errors import TransportError, TransportTimeout
from link.transports.base import Transport
from link.transports.config import MqttConfig, TransportConfig

log = logging.getLogger(__name__)


@dataclass
class Message:
    topic: str
    payload: bytes
    device_id: int | None
    ack: Callable[[], None]


def _make_client(cfg: MqttConfig, *, manual_ack: bool) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cfg.effective_client_id(),
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
    client.max_inflight_messages_set(cfg.max_inflight)
    client.max_queued_messages_set(cfg.max_queued)
    password = cfg.password
    if cfg.password_file is not None:
        try:
            password = cfg.password_file.read_text().strip()
        except OSError as exc:
            raise TransportError(f"cannot read MQTT password file {cfg.password_file}: {exc.strerror}") from None
    if cfg.username is not None:
        client.username_pw_set(cfg.username, password)
    if cfg.tls:
        client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                       certfile=str(cfg.cert_file) if cfg.cert_file else None,
                       keyfile=str(cfg.key_file) if cfg.key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(cfg.tls_insecure)
    return client


def _connect_props(cfg: MqttConfig) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = cfg.session_expiry_s
    return props


class _MqttBase(Transport):
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, *, manual_ack: bool) -> None:
        self.cfg = cfg
        self.client = _make_client(cfg, manual_ack=manual_ack)
        self._connected = threading.Event()
        self._generation = 0  # bumps on each connect: message ids of an older connection are void
        self._closed = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def _start(self) -> None:
        try:
            self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, clean_start=False,
                                      properties=_connect_props(self.cfg))
        except (OSError, ValueError) as exc:
            raise TransportError(f"MQTT {self.cfg.host}:{self.cfg.port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(self.cfg.connect_timeout_s):
            self.client.loop_stop()
            raise TransportError(f"MQTT broker {self.cfg.host}:{self.cfg.port} not reachable "
                                 f"within {self.cfg.connect_timeout_s} s")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason_code)
            return
        self._generation += 1
        self._connected.set()
        self._connected_hook(client)

    def _connected_hook(self, client: mqtt.Client) -> None:
        pass

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        self._connected.clear()
        if not self._closed:
            log.info("MQTT disconnected (%s); reconnecting", reason_code)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._before_close()
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def _before_close(self) -> None:
        pass


class MqttPublisher(_MqttBase):
    """Edge side: ``send`` returns after the PUBACK; ``recv`` is not used on the uplink."""

    def __init__(self, cfg: MqttConfig) -> None:
        super().__init__(cfg, manual_ack=False)
        self.topic = cfg.uplink_topic()
        self.client.will_set(cfg.status_topic(), b"offline", qos=1, retain=True)
        self._start()

    def _connected_hook(self, client: mqtt.Client) -> None:
        client.publish(self.cfg.status_topic(), b"online", qos=1, retain=True)

    def send(self, data: bytes) -> None:
        if self._closed:
            raise TransportError("MQTT publisher is closed")
        info = self.client.publish(self.topic, bytes(data), qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise TransportError(f"MQTT publish refused: {mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + self.cfg.publish_timeout_s
        # not info.wait_for_publish(): it raises on NO_CONN although paho keeps the message queued
        # and sends it after the reconnect; the PUBACK is what counts
        with info._condition:
            while not info._published:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransportTimeout(f"no PUBACK for message {info.mid} within {self.cfg.publish_timeout_s} s")
                info._condition.wait(min(remaining, 0.1))

    def recv(self, timeout: float | None = None) -> bytes | None:
        raise TransportError("the MQTT publisher only sends; use a consumer to receive")

    def _before_close(self) -> None:
        if self.connected:
            self.client.publish(self.cfg.status_topic(), b"offline", qos=1, retain=True).wait_for_publish(2.0)


class MqttConsumer(_MqttBase):
    """Cloud side: shared subscription, manual acknowledgement."""

    def __init__(self, cfg: MqttConfig) -> None:
        super().__init__(cfg, manual_ack=True)
        self._queue: queue.Queue[Message] = queue.Queue()
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self._start()
        if not self._subscribed.wait(self.cfg.connect_timeout_s):
            self.close()
            raise TransportError(f"MQTT subscription to {cfg.shared_subscription()} not acknowledged")

    def _connected_hook(self, client: mqtt.Client) -> None:
        client.subscribe(self.cfg.shared_subscription(), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            parts = msg.topic.split("/")
            device_id = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
            mid, qos, generation = msg.mid, msg.qos, self._generation

            def ack() -> None:
                # a message id belongs to one connection; after a reconnect the broker redelivers
                if qos > 0 and generation == self._generation and self.connected:
                    client.ack(mid, qos)

            self._queue.put(Message(msg.topic, bytes(msg.payload), device_id, ack))
        except Exception:  # a failed callback logs and returns; paho's thread must live on
            log.exception("MQTT message handling failed")

    def recv_message(self, timeout: float | None = None) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def recv(self, timeout: float | None = None) -> bytes | None:
        """Next payload, acknowledged at once (use ``recv_message`` to ack after storing)."""
        msg = self.recv_message(timeout)
        if msg is None:
            return None
        msg.ack()
        return msg.payload

    def send(self, data: bytes) -> None:
        raise TransportError("the MQTT consumer only receives")


def create(cfg: TransportConfig) -> Transport:
    return MqttPublisher(cfg.mqtt) if cfg.mqtt.role == "publisher" else MqttConsumer(cfg.mqtt)
