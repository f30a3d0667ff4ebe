"""The camera's configuration: one TOML file, one dataclass per concern, checked at start-up.

Loaded with ``link.config.load_config`` (unknown keys and wrong types are rejected with the file
and dotted key named); cross-field checks below name the dotted key too. Relative paths of the
edge's own files (key, outbox, image folder) are taken relative to the config file, so a config
and its key can travel together. Each concern's dataclass lives beside the code that uses it
(``edge.capture.CaptureConfig``, ``edge.schedule.ScheduleConfig``, ...); this module only
composes them; ``[transport]`` is the link's own ``TransportConfig``. Packing parameters (MTU, tag length) and the byte budget live in
``[pipeline.packet]`` and ``[pipeline.budget]``: the pipeline sizes packets exactly with them,
so the packer reads the same values and the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from link.config import ConfigError, from_dict, read_toml, resolve_path
from link.transports import has_downlink
from link.transports.config import TransportConfig

from .capture import CaptureConfig
from .outbox import Policy
from .pipeline import PipelineConfig
from .reference import TemporalConfig
from .schedule import ScheduleConfig
from .sender import SenderConfig

U32 = 0xFFFF_FFFF


@dataclass
class DeviceConfig:
    id: int = -1  # this camera's id on the wire (u32); required
    key_file: Path = Path("")  # its AES key, hex or base64, mode 0600; required


@dataclass
class OutboxConfig:
    path: Path = Path("/var/lib/tokencast/outbox.sqlite")
    max_frames: int = 1000
    max_bytes: int = 10_000_000
    policy: Policy = "drop-oldest"
    # the frame counter's high-water mark (edge/counter_mark.py); empty: <path>.counter beside the outbox
    counter_file: Path | None = None

    def effective_counter_file(self) -> Path:
        return self.counter_file or self.path.with_name(self.path.name + ".counter")


@dataclass
class EdgeConfig:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)  # key/delta frames (wire v2)
    transport: TransportConfig = field(default_factory=TransportConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    sender: SenderConfig = field(default_factory=SenderConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def problems(self) -> list[tuple[str, str]]:
        """(dotted key, message) for every value that is well typed but wrong."""
        bad: list[tuple[str, str]] = []
        if not 0 <= self.device.id <= U32:
            bad.append(("device.id", f"required: an integer in 0..{U32}, got {self.device.id}"))
        if not str(self.device.key_file) or self.device.key_file == Path(""):
            bad.append(("device.key_file", "required: path of this device's key file"))
        if self.outbox.max_frames < 1:
            bad.append(("outbox.max_frames", f"must be >= 1, got {self.outbox.max_frames}"))
        if self.outbox.max_bytes < 1:
            bad.append(("outbox.max_bytes", f"must be >= 1, got {self.outbox.max_bytes}"))
        if self.transport.type == "mqtt" and self.transport.mqtt.device_id != self.device.id:
            bad.append(("transport.mqtt.device_id",
                        f"must equal device.id ({self.device.id}), got {self.transport.mqtt.device_id}"))
        if self.transport.type == "mqtt" and self.transport.mqtt.role != "publisher":
            bad.append(("transport.mqtt.role", "must be 'publisher' on a camera"))
        if self.transport.type == "loopback" and self.transport.loopback.side != "edge":
            bad.append(("transport.loopback.side", "must be 'edge' on a camera"))
        if self.temporal.enabled and self.pipeline.tokenizer_id != 3:
            bad.append(("temporal.enabled", f"delta frames need the two-layer tokenizer 3 (wire v2); "
                                            f"pipeline.tokenizer_id is {self.pipeline.tokenizer_id}"))
        if self.temporal.enabled and self.temporal.use_ack and not has_downlink(self.transport):
            bad.append(("temporal.use_ack", f"acknowledgements need a downlink (transport.type = \"mqtt\" with "
                                            f"transport.mqtt.downlink = true); transport is {self.transport.type}"))
        bad += self.capture.check("capture")
        bad += self.schedule.check("schedule")
        bad += self.sender.check("sender")
        return bad




def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read, check and return the edge config at ``path``; raises ConfigError naming file and key."""
    path = Path(path)
    cfg = from_dict(EdgeConfig, read_toml(path), str(path))
    bad = cfg.problems()
    if bad:
        key, message = bad[0]
        raise ConfigError(message, str(path), key)
    base = path.resolve().parent
    cfg.device.key_file = resolve_path(base, cfg.device.key_file)
    cfg.outbox.path = resolve_path(base, cfg.outbox.path)
    if cfg.outbox.counter_file is not None:
        cfg.outbox.counter_file = resolve_path(base, cfg.outbox.counter_file)
    if cfg.temporal.codebook:
        cfg.temporal.codebook = resolve_path(base, cfg.temporal.codebook)
    if cfg.capture.video.path:
        cfg.capture.video.path = str(resolve_path(base, Path(cfg.capture.video.path)))
    if cfg.capture.images.path:
        cfg.capture.images.path = str(resolve_path(base, Path(cfg.capture.images.path)))
    return cfg
