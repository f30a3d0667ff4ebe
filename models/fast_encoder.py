"""A light edge encoder for tokenizer v2, distilled from the shipped one.

Why: tokenizer v2's encoder is v1's frozen trunk (full 3x3 convolutions, 96 channels at 1/4
size, 192 at 1/8): about 16 GMAC per 768x512 frame, 230 ms on one Cortex-class core, most of
the edge's frame time. The fine token ids only need the 8-d unit code of each 8x8 cell and the
coarse levels only the 4 FSQ values of each 16x16 cell, so a student made of pixel-unshuffles,
1x1 convolutions and depthwise 5x5 blocks (about a tenth of the work) is trained to predict
exactly those (``models.train_fast_encoder``). Its outputs are the same vocabulary - v1's
codebook ids and v2's coarse levels - so everything downstream (wire, restorer, decoder) is
unchanged; only which id a borderline cell gets can differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FastEncoderConfig:
    stem_channels: int = 64  # at 1/4 size
    channels: int = 128  # at 1/8 size
    blocks: int = 3
    expand: int = 2
    coarse_channels: int = 96  # at 1/16 size
    code_dim: int = 8
    coarse_dim: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FastEncoderConfig:
        return cls(**d)


class DWBlock(nn.Module):
    """x + pw(silu(pw(dw5x5(x)))): wide receptive field for little arithmetic."""

    def __init__(self, ch: int, expand: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(ch, ch, 5, padding=2, groups=ch)
        self.pw1 = nn.Conv2d(ch, ch * expand, 1)
        self.pw2 = nn.Conv2d(ch * expand, ch, 1)
        nn.init.zeros_(self.pw2.weight)
        nn.init.zeros_(self.pw2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(F.silu(self.pw1(self.dw(x))))


class FastEncoder(nn.Module):
    """Image in [-1, 1] (N, 3, H, W), sides multiples of 16 -> (unit fine codes (N, D, H/8, W/8),
    coarse pre-activations (N, C, H/16, W/16)), the same quantities tokenizer v2's encoder gives."""

    def __init__(self, cfg: FastEncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FastEncoderConfig()
        s, c, cc = cfg.stem_channels, cfg.channels, cfg.coarse_channels
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, s, 1), nn.SiLU(),
                                  nn.Conv2d(s, s, 3, padding=1, groups=s), nn.SiLU())
        self.down = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * s, c, 1))
        self.blocks = nn.Sequential(*[DWBlock(c, cfg.expand) for _ in range(cfg.blocks)])
        self.fine = nn.Conv2d(c, cfg.code_dim, 1)
        self.coarse = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * c, cc, 1), DWBlock(cc, cfg.expand),
                                    nn.SiLU(), nn.Conv2d(cc, cfg.coarse_dim, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.down(self.stem(x)))
        return F.normalize(self.fine(F.silu(h)), dim=1), self.coarse(h)


def fold_unshuffle(unshuffle: nn.PixelUnshuffle, conv: nn.Conv2d) -> nn.Conv2d:
    """PixelUnshuffle(r) then a 1x1 conv == one r x r conv of stride r (the same sums, no
    full-size transpose): unshuffled channel c*r*r + i*r + j is input channel c at offset (i, j)."""
    r = unshuffle.downscale_factor
    cin = conv.in_channels // (r * r)
    out = nn.Conv2d(cin, conv.out_channels, r, stride=r)
    with torch.no_grad():
        out.weight.copy_(conv.weight.reshape(conv.out_channels, cin, r, r))
        out.bias.copy_(conv.bias)
    return out


class FoldedFastEncoder(nn.Module):
    """``FastEncoder`` with its pixel-unshuffles folded into strided convs: same outputs (to float
    rounding), about 12 ms less per 768x512 frame in ONNX Runtime on one core (the transposes)."""

    def __init__(self, enc: FastEncoder) -> None:
        super().__init__()
        st, dn, co = enc.stem, enc.down, enc.coarse
        self.stem = nn.Sequential(fold_unshuffle(st[0], st[1]), *st[2:])
        self.down = fold_unshuffle(dn[0], dn[1])
        self.blocks = enc.blocks
        self.fine = enc.fine
        self.coarse = nn.Sequential(fold_unshuffle(co[0], co[1]), *co[2:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.down(self.stem(x)))
        return F.normalize(self.fine(F.silu(h)), dim=1), self.coarse(h)


class FastEncoderExport(nn.Module):
    """What the edge runs: image in [0, 1] -> (fine indices, coarse levels), as ``Encoder2Export``.

    ``codebook`` is v1's normalised codebook (K, D); ``fsq`` tokenizer v2's FSQ module. The
    unshuffles are folded into strided convs and the nearest code is a TopK of 1 (ONNX TopK
    puts the lower index first on ties, as argmax does), which ONNX Runtime runs in half the
    time of ArgMax over 1024 codes."""

    def __init__(self, enc: FastEncoder, codebook: torch.Tensor, fsq: nn.Module) -> None:
        super().__init__()
        self.enc = FoldedFastEncoder(enc)
        self.fsq = fsq
        self.register_buffer("codebook_t", codebook.detach().t().contiguous())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, c = self.enc(image * 2 - 1)
        n, d, hh, ww = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(n, hh * ww, d)
        fine = torch.topk(torch.matmul(flat, self.codebook_t), 1, dim=-1).indices.reshape(n, hh, ww)
        return fine, self.fsq.levels_of(c)
