"""The LlamaGen VQ-16 image tokenizer, rebuilt so the public ``vq_ds16_c2i.pt`` loads strictly.

Sun et al., "Autoregressive Model Beats Diffusion: Llama for Scalable Image Generation" (2024);
architecture and key names read from FoundationVision/LlamaGen,
``tokenizer/tokenizer_image/vq_model.py``. A taming-style convolutional VQGAN: GroupNorm(32,
eps 1e-6) + SiLU residual blocks, channels 128 x (1, 1, 2, 2, 4), two residual blocks per level
(three on the decoder side), single-head self-attention only at the lowest resolution and in
the middle, four stride-2 convolutions (16x downsampling), z_channels 256 squeezed to 8-d codes
by ``quant_conv``. Latents and the 16384 codes are both l2-normalised before the nearest-code
search, so the search is a cosine match. Images are in [-1, 1] inside the network.

Module attributes mirror the checkpoint's keys (``encoder.conv_blocks.4.attn.1.q.weight``,
``decoder.conv_blocks.0.upsample.conv.weight``, ``quantize.embedding.weight``), which is why the
levels are small modules with ``res``/``attn`` lists rather than a flatter layout.

The API mirrors ``models.tokenizer.VQTokenizer``: ``encode(image in [0, 1]) -> indices`` and
``decode(indices) -> image in [0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.public.checkpoint import load_exact, read_state_dict

# Where the state dict may sit in the file; the LlamaGen demos prefer EMA weights when present.
CONTAINERS = ("ema", "model", "state_dict")
_USAGE_KEY = "quantize.codebook_used"


@dataclass(frozen=True)
class LlamaGenVQConfig:
    codebook_size: int = 16384
    codebook_dim: int = 8
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    num_res_blocks: int = 2
    usage_window: int = 65536  # length of the training-only code-usage buffer stored in the file

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=ch, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        # Identity has no parameters, so equal-width blocks carry no shortcut keys, as in the file.
        self.nin_shortcut: nn.Module = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections, scaled by 1/sqrt(C)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _group_norm(ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, 1, c, h * w).transpose(2, 3)

        out = F.scaled_dot_product_attention(tokens(self.q(y)), tokens(self.k(y)), tokens(self.v(y)))
        return x + self.proj_out(out.transpose(2, 3).reshape(n, c, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pad right and bottom only: the asymmetric padding the weights were trained with.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution: residual blocks, attention after each when ``attn``, then an optional resample."""

    def __init__(self, cin: int, cout: int, blocks: int, attn: bool, resample: str | None) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout) for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(cout) for _ in range(blocks if attn else 0))
        self.resample = resample
        if resample == "down":
            self.downsample = Downsample(cout)
        elif resample == "up":
            self.upsample = Upsample(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if self.resample == "down":
            x = self.downsample(x)
        elif self.resample == "up":
            x = self.upsample(x)
        return x


def _middle(ch: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(ch, ch), AttnBlock(ch), ResnetBlock(ch, ch)])


class Encoder(nn.Module):
    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        last = len(cfg.ch_mult) - 1
        levels, cin = [], cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            cout = cfg.ch * mult
            levels.append(Level(cin, cout, cfg.num_res_blocks, attn=i == last,
                                resample="down" if i != last else None))
            cin = cout
        self.conv_blocks = nn.ModuleList(levels)
        self.mid = _middle(cin)
        self.norm_out = _group_norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in [*self.conv_blocks, *self.mid]:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        last = len(cfg.ch_mult) - 1
        cin = cfg.ch * cfg.ch_mult[last]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _middle(cin)
        levels = []
        for i in reversed(range(len(cfg.ch_mult))):
            cout = cfg.ch * cfg.ch_mult[i]
            levels.append(Level(cin, cout, cfg.num_res_blocks + 1, attn=i == last,
                                resample="up" if i != 0 else None))
            cin = cout
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = _group_norm(cin)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in [*self.mid, *self.conv_blocks]:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    """Cosine nearest-code lookup over an l2-normalised codebook."""

    _ROWS_PER_CHUNK = 4096  # bounds the (rows x K) similarity matrix for large images

    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_dim)
        # Training-time usage statistics; kept only so the file's key loads.
        self.register_buffer("codebook_used", torch.zeros(cfg.usage_window))

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=-1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) latents -> (N, h, w) int64 code indices."""
        n, d, h, w = z.shape
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=-1)
        cb = self.codebook()
        # For unit vectors the smallest squared distance is the largest dot product.
        idx = torch.cat([(rows @ cb.T).argmax(dim=1) for rows in flat.split(self._ROWS_PER_CHUNK)])
        return idx.reshape(n, h, w)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(N, h, w) indices -> (N, D, h, w) normalised code vectors."""
        return self.codebook()[idx].permute(0, 3, 1, 2).contiguous()


class LlamaGenVQ(nn.Module):
    """encode(image) -> indices and decode(indices) -> image, for any image size."""

    def __init__(self, cfg: LlamaGenVQConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LlamaGenVQConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)
        self.quantize = Quantizer(self.cfg)
        self.quant_conv = nn.Conv2d(self.cfg.z_channels, self.cfg.codebook_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.cfg.codebook_dim, self.cfg.z_channels, 1)

    @property
    def factor(self) -> int:
        return self.cfg.factor

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> (N, ceil(H/16), ceil(W/16)) int64 token indices."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) image batch, got shape {tuple(image.shape)}")
        f = self.factor
        ph, pw = (-image.shape[2]) % f, (-image.shape[3]) % f
        x = image * 2 - 1
        if ph or pw:
            # Replicate padding keeps border tokens close to the real content beside them.
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.quantize.indices(self.quant_conv(self.encoder(x)))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(N, h, w) indices -> (N, 3, 16h, 16w) float in [0, 1], cropped to ``size`` when given."""
        k = self.cfg.codebook_size
        if indices.ndim != 3:
            raise ValueError(f"expected (N, h, w) indices, got shape {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= k):
            raise ValueError(f"indices must lie in [0, {k}), got [{int(indices.min())}, {int(indices.max())}]")
        y = self.decoder(self.post_quant_conv(self.quantize.lookup(indices.long())))
        y = ((y + 1) / 2).clamp(0, 1)
        return y[..., : size[0], : size[1]] if size is not None else y


def load_llamagen_vq(path: str | Path, device: str | torch.device = "cpu", *,
                     allow_pickle: bool = False) -> LlamaGenVQ:
    """The VQ-16 tokenizer from a local ``vq_ds16_c2i.pt`` (``{"model": state_dict, ...}``), in eval mode.

    Raises FileNotFoundError, CheckpointError for an unreadable file, and CheckpointMismatch
    naming the missing, unexpected and wrongly shaped keys for a file of another model.
    """
    sd = read_state_dict(path, CONTAINERS, allow_pickle=allow_pickle)
    with torch.device("meta"):  # every tensor comes from the file: skip the random init
        model = LlamaGenVQ()
    if _USAGE_KEY not in sd and any(k.startswith("quantize.") for k in sd):
        sd[_USAGE_KEY] = torch.zeros(model.cfg.usage_window)  # a statistic; some savers omit it
    load_exact(model, sd, path)
    return model.eval().to(device)
