"""A small bidirectional transformer over token windows, trained MaskGIT-style.

The restorer sees a window of at most 32x32 tokens (trained on 16x16) where masked cells hold a
dedicated mask id, and predicts a distribution over the codebook at every cell. Sized for CPU
training and inference: pre-norm blocks, learned 2-D factorised position embeddings so any
window up to ``max_grid`` works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.interp import interpolate_codes


@dataclass(frozen=True)
class MaskGITConfig:
    codebook_size: int = 1024
    dim: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    max_grid: int = 32
    dropout: float = 0.0
    # Size of the tokenizer's code vectors when the model also regresses them (0: no latent head).
    # Token ids are what the link carries, but the decoder takes code vectors: where the model is
    # unsure, the expected code vector decodes to fewer pixel errors than any single guessed token.
    latent_dim: int = 0
    # With a latent head: Gaussian width (in cells) of the normalised-convolution interpolation of
    # the known cells' code vectors that the model gets as an input feature and corrects as a
    # residual (0: off). Interpolation alone already beats nearest-token fill by about 1 dB; the
    # transformer then only has to learn what interpolation gets wrong, which few CPU steps can.
    interp_sigma: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MaskGITConfig:
        return cls(**d)

    @property
    def mask_id(self) -> int:
        return self.codebook_size


class Block(nn.Module):
    def __init__(self, cfg: MaskGITConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = nn.MultiheadAttention(cfg.dim, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(hidden, cfg.dim), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class MaskGIT(nn.Module):
    """(N, h, w) token ids with ``mask_id`` at unknown cells -> (N, h, w, K) logits."""

    def __init__(self, cfg: MaskGITConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or MaskGITConfig()
        c = self.cfg
        self.tok = nn.Embedding(c.codebook_size + 1, c.dim)
        self.pos_y = nn.Parameter(torch.zeros(c.max_grid, c.dim))
        self.pos_x = nn.Parameter(torch.zeros(c.max_grid, c.dim))
        nn.init.normal_(self.pos_y, std=0.02)
        nn.init.normal_(self.pos_x, std=0.02)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.codebook_size)
        self.latent_head = nn.Linear(c.dim, c.latent_dim) if c.latent_dim else None
        self.interp_in: nn.Linear | None = None
        if c.latent_dim and c.interp_sigma > 0:
            # The tokenizer's unit code vectors (K, D), saved with the weights and checked against
            # the tokenizer by its fingerprint; set by ``set_codebook`` before training.
            self.register_buffer("codebook", torch.zeros(c.codebook_size, c.latent_dim))
            self.interp_in = nn.Linear(c.latent_dim + 1, c.dim)
            nn.init.zeros_(self.latent_head.weight)  # type: ignore[union-attr]
            nn.init.zeros_(self.latent_head.bias)  # type: ignore[union-attr]

    @torch.no_grad()
    def set_codebook(self, codebook: torch.Tensor) -> None:
        if self.interp_in is None:
            raise ValueError("this model has no interpolation input (interp_sigma = 0 or no latent head)")
        self.codebook.copy_(torch.nn.functional.normalize(codebook.float(), dim=1))

    def interpolated_codes(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, h, w, D) codes (true at known cells, interpolated elsewhere) and (N, h, w, 1) the
        local density of known cells (how much the interpolation can be trusted)."""
        known = (ids != self.cfg.mask_id).unsqueeze(1).float()  # (N, 1, h, w)
        codes = self.codebook[ids.clamp(max=self.cfg.codebook_size - 1)].permute(0, 3, 1, 2)
        filled, density = interpolate_codes(codes, known, self.cfg.interp_sigma)
        return filled.permute(0, 2, 3, 1), density.permute(0, 2, 3, 1)

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor, seed: int = 0) -> None:
        """Start token embeddings and output weights from a random projection of the tokenizer's
        code vectors, so tokens that look alike start alike: on two CPU cores the restorer sees
        few steps, and this gives it the codebook's similarity structure for free."""
        k, d = codebook.shape
        if k != self.cfg.codebook_size:
            raise ValueError(f"codebook has {k} entries, model expects {self.cfg.codebook_size}")
        gen = torch.Generator().manual_seed(seed)
        proj = torch.randn(d, self.cfg.dim, generator=gen) / d**0.5
        emb = torch.nn.functional.normalize(codebook.float(), dim=1) @ proj
        self.tok.weight[:k] = emb * (0.02 / emb.std())
        self.head.weight.copy_(emb * (0.02 / emb.std()))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_both(ids)[0]

    def forward_both(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits (N, h, w, K), predicted code vectors (N, h, w, latent_dim) or None)."""
        n, h, w = ids.shape
        if h > self.cfg.max_grid or w > self.cfg.max_grid:
            raise ValueError(f"window {h}x{w} exceeds max_grid {self.cfg.max_grid}; tile it")
        pos = (self.pos_y[:h, None, :] + self.pos_x[None, :w, :]).reshape(h * w, -1)
        x = self.tok(ids.reshape(n, h * w)) + pos
        prior = None
        if self.interp_in is not None:
            prior, density = self.interpolated_codes(ids)
            x = x + self.interp_in(torch.cat([prior, density], dim=-1)).reshape(n, h * w, -1)
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        logits = self.head(x).reshape(n, h, w, -1)
        latents = None if self.latent_head is None else self.latent_head(x).reshape(n, h, w, -1)
        if latents is not None and prior is not None:
            latents = latents + prior  # a learned correction of the interpolation
        return logits, latents


def masked_ce(logits: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over masked cells only (known cells are copied, so learning them is waste)."""
    sel = masked.reshape(-1)
    if not bool(sel.any()):
        return logits.sum() * 0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1])[sel], target.reshape(-1)[sel])
