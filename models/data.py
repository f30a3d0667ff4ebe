"""Image loading for training and validation: whole folders decoded once into memory.

The training sets here are a few hundred photographs, so keeping decoded uint8 arrays in RAM
(a few hundred MB) is far cheaper on two cores than decoding JPEGs every step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_folder(root: str | Path, limit: int | None = None) -> list[np.ndarray]:
    paths = list_images(root)
    if limit is not None:
        paths = paths[:limit]
    return [load_rgb(p) for p in paths]


class CropSampler:
    """Random crops with flips from in-memory images; seeded so runs are repeatable."""

    def __init__(self, images: list[np.ndarray], crop: int, seed: int = 0) -> None:
        self.images = [im for im in images if min(im.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no image is at least {crop} px on its short side")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        # Sample images in proportion to their area so large photos are not under-used.
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self, n: int) -> np.ndarray:
        """(n, 3, crop, crop) float32 in [0, 1]."""
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        picks = self.rng.choice(len(self.images), size=n, p=self.p)
        for i, k in enumerate(picks):
            im = self.images[k]
            y = self.rng.integers(0, im.shape[0] - self.crop + 1)
            x = self.rng.integers(0, im.shape[1] - self.crop + 1)
            c = im[y : y + self.crop, x : x + self.crop]
            if self.rng.random() < 0.5:
                c = c[:, ::-1]
            out[i] = c
        return out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
