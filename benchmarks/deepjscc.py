"""DeepJSCC baseline (Bourtsoulatze, Kurka & Gunduz 2019), SNR-adaptive, for the channel benchmark.

A conv autoencoder whose latent *is* the channel input: the encoder maps an image to ``c``
feature maps at 1/8 resolution, pairs them into complex symbols, normalises the average power
to 1, the channel adds noise (AWGN, or Rayleigh block fading with one coefficient per image and
a receiver that knows it), and the decoder maps the noisy symbols straight back to pixels. No
bits, no packets, so no cliff: quality degrades smoothly with SNR.

SNR adaptivity is the simple form: the SNR in dB (scaled) is a constant extra input plane to
both encoder and decoder, so one network serves every SNR (ADJSCC's attention modules would do
better; this is the cheaper baseline). Channel uses per pixel are ``c / 128`` complex symbols
(c real values per 8x8x3 pixels, two reals per symbol): ``c = 10`` gives 0.078, next to
tokencast at 0.074 bpp on a rate-1/2 QPSK link.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

SNR_SCALE = 20.0  # dB -> input plane value


@dataclass
class DeepJSCCConfig:
    channels: int = 10  # real latent channels at 1/8 resolution (c/2 complex symbols per 8x8 block)
    width: int = 32
    snr_min_db: float = -2.0
    snr_max_db: float = 16.0

    def __post_init__(self) -> None:
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"channels must be an even number >= 2, got {self.channels}")

    @property
    def channel_uses_per_pixel(self) -> float:
        """Complex channel uses per image pixel: (c / 2) symbols per 64 pixels."""
        return self.channels / 2 / 64

    @property
    def bandwidth_ratio(self) -> float:
        """k/n: complex channel uses per real source value (3 per pixel)."""
        return self.channel_uses_per_pixel / 3


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, stride, 2), nn.PReLU(cout))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 5, 2, 2, output_padding=1), nn.PReLU(cout))


def power_normalize(z: torch.Tensor) -> torch.Tensor:
    """Scale each sample's latent so its complex symbols have unit average power."""
    flat = z.flatten(1)
    k = flat.shape[1] / 2  # complex symbols
    return z * torch.sqrt(k / flat.pow(2).sum(1).clamp_min(1e-12)).view(-1, *([1] * (z.dim() - 1)))


def channel(z: torch.Tensor, snr_db: torch.Tensor, kind: str, gen: torch.Generator | None = None) -> torch.Tensor:
    """Pass unit-power symbols (real pairs along channels) through ``kind``; returns equalised symbols.

    Es/N0 = snr_db per complex symbol. Rayleigh: one coefficient h per image, y = h x + n, the
    receiver divides by the known h (zero-forcing), which scales the noise by 1/|h|."""
    b = z.shape[0]
    n0 = 10.0 ** (-snr_db.view(b, 1, 1, 1) / 10.0)
    noise = torch.randn(z.shape, generator=gen, device=z.device) * torch.sqrt(n0 / 2)
    if kind == "awgn":
        return z + noise
    if kind != "rayleigh":
        raise ValueError(f"unknown channel {kind!r}; choose awgn or rayleigh")
    h = torch.randn(b, 2, generator=gen, device=z.device) / math.sqrt(2.0)
    mag = h.pow(2).sum(1).sqrt().clamp_min(1e-3).view(b, 1, 1, 1)
    # with h known, rotation is undone exactly; only the magnitude scales the noise
    return z + noise / mag


class DeepJSCC(nn.Module):
    def __init__(self, config: DeepJSCCConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DeepJSCCConfig()
        w = c.width
        self.encoder = nn.Sequential(
            _block(4, w, 2), _block(w, w, 2), _block(w, w, 2), _block(w, w, 1), nn.Conv2d(w, c.channels, 5, 1, 2)
        )
        self.decoder = nn.Sequential(
            _block(c.channels + 1, w, 1), _block(w, w, 1), _up(w, w), _up(w, w),
            nn.ConvTranspose2d(w, 3, 5, 2, 2, output_padding=1), nn.Sigmoid(),
        )  # fmt: skip

    @staticmethod
    def _with_snr(x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        plane = (snr_db / SNR_SCALE).view(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([x, plane], 1)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        return power_normalize(self.encoder(self._with_snr(x, snr_db)))

    def decode(self, y: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._with_snr(y, snr_db))

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor, kind: str = "awgn",
                gen: torch.Generator | None = None) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1], H and W multiples of 8 -> reconstruction through the channel."""
        return self.decode(channel(self.encode(x, snr_db), snr_db, kind, gen), snr_db)


def load_deepjscc(path: str | Path) -> DeepJSCC:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    model = DeepJSCC(DeepJSCCConfig(**json.loads(meta.get("config", "{}"))))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def config_dict(config: DeepJSCCConfig) -> dict:
    return asdict(config)


@torch.no_grad()
def transmit_image(model: DeepJSCC, image: np.ndarray, snr_db: float, kind: str, seed: int = 0) -> np.ndarray:
    """One RGB uint8 image through the JSCC link at ``snr_db``; padded to a multiple of 8 by edge
    replication and cropped back."""
    h, w = image.shape[:2]
    ph, pw = -h % 8, -w % 8
    x = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    t = torch.from_numpy(np.array(x, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
    gen = torch.Generator().manual_seed(seed)
    y = model(t, torch.tensor([float(snr_db)]), kind, gen)[0, :, :h, :w]
    return (y.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
