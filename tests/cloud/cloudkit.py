"""Helpers for the cloud tests (a unique module name: test folders are not packages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud.config import CloudConfig
from link.frame import Frame
from link.packet import pack
from link.security import Sealer

DEVICES = (1, 2, 3, 4)
IMAGE = 64  # pixels per side: an 8x8 token grid
MTU = 51  # LoRa-sized fragments: 2-3 per frame, so shared subscriptions split frames between workers


def device_key(device_id: int) -> bytes:
    return bytes((device_id * 17 + i) & 0xFF for i in range(16))


def write_keys(directory: Path, devices=DEVICES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for d in devices:
        (directory / f"{d}.key").write_text(device_key(d).hex())
    return directory


def make_frame(device_id: int, counter: int, *, keep: float = 0.5, tokenizer_id: int = 1) -> Frame:
    rng = np.random.default_rng(device_id * 100_003 + counter)
    g = IMAGE // 8
    kept = rng.random((g, g)) < keep
    return Frame.from_index_grid(rng.integers(0, 1024, size=(g, g)), kept, device_id=device_id, counter=counter,
                                 capture_ms=1_700_000_000_000 + counter, width=IMAGE, height=IMAGE,
                                 tokenizer_id=tokenizer_id)


class Edge:
    """A device's sending side: frames in counter order, sealed with its key."""

    def __init__(self, device_id: int, key: bytes | None = None) -> None:
        self.device_id = device_id
        self.sealer = Sealer(key or device_key(device_id), device_id)

    def fragments(self, counter: int, *, mtu: int = MTU, **kw) -> list[bytes]:
        return pack(make_frame(self.device_id, counter, **kw), mtu=mtu, sealer=self.sealer)


def cloud_config(root: Path, **batch) -> CloudConfig:
    cfg = CloudConfig(source="none", worker_id="w-test")
    cfg.security.keys_dir = write_keys(root / "keys")
    cfg.store.path = root / "store" / "tokencast.db"
    cfg.store.image_dir = root / "store" / "frames"
    cfg.batch.max_batch = batch.get("max_batch", 8)
    cfg.batch.max_wait_ms = batch.get("max_wait_ms", 10)
    cfg.reassembly.timeout_s = batch.get("timeout_s", 5.0)
    cfg.model.random_init = True
    cfg.model.device = "cpu"
    cfg.restore.steps = 2
    cfg.metrics.enabled = False
    cfg.dashboard.enabled = False
    return cfg
