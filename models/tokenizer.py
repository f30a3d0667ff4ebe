"""The VQ tokenizer: a small convolutional encoder, an l2-normalised codebook, a decoder.

Shaped for training on two CPU cores: a space-to-depth stem (pixel-unshuffle by 4) means no
convolution ever runs at full resolution, the heavy work happens on the 1/8 grid, and the codes
are factorised (8-d, unit length) so a 1024-entry codebook stays well used with dead-code
restarts. Nearest-code search is a cosine similarity (one matmul) followed by argmax, which
exports to ONNX as MatMul + ArgMax and keeps its distances in float under FP16/INT8 export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture hyper-parameters; stored beside the weights so a checkpoint is self-describing."""

    downsample: int = 8
    codebook_size: int = 1024
    code_dim: int = 8
    enc_channels: tuple[int, int] = (96, 192)
    dec_channels: tuple[int, int, int] = (192, 96, 32)
    enc_blocks: int = 2
    dec_blocks: int = 3
    # The decoder also takes a known/restored map (1 where the code is a sent token, 0 where the
    # restorer estimated it), so it can render estimated codes as estimates: smooth where unsure.
    mask_channel: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        d = dict(d)
        for k in ("enc_channels", "dec_channels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    """Image in [-1, 1] (N, 3, H, W), H and W multiples of 8 -> unit codes (N, D, H/8, W/8)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        c1, c2 = cfg.enc_channels
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, c1, 3, padding=1), ResBlock(c1))
        self.down = nn.Conv2d(c1, c2, 4, stride=2, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(c2) for _ in range(cfg.enc_blocks)])
        self.proj = nn.Conv2d(c2, cfg.code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.down(self.stem(x)))
        return F.normalize(self.proj(F.silu(h)), dim=1)


class Decoder(nn.Module):
    """Unit codes (N, D, h, w) -> image in [-1, 1] (N, 3, 8h, 8w)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.dec_channels
        self.mask_channel = cfg.mask_channel
        self.inp = nn.Conv2d(cfg.code_dim + int(cfg.mask_channel), c1, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(c1) for _ in range(cfg.dec_blocks)])
        self.up1 = nn.Sequential(nn.SiLU(), nn.Conv2d(c1, c2 * 4, 3, padding=1), nn.PixelShuffle(2), ResBlock(c2))
        self.up2 = nn.Sequential(nn.SiLU(), nn.Conv2d(c2, c3 * 4, 3, padding=1), nn.PixelShuffle(2), nn.SiLU())
        self.out = nn.Sequential(nn.Conv2d(c3, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, q: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """``known`` (N, 1, h, w) in [0, 1]; None means every code is a sent token."""
        if self.mask_channel:
            if known is None:
                known = torch.ones_like(q[:, :1])
            q = torch.cat([q, known.to(q.dtype)], dim=1)
        return self.out(self.up2(self.up1(self.blocks(self.inp(q)))))


class Quantizer(nn.Module):
    """Cosine nearest-code lookup over an l2-normalised codebook with straight-through gradients."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.codebook = nn.Parameter(F.normalize(torch.randn(cfg.codebook_size, cfg.code_dim), dim=1))

    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) unit codes -> (N, h, w) int64 indices; similarity kept in float32."""
        sim = torch.einsum("ndhw,kd->nkhw", z.float(), self.normalized_codebook().float())
        return sim.argmax(dim=1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(N, h, w) indices -> (N, D, h, w) codes."""
        return self.normalized_codebook()[idx].permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.indices(z)
        q = self.lookup(idx)
        commit = F.mse_loss(z, q.detach())
        codebook = F.mse_loss(q, z.detach())
        q_st = z + (q - z).detach()
        return q_st, idx, commit * 0.25 + codebook


class VQTokenizer(nn.Module):
    """encode(image) -> indices and decode(indices) -> image, for any image size."""

    def __init__(self, cfg: TokenizerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or TokenizerConfig()
        self.encoder = Encoder(self.cfg)
        self.quantizer = Quantizer(self.cfg)
        self.decoder = Decoder(self.cfg)

    @property
    def factor(self) -> int:
        return self.cfg.downsample

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        h, w = x.shape[-2:]
        ph, pw = (-h) % f, (-w) % f
        if ph or pw:
            # Replicate padding keeps the border tokens close to the real content next to them.
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, indices, quantizer loss)."""
        z = self.encoder(x)
        q, idx, qloss = self.quantizer(z)
        return self.decoder(q), idx, qloss

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> (N, ceil(H/8), ceil(W/8)) int64 token indices."""
        x = self._pad(image * 2 - 1)
        return self.quantizer.indices(self.encoder(x))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(N, h, w) indices -> (N, 3, H, W) float in [0, 1], cropped to ``size`` when given."""
        y = self.decoder(self.quantizer.lookup(indices))
        y = ((y + 1) / 2).clamp(0, 1)
        if size is not None:
            y = y[..., : size[0], : size[1]]
        return y

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, known: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(N, D, h, w) code vectors, (N, 1, h, w) known map -> (N, 3, H, W) in [0, 1]."""
        y = ((self.decoder(codes, known) + 1) / 2).clamp(0, 1)
        if size is not None:
            y = y[..., : size[0], : size[1]]
        return y


class EncoderExport(nn.Module):
    """What the edge runs: image in [0, 1] -> int64 indices, with the nearest-code search in float."""

    def __init__(self, tok: VQTokenizer) -> None:
        super().__init__()
        self.encoder = tok.encoder
        self.register_buffer("codebook_t", tok.quantizer.normalized_codebook().detach().t().contiguous())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        z = self.encoder(image * 2 - 1)
        n, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(n, h * w, d)
        sim = torch.matmul(flat, self.codebook_t)
        return sim.argmax(dim=-1).reshape(n, h, w)


class DecoderExport(nn.Module):
    """What a GPU worker may run: int64 indices -> image in [0, 1]."""

    def __init__(self, tok: VQTokenizer) -> None:
        super().__init__()
        self.decoder = tok.decoder
        self.register_buffer("codebook", tok.quantizer.normalized_codebook().detach().clone())

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        q = self.codebook[indices].permute(0, 3, 1, 2)
        return ((self.decoder(q) + 1) / 2).clamp(0, 1)
