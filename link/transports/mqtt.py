"""MQTT v5 transport (paho-mqtt 2.x): QoS 1, persistent sessions, acknowledged both ways.

Publisher (edge): ``send`` publishes to ``<prefix>/<device_id>/up`` and blocks until the
broker's PUBACK, so the edge's outbox deletes a frame only once the broker holds it. A PUBACK
with reason "no matching subscribers" (16) means the broker dropped the message because no
worker is subscribed (Mosquitto forgets shared subscriptions across its restart until the
workers resubscribe), so ``send`` raises ``NoSubscriber`` and the outbox keeps the fragment for
a retry instead of deleting a message nobody received. While the
connection is down paho queues the message and resends it after the automatic reconnect
(backoff ``reconnect_min_s``..``reconnect_max_s``); past ``publish_timeout_s`` ``send`` raises
TransportTimeout and the message may still go out later, so delivery is at least once (the
cloud drops duplicates by device id and counter). A retained last will on
``<prefix>/<device_id>/status`` says "offline" when the device vanishes. Given ``on_downlink``
(and ``downlink`` on), the publisher also subscribes (QoS 1, in its persistent session, so what
the cloud sends while the camera is away waits at the broker) to ``<prefix>/<device_id>/ctl`` and
hands each payload to ``on_downlink`` on paho's thread; it only moves the bytes (link/control.py
reads them).

Consumer (cloud): subscribes to ``$share/<group>/<prefix>/+/up`` with manual acknowledgement:
``recv_message`` returns a ``Message`` whose ``ack()`` the worker calls after it has stored the
result; an unacked message is redelivered after a reconnect. Sessions use clean_start=False and
a session expiry interval, so the broker queues messages for a worker that is briefly away.
``send_down(device_id, data)`` publishes a control message on that device's ``ctl`` topic
(QoS 1, without waiting for the PUBACK: paho resends it after a reconnect).
Leaving a shared group for good is ``unsubscribe`` (the broker stops handing this session a
share), then acknowledging what still arrives, then ``close(end_session=True)``: DISCONNECT with
session expiry 0, so no orphaned session keeps collecting its share of the stream. The same
steps end a dead worker's session when another worker connects under its client id
(``subscribe=False, reconnect=False``). A DISCONNECT with reason "session taken over" (142)
means another client connected with this client id: logged as an error and counted.
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

DOWNLINK = True  # make_transport passes on_downlink to this backend
NO_MATCHING_SUBSCRIBERS = 16  # PUBACK reason code (MQTT 5): accepted, delivered to nobody
SESSION_TAKEN_OVER = 142  # DISCONNECT reason code (MQTT 5): another connection uses this client id
# Mosquitto 2.0 closes a taken-over connection without saying why, so a clash shows as connections
# that keep dropping right after they come up: this many in a row, each shorter than FLAP_S
FLAPS_FOR_CLASH, FLAP_S = 3, 5.0

log = logging.getLogger(__name__)


class NoSubscriber(TransportError):
    """The broker accepted the message but no subscription matched it: nobody received it."""

    reason = "no_subscriber"


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


def _reason_value(reason_code: object) -> int:
    return int(getattr(reason_code, "value", reason_code) or 0)  # type: ignore[call-overload]


class _MqttBase(Transport):
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, *, manual_ack: bool, reconnect: bool = True) -> None:
        self.cfg = cfg
        self.client = _make_client(cfg, manual_ack=manual_ack)
        self._connected = threading.Event()
        self._generation = 0  # bumps on each connect: message ids of an older connection are void
        self._closed = False
        self._reconnect = reconnect
        self.taken_over = 0  # disconnects because another client connected with this client id
        self._connected_at, self._flaps = 0.0, 0
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
        self._connected_at = time.monotonic()
        self._connected.set()
        self._connected_hook(client)

    def _connected_hook(self, client: mqtt.Client) -> None:
        pass

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        self._connected.clear()
        if self._closed:
            return
        self._flaps = self._flaps + 1 if time.monotonic() - self._connected_at < FLAP_S else 0
        if _reason_value(reason_code) == SESSION_TAKEN_OVER or self._flaps == FLAPS_FOR_CLASH:
            self.taken_over += 1
            log.error("MQTT client id %r: session taken over by another connection with the same client id "
                      "(%s; two processes configured alike, or this session adopted by another worker)",
                      self.cfg.effective_client_id(), "broker said so" if self._flaps < FLAPS_FOR_CLASH else
                      f"{self._flaps} connections in a row dropped within {FLAP_S:g} s")
        if not self._reconnect:
            self._closed = True
            client.disconnect()  # stops paho's automatic reconnect
            return
        log.info("MQTT disconnected (%s); reconnecting", reason_code)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self, end_session: bool = False) -> None:
        """Disconnect; ``end_session`` also tells the broker to drop the session (expiry 0) now."""
        if self._closed:
            self.client.loop_stop()
            return
        self._closed = True
        try:
            self._before_close()
            props = None
            if end_session:
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        finally:
            self.client.loop_stop()

    def _before_close(self) -> None:
        pass


class MqttPublisher(_MqttBase):
    """Edge side: ``send`` returns after the PUBACK; ``recv`` is not used on the uplink."""

    def __init__(self, cfg: MqttConfig, on_downlink: Callable[[bytes], object] | None = None) -> None:
        super().__init__(cfg, manual_ack=False)
        self.topic = cfg.uplink_topic()
        self.client.will_set(cfg.status_topic(), b"offline", qos=1, retain=True)
        self._puback: dict[int, int] = {}  # mid -> PUBACK reason code, set before the message counts as published
        self.client.on_publish = self._on_publish
        self._on_downlink = on_downlink if cfg.downlink else None
        self.client.on_message = self._on_message
        self._start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._on_downlink is None or msg.topic != self.cfg.control_topic():
            return
        try:
            self._on_downlink(bytes(msg.payload))
        except Exception:  # a failed callback logs and returns; paho's thread must live on
            log.exception("downlink message handling failed")

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason_code: object,
                    properties: object) -> None:
        self._puback[mid] = _reason_value(reason_code)

    def _connected_hook(self, client: mqtt.Client) -> None:
        client.publish(self.cfg.status_topic(), b"online", qos=1, retain=True)
        if self._on_downlink is not None:
            client.subscribe(self.cfg.control_topic(), qos=1)

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
        if self._puback.pop(info.mid, 0) == NO_MATCHING_SUBSCRIBERS and self.cfg.require_subscriber:
            raise NoSubscriber(f"broker {self.cfg.host}:{self.cfg.port} has no subscriber for {self.topic} "
                               f"(PUBACK reason 16): the message reached nobody; send it again later")

    def recv(self, timeout: float | None = None) -> bytes | None:
        raise TransportError("the MQTT publisher only sends; use a consumer to receive")

    def _before_close(self) -> None:
        if self.connected:
            self.client.publish(self.cfg.status_topic(), b"offline", qos=1, retain=True).wait_for_publish(2.0)


class MqttConsumer(_MqttBase):
    """Cloud side: shared subscription, manual acknowledgement."""

    def __init__(self, cfg: MqttConfig, *, subscribe: bool = True, reconnect: bool = True) -> None:
        """``subscribe=False, reconnect=False``: resume someone else's session only to drain and end it."""
        super().__init__(cfg, manual_ack=True, reconnect=reconnect)
        self._queue: queue.Queue[Message] = queue.Queue()
        self.client.on_message = self._on_message
        self._subscribe = subscribe
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_unsubscribe = lambda *a: self._unsubscribed.set()
        self._start()
        if subscribe and not self._subscribed.wait(self.cfg.connect_timeout_s):
            self.close()
            raise TransportError(f"MQTT subscription to {cfg.shared_subscription()} not acknowledged")

    def _connected_hook(self, client: mqtt.Client) -> None:
        if self._subscribe:
            client.subscribe(self.cfg.shared_subscription(), qos=1)

    def unsubscribe(self, timeout: float | None = None) -> bool:
        """Leave the (shared) subscription: the broker stops giving this session new messages.

        What it had already queued or sent still arrives; acknowledge it before ``close(end_session=True)``.
        True once the broker confirmed (UNSUBACK).
        """
        self._subscribe = False  # a reconnect from here on must not subscribe again
        self._unsubscribed.clear()
        rc, _ = self.client.unsubscribe(self.cfg.shared_subscription())
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        return self._unsubscribed.wait(self.cfg.connect_timeout_s if timeout is None else timeout)

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
        raise TransportError("the MQTT consumer only receives; send_down publishes to one device")

    def send_down(self, device_id: int, data: bytes) -> None:
        """Publish a control message on ``<prefix>/<device_id>/ctl`` (QoS 1, not waiting for the PUBACK)."""
        if self._closed:
            raise TransportError("MQTT consumer is closed")
        info = self.client.publish(self.cfg.control_topic(device_id), bytes(data), qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise TransportError(f"MQTT publish to {self.cfg.control_topic(device_id)} refused: "
                                 f"{mqtt.error_string(info.rc)}")


def create(cfg: TransportConfig, on_downlink: Callable[[bytes], object] | None = None) -> Transport:
    if cfg.mqtt.role == "publisher":
        return MqttPublisher(cfg.mqtt, on_downlink)
    return MqttConsumer(cfg.mqtt)
