"""numpy-in, numpy-out façade over the tokenizer and the restorer, as the cloud and demo use it.

The verbs mirror the edge's stages: ``encode(image) -> tokens``, ``restore(tokens, known)
-> tokens``, ``decode(tokens) -> image``. ``reconstruct(tokens, known) -> (tokens, image)`` is the
cloud's one call: restore, then decode with the restorer's regressed code vectors at the cells it
filled (when it has a latent head), which is where most of its PSNR over a token guess comes from.
Images are uint8 HxWx3 RGB; grids are int64 (h, w).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from models.checkpoints import load_weights, read_metadata
from models.maskgit import MaskGIT, MaskGITConfig
from models.registry import ModelNotFound, files_for
from models.restore import RestoreConfig, Restorer
from models.tokenizer import TokenizerConfig, VQTokenizer

V1_TOKEN_PARTS = ("encoder.", "quantizer.")  # what decides v1 token ids

log = logging.getLogger(__name__)


def pick_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tokenizer(tokenizer_id: int = 1, device: str | None = None, random_init: bool = False) -> VQTokenizer:
    files = files_for(tokenizer_id)
    if random_init:
        tok = VQTokenizer(TokenizerConfig())
    else:
        path = files.path("tokenizer")
        if not path.exists():
            raise ModelNotFound(f"tokenizer weights missing: {path}")
        state, meta = load_weights(path)
        tok = VQTokenizer(TokenizerConfig.from_dict(meta["config"]))
        tok.load_state_dict(state)
    return tok.eval().to(pick_device(device))


RANDOM_MASKGIT = MaskGITConfig(depth=2, dim=64, heads=4)  # random_init: small, for tests and CI


def load_maskgit(tokenizer_id: int = 1, device: str | None = None, random_init: bool = False,
                 random_cfg: MaskGITConfig = RANDOM_MASKGIT) -> MaskGIT:
    """The shipped restorer of ``tokenizer_id``, or one built from ``random_cfg`` (``random_init``)."""
    files = files_for(tokenizer_id)
    if random_init:
        model = MaskGIT(random_cfg)
    else:
        path = files.path("maskgit")
        if not path.exists():
            raise ModelNotFound(f"MaskGIT weights missing: {path}")
        state, meta = load_weights(path)
        model = MaskGIT(MaskGITConfig.from_dict(meta["config"]))
        model.load_state_dict(state)
    return model.eval().to(pick_device(device))


def check_pair(tokenizer_id: int, tok: torch.nn.Module, prefixes: tuple[str, ...] = V1_TOKEN_PARTS) -> None:
    """Refuse a restorer trained on another tokenizer's tokens: it would restore garbage quietly.

    ``prefixes``: the tokenizer's parameters that decide what the restorer sees (for v2 the
    coarse head too)."""
    from models.train_maskgit import encoder_fingerprint

    expected = read_metadata(files_for(tokenizer_id).path("maskgit")).get("tokenizer_fingerprint")
    actual = encoder_fingerprint(tok, prefixes)
    if expected is not None and expected != actual:
        raise ModelNotFound(f"MaskGIT weights were trained on tokenizer {expected}, shipped tokenizer is {actual}")


def merge_latents(codes: torch.Tensor, lat: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Token codes (1, D, h, w) and the restorer's regressed vectors (h, w, D), NaN where it
    estimated nothing -> (codes with the estimates in place, (1, 1, h, w) map: 1 where the code
    is a token's own, 0 where estimated), or None when nothing was estimated. The decoder is told
    which codes are estimates so it can render them as such."""
    if lat is None or not np.isfinite(lat).any():
        return None
    lt = torch.from_numpy(np.ascontiguousarray(lat, dtype=np.float32)).permute(2, 0, 1)[None].to(codes.device)
    est = torch.isfinite(lt)
    return torch.where(est, lt, codes), (~est[:, :1]).to(codes.dtype)


class TokenCodec:
    def __init__(self, tokenizer: VQTokenizer, restorer: Restorer, tokenizer_id: int = 1) -> None:
        self.tokenizer = tokenizer
        self.restorer = restorer
        self.tokenizer_id = tokenizer_id
        self.device = restorer.device

    @classmethod
    def load(cls, tokenizer_id: int = 1, device: str | None = None, random_init: bool = False,
             restore: RestoreConfig | None = None) -> TokenCodec:
        dev = pick_device(device)
        tok = load_tokenizer(tokenizer_id, str(dev), random_init)
        mg = load_maskgit(tokenizer_id, str(dev), random_init)
        log.info("loaded tokenizer %d (%s) on %s", tokenizer_id, "random init" if random_init else "shipped", dev)
        if not random_init:
            check_pair(tokenizer_id, tok)
        codebook = tok.quantizer.normalized_codebook().detach()
        return cls(tok, Restorer(mg, restore, dev, codebook=codebook), tokenizer_id)

    @property
    def factor(self) -> int:
        return self.tokenizer.factor

    @torch.no_grad()
    def encode(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for im in images:
            x = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
            out.append(self.tokenizer.encode(x.to(self.device))[0].cpu().numpy().astype(np.int64))
        return out

    def restore(self, grids: list[np.ndarray], known: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
        return self.restorer.restore(grids, known, seed=seed)

    @torch.no_grad()
    def decode(self, grids: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        out = []
        for g, size in zip(grids, sizes):
            idx = torch.from_numpy(np.asarray(g, dtype=np.int64))[None].to(self.device)
            out.append(to_uint8(self.tokenizer.decode(idx, size=size)[0]))
        return out

    @torch.no_grad()
    def decode_latents(self, grids: list[np.ndarray], latents: list[np.ndarray | None],
                       sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Decode with ``latents`` (h, w, D) wherever they are finite, the tokens' codes elsewhere."""
        out = []
        for g, lat, size in zip(grids, latents, sizes):
            idx = torch.from_numpy(np.asarray(g, dtype=np.int64))[None].to(self.device)
            merged = merge_latents(self.tokenizer.quantizer.lookup(idx), lat)
            if merged is None:  # nothing restored: the plain token decode
                out.append(to_uint8(self.tokenizer.decode(idx, size=size)[0]))
            else:
                out.append(to_uint8(self.tokenizer.decode_codes(*merged, size)[0]))
        return out

    def reconstruct(self, grids: list[np.ndarray], known: list[np.ndarray], sizes: list[tuple[int, int]],
                    seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(restored token grids, images): restore, then decode with the regressed code vectors."""
        tokens, latents = self.restorer.restore_with_latents(grids, known, seed=seed)
        return tokens, self.decode_latents(tokens, latents, sizes)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return (y.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
