"""The recoverability scorer the edge runs: image -> per-token predicted restore difficulty.

It is distilled from the cloud's MaskGIT: the target for a token is the restorer's prediction
entropy (nats) at that cell when it is masked among dispersed context. High = the cloud would
struggle to regenerate it, so the edge should spend bytes on it. Tiny on purpose (a few hundred
k parameters, everything on the 1/8 grid) so it costs little next to the encoder on a Pi.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ScorerConfig:
    factor: int = 8
    channels: int = 64
    blocks: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScorerConfig:
        return cls(**d)


class Scorer(nn.Module):
    """(N, 3, H, W) in [0, 1], H and W multiples of 8 -> (N, 1, H/8, W/8) difficulty >= 0."""

    def __init__(self, cfg: ScorerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ScorerConfig()
        c = self.cfg.channels
        f = self.cfg.factor
        self.stem = nn.Sequential(nn.PixelUnshuffle(f), nn.Conv2d(3 * f * f, c, 1), nn.SiLU())
        layers: list[nn.Module] = []
        for _ in range(self.cfg.blocks):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.head(self.body(self.stem(image * 2 - 1))))
