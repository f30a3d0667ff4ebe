"""The Halton-MaskGIT class-conditional transformer, rebuilt so the public ``ImageNet_*.pth`` load.

Besnier et al., "Halton Scheduler for Masked Generative Image Transformers" (ICLR 2025);
architecture and key names read from valeoai/Halton-MaskGIT, ``Network/transformer.py`` (the
checkpoints live at huggingface.co/llvictorll/Halton-MaskGIT). A DiT-style bidirectional
transformer over LlamaGen VQ-16 tokens (16384 codes + mask id 16384):

- token embedding (K + 1 rows) plus a learned absolute position table of input_size**2 rows,
  row-major over the token grid; ``register`` learned tokens appended after the grid;
- blocks of weight-only RMSNorm (eps 1e-5) modulated by adaLN (shift, scale, gate for attention
  then for the MLP, from SiLU -> Linear(D, 6D) of the class embedding), bias-free q/k/v/o with
  parameter-free RMS normalisation of q and k over the full width, and a bias-free SwiGLU MLP of
  width round_up(int(2 * 4D / 3), 256);
- a final adaLN (RMSNorm with weight and bias, shift then scale) and a head over K + 1 outputs
  whose weight is tied to the token embedding.

The class embedding has 1001 rows: row 1000 is the null class trained with label dropout (10%)
for classifier-free guidance. Restoring a grid without a label uses that null class.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.public.checkpoint import CheckpointError, CheckpointMismatch, load_exact, read_state_dict

CONTAINERS = ("model_state_dict", "model", "state_dict")

# (hidden_dim, depth, heads) from the repo's size table. Published files: ImageNet_256_{tiny,small,
# base}.pth (16x16 tokens) and ImageNet_384_{small,base,large}.pth (24x24); the README's parameter
# counts (23M, 69M, 142M, 480M) match these sizes. No xlarge checkpoint has been published.
VARIANTS: dict[str, tuple[int, int, int]] = {
    "tiny": (384, 6, 6),
    "small": (512, 12, 6),  # 512 // 6 = 85: attention runs at width 510, as the weights do
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "xlarge": (1152, 28, 16),
}


@dataclass(frozen=True)
class HaltonMaskGITConfig:
    hidden_dim: int = 384
    depth: int = 6
    heads: int = 6
    codebook_size: int = 16384
    input_size: int = 16  # side of the token grid the position table covers
    nclass: int = 1000
    register: int = 1

    @classmethod
    def variant(cls, size: str, **overrides: int) -> HaltonMaskGITConfig:
        if size not in VARIANTS:
            raise ValueError(f"unknown Halton-MaskGIT size {size!r}; valid: {', '.join(VARIANTS)}")
        d, depth, heads = VARIANTS[size]
        return cls(hidden_dim=d, depth=depth, heads=heads, **overrides)

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def null_class(self) -> int:
        return self.nclass

    @property
    def max_grid(self) -> int:
        return self.input_size

    @property
    def ffn_dim(self) -> int:
        h = int(2 * (4 * self.hidden_dim) / 3)
        return 256 * math.ceil(h / 256)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, bias: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _rms(x, self.eps) * self.weight
        return y + self.bias if self.bias is not None else y


def _rms(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        inner = heads * self.head_dim
        self.wq = nn.Linear(dim, inner, bias=False)
        self.wk = nn.Linear(dim, inner, bias=False)
        self.wv = nn.Linear(dim, inner, bias=False)
        self.wo = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(n, t, self.heads, self.head_dim).transpose(1, 2)

        # q and k are RMS-normalised over the whole width before the split into heads.
        q, k, v = _rms(self.wq(x)), _rms(self.wk(x)), self.wv(x)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.wo(out.transpose(1, 2).reshape(n, t, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: HaltonMaskGITConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # adaLN modulation
        self.ln1 = RMSNorm(d, bias=False)
        self.attn = Attention(d, cfg.heads)
        self.ln2 = RMSNorm(d, bias=False)
        self.ff = FeedForward(d, cfg.ffn_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.mlp(cond).chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.attn(_modulate(self.ln1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.ff(_modulate(self.ln2(x), shift2, scale2))


class Stack(nn.Module):
    def __init__(self, cfg: HaltonMaskGITConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))


class AdaNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_final = RMSNorm(dim, bias=True)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.mlp(cond).chunk(2, dim=1)
        return _modulate(self.norm_final(x), shift, scale)


class HaltonMaskGIT(nn.Module):
    """forward(ids (N, s, s), labels) -> (N, s, s, K + 1) raw logits, s = ``cfg.input_size``."""

    def __init__(self, cfg: HaltonMaskGITConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = cfg or HaltonMaskGITConfig()
        self.cls_emb = nn.Embedding(c.nclass + 1, c.hidden_dim)
        self.tok_emb = nn.Embedding(c.codebook_size + 1, c.hidden_dim)
        self.pos_emb = nn.Embedding(c.input_size**2, c.hidden_dim)
        self.transformer = Stack(c)
        self.last_norm = AdaNorm(c.hidden_dim)
        self.head = nn.Linear(c.hidden_dim, c.codebook_size + 1)
        self.head.weight = self.tok_emb.weight
        if c.register > 0:
            self.reg_tokens = nn.Embedding(c.register, c.hidden_dim)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Full-grid logits over the K codes and the mask id; ``labels`` None means the null class."""
        c = self.cfg
        n, h, w = ids.shape
        if (h, w) != (c.input_size, c.input_size):
            raise ValueError(f"grid {h}x{w} is not the model's {c.input_size}x{c.input_size}; use logits()")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > c.mask_id):
            raise ValueError(f"ids must lie in [0, {c.mask_id}] (mask id included)")
        if labels is None:
            labels = torch.full((n,), c.null_class, dtype=torch.long, device=ids.device)
        elif labels.shape != (n,) or int(labels.min()) < 0 or int(labels.max()) > c.null_class:
            raise ValueError(f"labels must be ({n},) class ids in [0, {c.null_class}]")
        cond = self.cls_emb(labels)
        x = self.tok_emb(ids.reshape(n, h * w)) + self.pos_emb.weight.unsqueeze(0)
        if c.register > 0:
            x = torch.cat([x, self.reg_tokens.weight.unsqueeze(0).expand(n, -1, -1)], dim=1)
        for block in self.transformer.layers:
            x = block(x, cond)
        x = self.last_norm(x[:, : h * w], cond)
        return self.head(x).reshape(n, h, w, -1)

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N, h, w) ids, mask id at unknown cells -> (N, h, w, K) logits over the codebook only.

        With ``labels`` None the null (unconditional) class is used: restoring knows no ImageNet
        label. Grids up to ``input_size`` a side are placed top-left in an input_size grid whose
        other cells hold the mask id (the model only ever saw full grids with masked cells, and its
        position table is row-major over the full grid), then cropped back. The mask id's own
        logit is dropped so it can never be chosen.
        """
        c = self.cfg
        n, h, w = ids.shape
        if h > c.input_size or w > c.input_size:
            raise ValueError(f"grid {h}x{w} exceeds the model's {c.input_size}x{c.input_size}; tile it")
        full = ids.new_full((n, c.input_size, c.input_size), c.mask_id)
        full[:, :h, :w] = ids
        return self(full, labels)[:, :h, :w, : c.codebook_size]


class HaltonRestoreAdapter(nn.Module):
    """Unconditional (null-class) Halton-MaskGIT in the shape ``models.restore.Restorer`` drives.

    ``adapter(ids) -> (N, h, w, K)`` with ``cfg.codebook_size``, ``cfg.mask_id`` and
    ``cfg.max_grid`` (the model's token grid side, 16 for the ImageNet-256 checkpoints).
    """

    def __init__(self, model: HaltonMaskGIT) -> None:
        super().__init__()
        self.model = model
        self.cfg = model.cfg

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.logits(ids)


def infer_config(sd: dict[str, torch.Tensor], size: str = "auto", source: str | Path = "state dict"
                 ) -> HaltonMaskGITConfig:
    """The config whose shapes the state dict has; heads come from the published size table."""
    needed = ["tok_emb.weight", "cls_emb.weight", "pos_emb.weight"]
    absent = [k for k in needed if k not in sd]
    if absent:
        raise CheckpointMismatch(f"{source}: not a Halton-MaskGIT state dict; missing keys: {', '.join(absent)}",
                                 absent, [], [])
    hidden = sd["tok_emb.weight"].shape[1]
    n_pos = sd["pos_emb.weight"].shape[0]
    side = math.isqrt(n_pos)
    if side * side != n_pos:
        raise CheckpointError(f"{source}: pos_emb has {n_pos} rows, not a square token grid")
    layer_ids = [int(m.group(1)) for k in sd if (m := re.match(r"transformer\.layers\.(\d+)\.", k))]
    depth = max(layer_ids) + 1 if layer_ids else 0
    found = next((name for name, (d, dep, _) in VARIANTS.items() if (d, dep) == (hidden, depth)), None)
    known = ", ".join(f"{k} ({d}x{dep})" for k, (d, dep, _) in VARIANTS.items())
    if found is None or (size != "auto" and size != found):
        what = found or f"width {hidden}, depth {depth}"
        raise CheckpointError(f"{source}: holds a {what} model, expected "
                              f"{size if size != 'auto' else 'a published size'}; known: {known}")
    reg = sd.get("reg_tokens.weight")
    return HaltonMaskGITConfig.variant(
        found, codebook_size=sd["tok_emb.weight"].shape[0] - 1, input_size=side,
        nclass=sd["cls_emb.weight"].shape[0] - 1, register=reg.shape[0] if reg is not None else 0)


def load_halton_maskgit(path: str | Path, size: str = "auto", device: str | torch.device = "cpu", *,
                        allow_pickle: bool = False) -> HaltonMaskGIT:
    """A Halton-MaskGIT from a local ``ImageNet_<res>_<size>.pth`` (``{"model_state_dict": ...}``), eval mode.

    ``size`` is "auto" (read from the tensor shapes) or one of ``VARIANTS``, checked against the
    file. Raises ValueError for an unknown size, FileNotFoundError, CheckpointError for an
    unreadable or other-sized file, CheckpointMismatch naming every bad key.
    """
    if size != "auto" and size not in VARIANTS:
        raise ValueError(f"unknown Halton-MaskGIT size {size!r}; valid: auto, {', '.join(VARIANTS)}")
    sd = read_state_dict(path, CONTAINERS, allow_pickle=allow_pickle)
    cfg = infer_config(sd, size, path)
    with torch.device("meta"):  # every tensor comes from the file: skip the random init
        model = HaltonMaskGIT(cfg)
    if "head.weight" not in sd:
        sd["head.weight"] = sd["tok_emb.weight"]  # tied weight, dropped by savers that de-duplicate
    load_exact(model, sd, path)
    model.head.weight = model.tok_emb.weight  # assignment untied them
    return model.eval().to(device)
