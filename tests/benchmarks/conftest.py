"""Two tiny synthetic photos-to-be (96x128, numpy-made) for the benchmark smoke tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_images(directory: Path, n: int = 2, shape: tuple[int, int] = (96, 128)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    for i in range(n):
        im = np.stack([(2 * x + 40 * i) % 256, (2 * y) % 256, (x + y + rng.integers(0, 30, (h, w))) % 256], -1)
        im[h // 4 : h // 2, w // 4 : w // 2] = (200, 60, 60)  # a flat block: some structure to code
        Image.fromarray(im.astype(np.uint8)).save(directory / f"im{i}.png")
    return directory


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Two cores shared with training: intra-op threads only oversubscribe them."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tiny_images(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images")
