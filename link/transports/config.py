"""Typed transport configuration (loaded with link.config.load_config); no backend imports here."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class LoopbackConfig:
    channel: str = "default"  # in-process channel name; both ends name the same one
    side: Literal["edge", "cloud"] = "edge"  # the edge sends up, the cloud receives up


@dataclass
class MqttConfig:
    role: Literal["publisher", "consumer"] = "publisher"
    host: str = "127.0.0.1"
    port: int = 1883
    device_id: int = 0  # publisher: the uplink topic is <topic_prefix>/<device_id>/up
    client_id: str = ""  # empty: tokencast-edge-<device_id> or tokencast-cloud-<host>-<pid>
    group: str = "tokencast"  # consumer: shared-subscription group
    # consumer: $share/<group>/... so workers split the stream. Mosquitto 2.0.11 does not restore
    # shared subscriptions from its persistence file: frames published after a broker restart and
    # before the workers reconnect are dropped. A single worker can set shared = false (a plain
    # persistent subscription survives restarts); see link/README.md.
    shared: bool = True
    topic_prefix: str = "tokencast"
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600  # broker keeps the session and queued QoS 1 messages this long
    publish_timeout_s: float = 30.0  # send() waits this long for the PUBACK
    connect_timeout_s: float = 10.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    max_inflight: int = 20
    max_queued: int = 1000
    # publisher: a PUBACK saying "no matching subscribers" is a failed send (retried from the outbox),
    # not a delivery; false restores fire-and-forget for brokers that answer 16 by design
    require_subscriber: bool = True
    # publisher: listen on <topic_prefix>/<device_id>/ctl for the cloud's control messages (key
    # requests, acks; link/control.py) when the service has a use for them (temporal coding)
    downlink: bool = True
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None  # read at connect; keeps secrets out of the TOML
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False  # skip hostname verification (test brokers only)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if not 0 <= self.device_id <= 0xFFFFFFFF:
            raise ValueError(f"device_id must be a u32, got {self.device_id}")
        if self.publish_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if "/" in self.group or "+" in self.group or "#" in self.group:
            raise ValueError(f"group {self.group!r} must not contain '/', '+' or '#'")

    def effective_client_id(self) -> str:
        if self.client_id:
            return self.client_id
        if self.role == "publisher":
            return f"tokencast-edge-{self.device_id}"
        return f"tokencast-cloud-{socket.gethostname()}-{os.getpid()}"

    def uplink_topic(self, device_id: int | None = None) -> str:
        return f"{self.topic_prefix}/{self.device_id if device_id is None else device_id}/up"

    def status_topic(self) -> str:
        return f"{self.topic_prefix}/{self.device_id}/status"

    def control_topic(self, device_id: int | None = None) -> str:
        """The downlink: the cloud publishes control messages for one device here (QoS 1)."""
        return f"{self.topic_prefix}/{self.device_id if device_id is None else device_id}/ctl"

    def shared_subscription(self) -> str:
        topic = f"{self.topic_prefix}/+/up"
        return f"$share/{self.group}/{topic}" if self.shared else topic


@dataclass
class SerialConfig:
    url: str = "/dev/ttyUSB0"  # anything serial.serial_for_url takes: /dev/tty*, loop://, socket://
    baudrate: int = 9600
    pace: bool = True  # hold each frame for its LoRa airtime and the duty-cycle budget
    sf: int = 9
    bw_hz: int = 125_000
    cr: int = 1
    preamble: int = 8
    mtu: int = 240  # largest framed bytes per radio packet (E22 sub-packet)
    duty_cycle: float = 0.01
    duty_window_s: float = 3600.0
    guard_s: float = 0.005  # extra gap after each packet
    read_chunk: int = 512

    def __post_init__(self) -> None:
        if self.baudrate <= 0 or self.mtu < 8 or not 0 < self.duty_cycle <= 1 or self.guard_s < 0:
            raise ValueError("baudrate, mtu (>= 8), duty_cycle (0, 1] and guard_s (>= 0) out of range")


@dataclass
class TransportConfig:
    type: Literal["loopback", "mqtt", "serial"] = "loopback"
    loopback: LoopbackConfig = field(default_factory=LoopbackConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
