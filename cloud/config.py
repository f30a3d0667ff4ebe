"""Typed configuration of the cloud worker (``cloud.toml``), one dataclass per concern.

Loaded through ``link.config.from_dict`` so unknown keys and wrong types fail at start-up with
the file and dotted key named. Nothing here imports torch or paho: ``tokencast cloud
check-config`` must work on any machine.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from link.config import from_dict, read_toml, resolve_path
from link.transports.config import MqttConfig


@dataclass
class BrokerConfig:
    """Where fragments come from: a shared MQTT subscription, QoS 1, manual acks."""

    host: str = "127.0.0.1"
    port: int = 1883
    # empty: tokencast-cloud-<host>-<pid>, unique per process. A fixed id lets a restart resume its
    # session directly; without one a dead worker's session is adopted by a live one (cloud.sessions)
    client_id: str = ""
    group: str = "tokencast"  # shared-subscription group: workers in one group split the uplink
    # false: one worker on a plain persistent subscription, which (unlike a shared one on
    # Mosquitto 2.0.11) survives a broker restart; see link/README.md "MQTT"
    shared: bool = True
    topic_prefix: str = "tokencast"
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    max_inflight: int = 100
    heartbeat_s: float = 2.0  # session registry heartbeat in the store (cloud.sessions)
    adopt_after_s: float = 20.0  # a session silent this long is a dead worker's: adopt, drain, end it (0: never)
    # on SIGTERM (and when adopting): at most this long staging what the broker still sends; the
    # session is ended only if it went quiet. 0: SIGTERM just disconnects and keeps the session
    leave_timeout_s: float = 30.0
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.heartbeat_s <= 0 or self.adopt_after_s < 0 or self.leave_timeout_s < 0:
            raise ValueError("heartbeat_s must be > 0, adopt_after_s and leave_timeout_s >= 0")
        if 0 < self.adopt_after_s < 3 * self.heartbeat_s:
            raise ValueError(f"adopt_after_s ({self.adopt_after_s:g}) must be at least 3 heartbeats "
                             f"({3 * self.heartbeat_s:g} s) or 0, else live workers get adopted")

    def effective_client_id(self) -> str:
        # Unique per process: two workers on one host never share a session. A restarted worker
        # gets a new id; its old session is adopted and drained by a live worker (cloud.sessions).
        return self.client_id or f"tokencast-cloud-{socket.gethostname()}-{os.getpid()}"

    def to_mqtt(self) -> MqttConfig:
        return MqttConfig(
            role="consumer", host=self.host, port=self.port, client_id=self.effective_client_id(),
            group=self.group, shared=self.shared, topic_prefix=self.topic_prefix, keepalive_s=self.keepalive_s,
            session_expiry_s=self.session_expiry_s, max_inflight=self.max_inflight,
            username=self.username, password=self.password, password_file=self.password_file,
            tls=self.tls, ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file,
            tls_insecure=self.tls_insecure,
        )


@dataclass
class SecurityConfig:
    keys_dir: Path = Path("keys")  # <device_id>.key files, hex or base64
    tag_len: int = 8
    allow_unsealed: bool = False  # tests and wired links only
    replay_window: int = 256  # frame counters per device
    prior_dir: Path | None = None  # <tokenizer name>.prior.npy for Huffman-coded indices


URL_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "sqlite": "sqlite"}


@dataclass
class QuarantineConfig:
    """How much rejected input the store keeps (``[store.quarantine]``; see
    ``cloud.store.base.QuarantinePolicy``). Rejected input is unauthenticated: anyone who can
    publish on the topic decides its size and rate, so the cap must not depend on them."""

    max_entry_bytes: int = 4096  # payload bytes kept per entry (the first ones); the full size is recorded
    max_total_bytes: int = 16 * 1024 * 1024  # kept payload bytes over all entries; the oldest go first
    max_entries: int = 10_000  # entries kept; the oldest go first

    def __post_init__(self) -> None:
        if self.max_entry_bytes < 0 or self.max_total_bytes < self.max_entry_bytes or self.max_entries < 1:
            raise ValueError("quarantine needs max_entry_bytes >= 0, max_total_bytes >= max_entry_bytes "
                             f"and max_entries >= 1, got {self.max_entry_bytes}, {self.max_total_bytes}, "
                             f"{self.max_entries}")


@dataclass
class StoreConfig:
    """Where frames go. SQLite (one host) by default; ``url = "postgresql://..."`` shares one
    database between workers on several hosts. ``store = "postgresql://..."`` at the top of
    cloud.toml is the same as ``[store] url = ...``."""

    type: str = "sqlite"  # cloud.store.BACKENDS key; set from the url's scheme when url is given
    url: str = ""  # postgresql://user@host:port/db (libpq URL); sqlite:///path/to.db
    path: Path = Path("cloud_data/tokencast.db")  # SQLite database file
    # PNGs: beside the SQLite file, or a folder every worker mounts (NFS, a shared volume) with PostgreSQL
    image_dir: Path = Path("cloud_data/frames")
    busy_timeout_s: float = 10.0  # SQLite lock wait; PostgreSQL pool checkout and connect timeout
    max_page_count: int = 0  # SQLite size cap in pages (0: none); tests use it to emulate a full disk
    pool_size: int = 4  # PostgreSQL connections per worker process
    password_file: Path | None = None  # PostgreSQL password, read at start; keeps it out of the TOML
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)

    def __post_init__(self) -> None:
        if self.url:
            scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
            if scheme not in URL_SCHEMES:
                raise ValueError(f"store url {_redact(self.url)!r}: scheme {scheme!r} unknown; "
                                 f"choose from {', '.join(sorted(URL_SCHEMES))}")
            self.type = URL_SCHEMES[scheme]
            if self.type == "sqlite":
                self.path = Path(self.url.split("://", 1)[1])  # sqlite:///abs/path.db, sqlite://relative.db
        if self.pool_size < 1 or self.busy_timeout_s <= 0:
            raise ValueError("pool_size must be >= 1 and busy_timeout_s > 0")

    def describe(self) -> str:
        """Where the store is, for logs: the URL without its password, or the SQLite path."""
        return _redact(self.url) if self.url and self.type != "sqlite" else str(self.path)


def _redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in creds else ''}@{host}"


@dataclass
class BatchConfig:
    max_batch: int = 16  # frames restored together
    max_wait_ms: float = 50.0  # oldest ready frame waits at most this long for the batch to fill
    poll_ms: float = 20.0  # loop tick when idle

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_ms < 0 or self.poll_ms <= 0:
            raise ValueError("max_batch must be >= 1, max_wait_ms >= 0, poll_ms > 0")


@dataclass
class RestoreSettings:
    steps: int = 8  # tokenizer 1 (one layer)
    # Two-layer frames (tokenizer 3): the coarse layer already fixes layout and colour, so fewer
    # passes of the smaller-overlap restorer cost no PSNR (22.84 vs 22.85 dB at 8 steps, 768x512)
    # and fit the 4 s budget on two CPU cores (1.9 s vs 5.2 s).
    v2_steps: int = 4
    v2_overlap: int = 2
    temperature: float = 0.0
    seed: int = 0
    # Pixels of restored cells from the restorer's regressed code vectors ("reveal", "first") or
    # from the restored tokens themselves ("tokens"); see models.restore.RestoreConfig.
    latents: Literal["reveal", "first", "tokens"] = "reveal"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.v2_steps < 1 or self.temperature < 0:
            raise ValueError("steps and v2_steps must be >= 1 and temperature >= 0")
        if self.v2_overlap < 0:
            raise ValueError("v2_overlap must be >= 0")


@dataclass
class ModelConfig:
    tokenizer_ids: list[int] = field(default_factory=lambda: [1, 3])  # frames with other ids are rejected
    device: Literal["auto", "cpu", "cuda"] = "auto"
    random_init: bool = False  # tests and smoke runs without shipped weights


@dataclass
class ReassemblyConfig:
    timeout_s: float = 30.0  # a partial frame is restored with its missing slices marked lost
    lease_s: float = 120.0  # a claimed frame not stored by then is taken over by another worker

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.lease_s <= 0:
            raise ValueError("timeout_s and lease_s must be positive")


@dataclass
class DownlinkConfig:
    """Control messages to cameras on ``<prefix>/<device_id>/ctl`` (MQTT source only;
    ``link/control.py``, ``cloud/downlink.py``). A camera behind a LoRa gateway has no downlink
    and simply never hears them."""

    enabled: bool = True
    acks: bool = True  # ACK each complete key frame (coarse layer + every fine fragment) once it is a reference
    key_requests: bool = True  # KEY_REQUEST after a delta without its reference, or an incomplete key frame
    key_request_interval_s: float = 30.0  # at most one KEY_REQUEST per device this often (per worker)

    def __post_init__(self) -> None:
        if self.key_request_interval_s < 0:
            raise ValueError(f"key_request_interval_s must be >= 0, got {self.key_request_interval_s}")


@dataclass
class MetricsConfig:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 9108


@dataclass
class DashboardConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class CloudConfig:
    source: Literal["mqtt", "none"] = "mqtt"  # "none": fragments arrive only through Worker.submit
    worker_id: str = ""  # claim owner in the store; empty: <host>-<pid>
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    restore: RestoreSettings = field(default_factory=RestoreSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    reassembly: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    downlink: DownlinkConfig = field(default_factory=DownlinkConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)

    def effective_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"


def load(path: str | Path) -> CloudConfig:
    """Read ``cloud.toml``; relative paths in it resolve against the file's folder."""
    data = read_toml(path)
    if isinstance(data.get("store"), str):  # store = "postgresql://..." names only the URL
        data["store"] = {"url": data["store"]}
    cfg = from_dict(CloudConfig, data, str(path))
    base = Path(path).resolve().parent
    cfg.security.keys_dir = resolve_path(base, cfg.security.keys_dir)
    if cfg.security.prior_dir is not None:
        cfg.security.prior_dir = resolve_path(base, cfg.security.prior_dir)
    cfg.store.path = resolve_path(base, cfg.store.path)
    cfg.store.image_dir = resolve_path(base, cfg.store.image_dir)
    if cfg.store.password_file is not None:
        cfg.store.password_file = resolve_path(base, cfg.store.password_file)
    return cfg


