"""Tokenizer v2: a coarse layer over the whole frame plus the fine f8 tokens, decoded together.

Why two layers: at 0.07 bpp a single f8 token grid can only be sent for a third of the frame,
and no restorer trained on two CPU cores can invent the colour and layout of the other two
thirds. A coarse f16 layer costs a few bits per 16x16 block and carries exactly that; the fine
tokens then buy detail where it matters.

Shape of the model, chosen for the CPU budget it was trained on:
- The fine layer *is* tokenizer v1's encoder and codebook (frozen): same token ids, so the v1
  MaskGIT and the wire prior carry over, and the edge runs one encoder trunk.
- The coarse layer is a small head on that trunk's f8 features: stride-2 conv, a residual
  block, a 1x1 projection to 4 channels, then finite scalar quantisation (FSQ, levels 7,5,5,5 =
  875 codes). FSQ has no codebook to collapse and its values are coordinates, so a lost coarse
  cell can be interpolated from its neighbours.
- The decoder is v1's map-aware decoder (fine codes + known map) plus a coarse branch that
  upsamples the coarse values to f8 and adds them into the decoder's first features
  (zero-initialised, so training starts from v1's decoder). Where no fine token was sent the
  decoder gets an estimate of the code (the restorer's or an interpolation) flagged unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.tokenizer import Decoder, Encoder, Quantizer, ResBlock, TokenizerConfig


@dataclass(frozen=True)
class Tokenizer2Config:
    fine: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(mask_channel=True))
    coarse_levels: tuple[int, ...] = (7, 5, 5, 5)
    coarse_channels: int = 128
    coarse_branch_channels: int = 96

    @property
    def coarse_factor(self) -> int:
        return self.fine.downsample * 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fine"] = self.fine.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer2Config:
        d = dict(d)
        d["fine"] = TokenizerConfig.from_dict(d["fine"])
        d["coarse_levels"] = tuple(d["coarse_levels"])
        return cls(**d)


class FSQ(nn.Module):
    """Finite scalar quantisation with odd level counts: each channel rounds to one of L_i values
    spread evenly over [-1, 1]; straight-through gradients."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        if any(n < 2 or n % 2 == 0 for n in levels):
            raise ValueError(f"FSQ levels must be odd and >= 3, got {levels}")
        self.levels = tuple(levels)
        self.register_buffer("halfw", torch.tensor([(n - 1) / 2 for n in levels]).view(1, -1, 1, 1))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z) * self.halfw

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) pre-activations -> quantised values in [-1, 1] (straight-through)."""
        b = self.bound(z)
        r = b + (torch.round(b) - b).detach()
        return r / self.halfw

    def levels_of(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) pre-activations -> int64 level indices 0..L_i-1 per channel."""
        return (torch.round(self.bound(z)) + self.halfw).long()

    def values(self, levels: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) level indices -> values in [-1, 1]."""
        return (levels.to(self.halfw.dtype) - self.halfw) / self.halfw


class CoarseHead(nn.Module):
    """f8 encoder features -> f16 coarse pre-activations."""

    def __init__(self, in_ch: int, ch: int, out_ch: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_ch, ch, 4, stride=2, padding=1)
        self.block = ResBlock(ch)
        self.proj = nn.Conv2d(ch, out_ch, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(F.silu(self.block(self.down(F.silu(h)))))


class CoarseBranch(nn.Module):
    """Coarse values at f16 -> features added to the decoder's first f8 features."""

    def __init__(self, in_ch: int, ch: int, out_ch: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.block = ResBlock(ch)
        self.up = nn.Sequential(nn.SiLU(), nn.Conv2d(ch, ch * 4, 3, padding=1), nn.PixelShuffle(2), nn.SiLU())
        self.out = nn.Conv2d(ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.block(self.inp(c))))


