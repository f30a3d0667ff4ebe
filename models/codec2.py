"""numpy-in, numpy-out façade over tokenizer v2 (coarse f16 layer + fine f8 tokens) and its restorer.

The cloud's call is ``reconstruct``: the coarse layer always travels, the fine tokens only where
the edge chose to send them, and either can lose fragments on the way. So:

1. lost coarse cells are filled from the coarse cells that arrived (normalised-convolution
   interpolation of their FSQ *values*: FSQ values are coordinates, so a weighted mean of the
   neighbours is a sensible estimate, which a codebook index would not be);
2. the fine cells that were not sent or were lost are restored by the coarse-conditioned MaskGIT
   (sent tokens are never overwritten);
3. the decoder gets the sent tokens' codes, the restorer's regressed code vectors at the cells
   it filled (flagged as estimates in the known map), and the coarse values.

``decode_coarse_only`` is the decoder alone on the coarse layer (no restorer): the cheap
preview, and what a frame whose fine layer never arrived costs at least.

Images are uint8 HxWx3 RGB. For an H x W image the fine grid is (ceil(H/8), ceil(W/8)) and the
coarse grid (C, ceil(H/16), ceil(W/16)) of FSQ level indices (0..L_i-1 per channel) — the same
shapes the edge's ``Encoder2Export`` produces for H, W multiples of 16.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from models.checkpoints import load_weights
from models.codec import check_pair, load_maskgit, merge_latents, pick_device, to_uint8
from models.interp import interpolate_codes
from models.maskgit import MaskGITConfig
from models.registry import ModelNotFound, files_for
from models.restore import RestoreConfig, Restorer
from models.tokenizer2 import Tokenizer2Config, TwoLayerTokenizer

log = logging.getLogger(__name__)

V2_TOKEN_PARTS = ("encoder.", "quantizer.", "coarse_head.", "fsq.")  # what decides fine ids and coarse levels
COARSE_SIGMA = 1.0  # cells; lost coarse cells are filled from neighbours about a cell away
# Restore defaults for v2, chosen so restore + decode of a 768x512 frame stays within 4 s on the
# project's 2-core CPU (see MODEL_CARD.md, "Restore speed").
RESTORE_V2 = RestoreConfig(steps=4, window=16, overlap=2)


def random_maskgit2(coarse_channels: int, latent_dim: int) -> MaskGITConfig:
    """A small coarse-conditioned restorer with the full v2 path (latent head, interpolation
    prior, coarse inputs), for tests and CI without weights."""
    return MaskGITConfig(depth=2, dim=64, heads=4, latent_dim=latent_dim, interp_sigma=1.5,
                         coarse_channels=coarse_channels)


class CodecInputError(ValueError):
    """Grids, maps, levels and sizes handed to the codec do not fit together."""


def load_tokenizer2(tokenizer_id: int = 3, device: str | None = None, random_init: bool = False) -> TwoLayerTokenizer:
    if random_init:
        tok = TwoLayerTokenizer(Tokenizer2Config())
    else:
        path = files_for(tokenizer_id).path("tokenizer")
        if not path.exists():
            raise ModelNotFound(f"tokenizer v2 weights missing: {path}")
        state, meta = load_weights(path)
        tok = TwoLayerTokenizer(Tokenizer2Config.from_dict(meta["config"]))
        tok.load_state_dict(state)
    return tok.eval().to(pick_device(device))


class TokenCodec2:
    def __init__(self, tokenizer: TwoLayerTokenizer, restorer: Restorer, tokenizer_id: int = 3) -> None:
        if restorer.coarse_channels != len(tokenizer.cfg.coarse_levels):
            raise ModelNotFound(f"restorer takes {restorer.coarse_channels} coarse channels, tokenizer has "
                                f"{len(tokenizer.cfg.coarse_levels)}: not a tokenizer v2 restorer")
        self.tokenizer = tokenizer
        self.restorer = restorer
        self.tokenizer_id = tokenizer_id
        self.device = restorer.device

    @classmethod
    def load(cls, tokenizer_id: int = 3, device: str | None = None, random_init: bool = False,
             restore: RestoreConfig | None = None) -> TokenCodec2:
        """Shipped weights of ``tokenizer_id`` (or small random ones for tests);
        ``restore`` defaults to ``RESTORE_V2``."""
        dev = pick_device(device)
        tok = load_tokenizer2(tokenizer_id, str(dev), random_init)
        cfg = random_maskgit2(len(tok.cfg.coarse_levels), tok.cfg.fine.code_dim)
        mg = load_maskgit(tokenizer_id, str(dev), random_init, random_cfg=cfg)
        codebook = tok.quantizer.normalized_codebook().detach()
        if random_init:
            mg.set_codebook(codebook)
        else:
            check_pair(tokenizer_id, tok, V2_TOKEN_PARTS)
        log.info("loaded tokenizer %d (%s) on %s", tokenizer_id, "random init" if random_init else "shipped", dev)
        return cls(tok, Restorer(mg, restore or RESTORE_V2, dev, codebook=codebook), tokenizer_id)

    @property
    def factor(self) -> int:
        return self.tokenizer.factor

    @property
    def coarse_factor(self) -> int:
        return self.tokenizer.coarse_factor

    @property
    def coarse_levels(self) -> tuple[int, ...]:
        return self.tokenizer.cfg.coarse_levels

    def grid_shapes(self, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int, int]]:
        """Image (H, W) -> (fine grid (h, w), coarse grid (C, hc, wc))."""
        h, w = size
        f, fc = self.factor, self.coarse_factor
        return (-(-h // f), -(-w // f)), (len(self.coarse_levels), -(-h // fc), -(-w // fc))

    @torch.no_grad()
    def encode(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: (fine ids (h, w) int64, coarse levels (C, hc, wc) int64)."""
        out = []
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise CodecInputError(f"images must be uint8 HxWx3, got {im.dtype} {im.shape}")
            x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float().div(255)  # copy: may be read-only
            fine, coarse = self.tokenizer.encode(x.to(self.device))
            out.append((fine[0].cpu().numpy().astype(np.int64), coarse[0].cpu().numpy().astype(np.int64)))
        return out

    @torch.no_grad()
    def coarse_values(self, levels: np.ndarray, known: np.ndarray | None = None) -> torch.Tensor:
        """Coarse levels (C, hc, wc) and the map of cells that arrived (hc, wc) -> values (1, C,
        hc, wc) in [-1, 1]; lost cells interpolated from the arrived ones, zeros if none arrived
        (zero is the middle level of every channel, what the decoder saw for "no information")."""
        lv = np.asarray(levels)
        c = len(self.coarse_levels)
        if lv.ndim != 3 or lv.shape[0] != c:
            raise CodecInputError(f"coarse levels must be ({c}, hc, wc), got {lv.shape}")
        k = np.ones(lv.shape[1:], dtype=bool) if known is None else np.asarray(known, dtype=bool)
        if k.shape != lv.shape[1:]:
            raise CodecInputError(f"coarse known map {k.shape} does not match coarse grid {lv.shape[1:]}")
        if not k.any():
            return torch.zeros(1, c, *lv.shape[1:], device=self.device)
        top = np.array(self.coarse_levels).reshape(-1, 1, 1)
        bad = k[None] & ((lv < 0) | (lv >= top))
        if bad.any():
            ch = int(np.argwhere(bad)[0][0])
            raise CodecInputError(f"coarse level out of range in channel {ch}: levels per channel are {self.coarse_levels}")
        lt = torch.from_numpy(np.where(k[None], lv, 0).astype(np.int64))[None].to(self.device)
        values = self.tokenizer.coarse_values(lt)
        if k.all():
            return values
        kt = torch.from_numpy(k)[None, None].to(self.device, values.dtype)
        return interpolate_codes(values, kt, COARSE_SIGMA)[0]

    def _check(self, i: int, fine: np.ndarray, known: np.ndarray, coarse: np.ndarray, coarse_known: np.ndarray,
               size: tuple[int, int]) -> None:
        (h, w), (c, hc, wc) = self.grid_shapes(size)
        if np.shape(fine) != (h, w) or np.shape(known) != (h, w):
            raise CodecInputError(f"image {i}: a {size[0]}x{size[1]} image has a ({h}, {w}) fine grid; "
                                  f"got grid {np.shape(fine)} and known map {np.shape(known)}")
        if np.shape(coarse) != (c, hc, wc) or np.shape(coarse_known) != (hc, wc):
            raise CodecInputError(f"image {i}: a {size[0]}x{size[1]} image has a ({c}, {hc}, {wc}) coarse grid; "
                                  f"got levels {np.shape(coarse)} and known map {np.shape(coarse_known)}")
        k = np.asarray(known, dtype=bool)
        kb = self.tokenizer.cfg.fine.codebook_size
        if k.any() and (np.asarray(fine)[k].min() < 0 or np.asarray(fine)[k].max() >= kb):
            raise CodecInputError(f"image {i}: known fine ids must be in [0, {kb})")

    @torch.no_grad()
    def reconstruct(self, fine_grids: list[np.ndarray], known_maps: list[np.ndarray], coarse_levels: list[np.ndarray],
                    coarse_known: list[np.ndarray], sizes: list[tuple[int, int]],
                    seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(restored fine token grids (h, w) int64, uint8 images).

        ``fine_grids`` hold the sent ids where ``known_maps`` is True (anything elsewhere);
        ``coarse_levels`` the FSQ levels where ``coarse_known`` is True. Known fine tokens come
        back unchanged; every other fine cell is restored."""
        n = len(fine_grids)
        if not (len(known_maps) == len(coarse_levels) == len(coarse_known) == len(sizes) == n):
            raise CodecInputError("fine_grids, known_maps, coarse_levels, coarse_known and sizes differ in number")
        for i in range(n):
            self._check(i, fine_grids[i], known_maps[i], coarse_levels[i], coarse_known[i], sizes[i])
        values = [self.coarse_values(lv, k) for lv, k in zip(coarse_levels, coarse_known)]
        grids = [np.where(np.asarray(k, bool), g, 0).astype(np.int64) for g, k in zip(fine_grids, known_maps)]
        known = [np.asarray(k, dtype=bool) for k in known_maps]
        tokens, latents = self.restorer.restore_with_latents(
            grids, known, seed=seed, coarse=[v[0].cpu().numpy() for v in values])
        images = []
        for t, k, lat, v, size in zip(tokens, known, latents, values, sizes):
            idx = torch.from_numpy(t)[None].to(self.device)
            codes = self.tokenizer.quantizer.lookup(idx)
            merged = merge_latents(codes, lat)
            if merged is None:  # no regressed vectors: restored tokens' codes, flagged as estimates
                merged = codes, torch.from_numpy(k)[None, None].to(self.device, codes.dtype)
            images.append(to_uint8(self.tokenizer.decode_codes(*merged, v, size)[0]))
        return tokens, images

    @torch.no_grad()
    def decode_coarse_only(self, coarse_levels: list[np.ndarray], coarse_known: list[np.ndarray],
                           sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """uint8 images from the coarse layer alone (no fine token, no restorer): the decoder
        gets zero fine codes all flagged unknown, as it was trained for coarse-only crops."""
        if not (len(coarse_levels) == len(coarse_known) == len(sizes)):
            raise CodecInputError("coarse_levels, coarse_known and sizes differ in number")
        out = []
        d = self.tokenizer.cfg.fine.code_dim
        for i, (lv, k, size) in enumerate(zip(coarse_levels, coarse_known, sizes)):
            _, shape_c = self.grid_shapes(size)
            if np.shape(lv) != shape_c:
                raise CodecInputError(f"image {i}: a {size[0]}x{size[1]} image has a {shape_c} coarse grid, "
                                      f"got {np.shape(lv)}")
            v = self.coarse_values(lv, k)
            zeros = torch.zeros(1, d, 2 * shape_c[1], 2 * shape_c[2], device=self.device)
            out.append(to_uint8(self.tokenizer.decode_codes(zeros, zeros[:, :1], v, size)[0]))
        return out
