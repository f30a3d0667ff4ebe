"""Cloud fixtures: a random-init codec (no training needed), device keys, small sealed frames."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudkit import DEVICES, Edge, cloud_config

from cloud.config import CloudConfig


@pytest.fixture
def edges() -> dict[int, Edge]:
    return {d: Edge(d) for d in DEVICES}


@pytest.fixture(scope="session")
def codec():
    import torch

    from models.codec import TokenCodec
    from models.restore import RestoreConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    return TokenCodec.load(1, device="cpu", random_init=True, restore=RestoreConfig(steps=2))


@pytest.fixture
def cfg(tmp_path: Path) -> CloudConfig:
    return cloud_config(tmp_path)