class Decoder2(nn.Module):
    """(fine codes, known map, coarse values) -> image in [-1, 1]."""

    def __init__(self, cfg: Tokenizer2Config) -> None:
        super().__init__()
        self.fine = Decoder(cfg.fine)
        self.coarse = CoarseBranch(len(cfg.coarse_levels), cfg.coarse_branch_channels, cfg.fine.dec_channels[0])

    def forward(self, q: torch.Tensor, known: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        d = self.fine
        h = d.inp(torch.cat([q, known.to(q.dtype)], dim=1))
        c = self.coarse(coarse)
        h = h + c[..., : h.shape[-2], : h.shape[-1]]
        return d.out(d.up2(d.up1(d.blocks(h))))


def encoder_features(enc: Encoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v1 encoder trunk: (unit fine codes, pre-projection f8 features)."""
    h = enc.blocks(enc.down(enc.stem(x)))
    return F.normalize(enc.proj(F.silu(h)), dim=1), h


def coarse_pad(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Replicate-pad to a multiple of the coarse factor (which is a multiple of the fine one)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class TwoLayerTokenizer(nn.Module):
    """encode(image) -> (fine indices, coarse levels); decode(fine codes, known, coarse) -> image.

    Grids: the fine grid is ceil(H/8) x ceil(W/8) as in v1; the coarse grid ceil(H/16) x
    ceil(W/16). The image is padded to a multiple of 16 for the encoder; the fine grid is the
    top-left ceil(H/8) x ceil(W/8) of the padded one so v1's grid geometry is unchanged.
    """

    def __init__(self, cfg: Tokenizer2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg or Tokenizer2Config()
        self.encoder = Encoder(self.cfg.fine)
        self.quantizer = Quantizer(self.cfg.fine)
        self.coarse_head = CoarseHead(self.cfg.fine.enc_channels[1], self.cfg.coarse_channels, len(self.cfg.coarse_levels))
        self.fsq = FSQ(self.cfg.coarse_levels)
        self.decoder = Decoder2(self.cfg)

    @property
    def factor(self) -> int:
        return self.cfg.fine.downsample

    @property
    def coarse_factor(self) -> int:
        return self.cfg.coarse_factor

    def encode_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x in [-1, 1], H, W multiples of 16 -> (unit fine codes, coarse pre-activations)."""
        z, h = encoder_features(self.encoder, x)
        return z, self.coarse_head(h)

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) in [0, 1] -> (fine (N, ceil(H/8), ceil(W/8)), coarse levels (N, C, ceil(H/16), ceil(W/16)))."""
        hh, ww = image.shape[-2:]
        x = coarse_pad(image * 2 - 1, self.coarse_factor)
        z, c = self.encode_parts(x)
        fh, fw = -(-hh // self.factor), -(-ww // self.factor)
        return self.quantizer.indices(z)[:, :fh, :fw], self.fsq.levels_of(c)

    def coarse_values(self, levels: torch.Tensor) -> torch.Tensor:
        return self.fsq.values(levels)

    def decode_codes(self, codes: torch.Tensor, known: torch.Tensor, coarse: torch.Tensor,
                     size: tuple[int, int] | None = None) -> torch.Tensor:
        """codes (N, D, h, w), known (N, 1, h, w), coarse values (N, C, hc, wc) -> image in [0, 1].

        The fine grid is padded (replicate) up to twice the coarse grid so both line up."""
        hc, wc = coarse.shape[-2:]
        ph, pw = 2 * hc - codes.shape[-2], 2 * wc - codes.shape[-1]
        if ph or pw:
            codes = F.pad(codes, (0, pw, 0, ph), mode="replicate")
            known = F.pad(known, (0, pw, 0, ph), mode="replicate")
        y = ((self.decoder(codes, known, coarse) + 1) / 2).clamp(0, 1)
        if size is not None:
            y = y[..., : size[0], : size[1]]
        return y


class Encoder2Export(nn.Module):
    """What the edge runs: image in [0, 1] (H, W multiples of 16) -> (fine indices, coarse levels).

    The nearest-code search stays MatMul + ArgMax in float, as in v1; the coarse levels are
    tanh, scale, round: all exportable and quantisation-friendly."""

    def __init__(self, tok: TwoLayerTokenizer) -> None:
        super().__init__()
        self.encoder = tok.encoder
        self.coarse_head = tok.coarse_head
        self.fsq = tok.fsq
        self.register_buffer("codebook_t", tok.quantizer.normalized_codebook().detach().t().contiguous())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, h = encoder_features(self.encoder, image * 2 - 1)
        n, d, hh, ww = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(n, hh * ww, d)
        fine = torch.matmul(flat, self.codebook_t).argmax(dim=-1).reshape(n, hh, ww)
        return fine, self.fsq.levels_of(self.coarse_head(h))
