"""Tokenizer ids as they appear on the wire, and the optional static prior for entropy coding.

A tokenizer id is one byte in every fragment header. Ids are constants assigned here forever:
an id is never reused or renumbered, even after its tokenizer is retired (mark it retired in a
comment instead), because old captures and devices in the field still carry it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from link.errors import UnknownTokenizer

PRIOR_DIR_ENV = "TOKENCAST_PRIOR_DIR"


@dataclass(frozen=True)
class TokenizerSpec:
    id: int
    name: str
    codebook_size: int
    factor: int  # pixels per token along each axis
    # Two-layer tokenizers (wire v2) also have a coarse layer: a grid of ``coarse_factor`` pixels
    # per cell, each cell one level per channel (FSQ), channel i in [0, coarse_levels[i]).
    coarse_factor: int = 0
    coarse_levels: tuple[int, ...] = ()

    @property
    def layered(self) -> bool:
        return bool(self.coarse_levels)

    def coarse_grid(self, grid_h: int, grid_w: int) -> tuple[int, int]:
        """Coarse grid size for a fine grid: ceil(fine / (coarse_factor / factor)) per side."""
        r = self.coarse_factor // self.factor
        return -(-grid_h // r), -(-grid_w // r)

    @property
    def index_bits(self) -> int:
        """Bits per index in raw mode: ceil(log2 K)."""
        return max(1, math.ceil(math.log2(self.codebook_size)))


# id -> spec. Never reuse or renumber an id.
TOKENIZERS: dict[int, TokenizerSpec] = {
    1: TokenizerSpec(1, "tc-vq-f8-k1024", 1024, 8),
    2: TokenizerSpec(2, "tc-vq-f16-k1024", 1024, 16),  # reserved for the f16 variant
    # v2: v1's fine f8 tokens plus a coarse f16 FSQ layer (models.tokenizer2); fine ids == id 1's
    3: TokenizerSpec(3, "tc-vq2-f16c-f8", 1024, 8, coarse_factor=16, coarse_levels=(7, 5, 5, 5)),
    16: TokenizerSpec(16, "llamagen-vq-ds16-c2i", 16384, 16),
}


def get_tokenizer(tokenizer_id: int) -> TokenizerSpec:
    try:
        return TOKENIZERS[tokenizer_id]
    except (KeyError, TypeError):
        valid = ", ".join(f"{k} ({v.name})" for k, v in TOKENIZERS.items())
        raise UnknownTokenizer(f"unknown tokenizer id {tokenizer_id!r}; known ids are {valid}") from None


# Priors are part of the wire contract (both ends must code with the same table), so the ones
# for our own tokenizers ship inside this package rather than beside the model weights.
SHIPPED_PRIOR_DIR = Path(__file__).resolve().parent / "priors"


def prior_path(spec: TokenizerSpec, directory: str | Path | None = None) -> Path | None:
    """Where ``<name>.prior.npy`` is: ``directory``, else $TOKENCAST_PRIOR_DIR, else the shipped one."""
    base = directory if directory is not None else os.environ.get(PRIOR_DIR_ENV)
    return Path(base or SHIPPED_PRIOR_DIR) / f"{spec.name}.prior.npy"


def load_prior(spec: TokenizerSpec, directory: str | Path | None = None) -> np.ndarray | None:
    """Token counts (uint32, length K) for ``spec``, or None when no prior file ships.

    None means a uniform prior: the packer then always uses raw ceil(log2 K)-bit indices.
    A file with the wrong shape or dtype raises ValueError naming the file.
    """
    path = prior_path(spec, directory)
    if path is None or not path.is_file():
        return None
    counts = np.load(path, allow_pickle=False)
    if counts.shape != (spec.codebook_size,) or counts.dtype.kind not in "ui" or (counts < 0).any():
        raise ValueError(
            f"{path}: expected non-negative integer counts of shape ({spec.codebook_size},), "
            f"got {counts.dtype} {counts.shape}"
        )
    return counts.astype(np.uint32)
