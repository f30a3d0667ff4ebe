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
    # Channels of tokenizer v2's coarse layer the model is conditioned on (0: none, as v1). The
    # coarse f16 values are always sent, so over the parts of the frame where no fine token was
    # sent they are the only evidence there is; they enter bilinearly upsampled to the fine grid
    # (``coarse_to_fine``) through zero-initialised projections, so a v1 model loads and starts
    # exactly as it was.
    coarse_channels: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MaskGITConfig:
        return cls(**d)

    @property
    def mask_id(self) -> int:
        return self.codebook_size


def coarse_to_fine(values: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Coarse values (N, C, hc, wc) at twice the fine cell size -> (N, C, h, w) on the fine grid.

    Bilinear (half-cell aligned) rather than nearest so each fine cell also gets where it sits in
    its coarse cell from the values themselves: the restorer runs on windows at any offset, where
    position parity is not something a learned position embedding can see. Computed over the
    whole frame before windowing so window borders see the same values as window centres."""
    if h > 2 * values.shape[-2] or w > 2 * values.shape[-1]:
        raise ValueError(f"coarse grid {tuple(values.shape[-2:])} is too small for a {h}x{w} fine grid")
    up = F.interpolate(values.float(), scale_factor=2, mode="bilinear", align_corners=False)
    return up[..., :h, :w]


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
        if torch.onnx.is_in_onnx_export() or (self.training and self.attn.dropout > 0):
            x = x + self.attn(h, h, h, need_weights=False)[0]
        else:
            x = x + self.attention(h)
        return x + self.mlp(self.norm2(x))

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """``self.attn`` through ``scaled_dot_product_attention``: the same weights and result,
        about twice as fast on CPU as ``nn.MultiheadAttention``'s fused eval path (measured on
        35 windows of 16x16 tokens, one thread: 47 vs 104 ms), which is most of a restore step.
        ONNX export keeps the module's own path, whose graph the exporters know."""
        n, t, d = h.shape
        heads = self.attn.num_heads
        qkv = F.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(n, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.attn.out_proj(o.transpose(1, 2).reshape(n, t, d))


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
        self.coarse_in: nn.Linear | None = None
        self.coarse_prior: nn.Linear | None = None
        if c.coarse_channels:
            self.coarse_in = nn.Linear(c.coarse_channels, c.dim)
            nn.init.zeros_(self.coarse_in.weight)
            nn.init.zeros_(self.coarse_in.bias)
            if self.interp_in is not None:
                # A direct coarse -> code-vector path, weighted by how few fine codes are known
                # nearby: far from sent tokens the interpolation prior is a blur of distant codes
                # and the coarse layer is the better start; zero-initialised.
                self.coarse_prior = nn.Linear(c.coarse_channels, c.latent_dim)
                nn.init.zeros_(self.coarse_prior.weight)
                nn.init.zeros_(self.coarse_prior.bias)

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

    def forward(self, ids: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_both(ids, coarse)[0]

    def forward_both(self, ids: torch.Tensor,
                     coarse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits (N, h, w, K), predicted code vectors (N, h, w, latent_dim) or None).

        ``coarse``: (N, C, h, w) coarse values already on the fine grid (``coarse_to_fine``);
        required by a model with ``coarse_channels`` (pass zeros when none arrived), refused by
        one without."""
        n, h, w = ids.shape
        if h > self.cfg.max_grid or w > self.cfg.max_grid:
            raise ValueError(f"window {h}x{w} exceeds max_grid {self.cfg.max_grid}; tile it")
        if (coarse is None) != (self.coarse_in is None):
            raise ValueError(f"this model takes {self.cfg.coarse_channels or 'no'} coarse channels; "
                             f"got {'none' if coarse is None else tuple(coarse.shape)}")
        pos = (self.pos_y[:h, None, :] + self.pos_x[None, :w, :]).reshape(h * w, -1)
        x = self.tok(ids.reshape(n, h * w)) + pos
        cf = None
        if coarse is not None and self.coarse_in is not None:
            if coarse.shape != (n, self.cfg.coarse_channels, h, w):
                raise ValueError(f"coarse {tuple(coarse.shape)} does not match ids {(n, h, w)} with "
                                 f"{self.cfg.coarse_channels} channels")
            cf = coarse.to(x.dtype).permute(0, 2, 3, 1)  # (N, h, w, C)
            x = x + self.coarse_in(cf).reshape(n, h * w, -1)
        prior = None
        if self.interp_in is not None:
            prior, density = self.interpolated_codes(ids)
            x = x + self.interp_in(torch.cat([prior, density], dim=-1)).reshape(n, h * w, -1)
            if cf is not None and self.coarse_prior is not None:
                prior = prior + (1 - density) * self.coarse_prior(cf)
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
