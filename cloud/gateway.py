"""The LoRa gateway: serial radio in, one MQTT message per fragment out (or a local worker).

A receive-only bridge. The serial transport (``link.transports.serial``) deframes COBS+CRC and
drops corrupt frames (counted here from its deframer's statistics); each good frame is one
fragment whose device id is read from its clear header (``link.header.parse_header``; no keys
needed, authentication stays in the cloud) and republished to ``<prefix>/<device>/up`` at
QoS 1, the topic the edge's own MQTT publisher uses, so the worker cannot tell the paths apart.
Fragments that do not even parse are counted and dropped: forwarding them would only fill the
cloud's quarantine with radio noise.

Sinks sit behind a registry keyed by ``sink`` in gateway.toml: ``mqtt`` (republish) and
``worker`` (feed an in-process worker's ``submit``, for a single-box deployment or the demo).
"""

from __future__ import annotations

import abc
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, start_http_server

from cloud.config import MetricsConfig
from link.errors import LinkError, TransportError, TransportTimeout
from link.header import parse_header
from link.transports.base import Transport
from link.transports.config import SerialConfig

log = logging.getLogger(__name__)


@dataclass
class UplinkBrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "tokencast-gateway"
    topic_prefix: str = "tokencast"
    keepalive_s: int = 30
    publish_timeout_s: float = 30.0
    max_queued: int = 10_000  # fragments buffered in memory while the broker is away
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False


@dataclass
class GatewayConfig:
    sink: Literal["mqtt", "worker"] = "mqtt"
    serial: SerialConfig = field(default_factory=lambda: SerialConfig(pace=False))
    broker: UplinkBrokerConfig = field(default_factory=UplinkBrokerConfig)
    worker_config: Path | None = None  # cloud.toml of the in-process worker (sink = "worker")
    poll_s: float = 0.2
    metrics: MetricsConfig = field(default_factory=lambda: MetricsConfig(enabled=False, port=9109))


class Sink(abc.ABC):
    """Where the gateway hands each fragment; ``forward`` returns once it is handed on."""

    @abc.abstractmethod
    def forward(self, device_id: int, fragment: bytes) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class MqttSink(Sink):
    """Publish to ``<prefix>/<device>/up`` at QoS 1 and wait for the PUBACK (one connection, any device)."""

    def __init__(self, cfg: UplinkBrokerConfig) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.cfg = cfg
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_queued_messages_set(cfg.max_queued)
        password = cfg.password
        if cfg.password_file is not None:
            password = cfg.password_file.read_text().strip()
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, password)
        if cfg.tls:
            self.client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                                keyfile=str(cfg.key_file) if cfg.key_file else None, cert_reqs=ssl.CERT_REQUIRED)
            self.client.tls_insecure_set(cfg.tls_insecure)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        try:
            self.client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            raise TransportError(f"MQTT {cfg.host}:{cfg.port}: {exc}") from None
        self.client.loop_start()
        if not connected.wait(10):
            self.client.loop_stop()
            raise TransportError(f"MQTT broker {cfg.host}:{cfg.port} not reachable")

    def forward(self, device_id: int, fragment: bytes) -> None:
        info = self.client.publish(f"{self.cfg.topic_prefix}/{device_id}/up", fragment, qos=1)
        try:
            info.wait_for_publish(self.cfg.publish_timeout_s)
        except (RuntimeError, ValueError) as exc:  # paho: queue full / not connected
            raise TransportError(f"publish for device {device_id} failed: {exc}") from None
        if not info.is_published():
            raise TransportTimeout(f"no PUBACK within {self.cfg.publish_timeout_s} s (message stays queued)")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WorkerSink(Sink):
    """Feed an in-process worker (``cloud.worker``), whose batch loop runs in a thread here."""

    def __init__(self, cloud_toml: Path | None) -> None:
        from cloud import config as cloud_config
        from cloud.worker import build_worker

        if cloud_toml is None:
            raise ValueError("sink = 'worker' needs worker_config = path to a cloud.toml")
        self.worker = build_worker(cloud_config.load(cloud_toml))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.batch_loop, args=(self._stop,), daemon=True)
        self._thread.start()

    def forward(self, device_id: int, fragment: bytes) -> None:
        self.worker.submit(fragment)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.worker.store.close()


SINKS = {"mqtt": lambda cfg: MqttSink(cfg.broker), "worker": lambda cfg: WorkerSink(cfg.worker_config)}


def make_sink(cfg: GatewayConfig) -> Sink:
    if cfg.sink not in SINKS:
        raise ValueError(f"unknown sink {cfg.sink!r}; choose from {', '.join(SINKS)}")
    return SINKS[cfg.sink](cfg)  # type: ignore[no-untyped-call]


class Gateway:
    def __init__(self, transport: Transport, sink: Sink, registry: CollectorRegistry | None = None) -> None:
        self.transport, self.sink = transport, sink
        self.registry = registry or CollectorRegistry()
        self.frames = Counter("tokencast_gateway_frames_total", "Serial frames by outcome", ["outcome"],
                              registry=self.registry)
        self.counts: dict[str, int] = {}
        self._deframer_bad = 0

    def _count(self, outcome: str, n: int = 1) -> None:
        self.frames.labels(outcome=outcome).inc(n)
        self.counts[outcome] = self.counts.get(outcome, 0) + n

    def step(self, timeout: float) -> bool:
        """Move at most one fragment; False when none arrived within ``timeout``."""
        data = self.transport.recv(timeout)
        stats = getattr(getattr(self.transport, "deframer", None), "stats", None)
        if stats is not None:
            bad = stats.corrupt + stats.oversized
            if bad > self._deframer_bad:
                self._count("corrupt", bad - self._deframer_bad)
                log.warning("dropped %d corrupt serial frame(s) (%d so far)", bad - self._deframer_bad, bad)
                self._deframer_bad = bad
        if data is None:
            return False
        try:
            header = parse_header(data)
        except LinkError as exc:
            self._count(exc.reason)
            log.warning("dropped an unparseable fragment (%s): %s", exc.reason, exc)
            return True
        self.sink.forward(header.device_id, data)
        self._count("forwarded")
        return True

    def run(self, stop: threading.Event, poll_s: float = 0.2) -> None:
        while not stop.is_set():
            try:
                self.step(poll_s)
            except TransportError as exc:
                self._count("failed")
                log.error("forwarding failed: %s", exc)
                stop.wait(1.0)


def serve(cfg: GatewayConfig, stop: threading.Event) -> dict[str, int]:
    from link.transports import TransportConfig, make_transport

    transport = make_transport(TransportConfig(type="serial", serial=cfg.serial))
    sink = make_sink(cfg)
    gateway = Gateway(transport, sink)
    if cfg.metrics.enabled:
        start_http_server(cfg.metrics.port, addr=cfg.metrics.host, registry=gateway.registry)
    log.info("gateway: %s -> %s", cfg.serial.url, cfg.sink)
    t0 = time.monotonic()
    try:
        gateway.run(stop, cfg.poll_s)
    finally:
        transport.close()
        sink.close()
        log.info("gateway stopped after %.0f s: %s", time.monotonic() - t0, gateway.counts)
    return gateway.counts
