"""The fine codebook as numpy, so the edge can measure how far a token moved without torch.

A token that changed id may still look the same (neighbouring codes), so "did this cell move"
is a distance between code vectors, not an id comparison. The codebook ships as a small .npy
(``scripts/export_codebook.py`` writes it from the tokenizer weights): unit-normalised float32,
(K, D), the vectors the decoder looks up. Tokenizer v2's fine ids are v1's, so one file serves
tokenizer ids 1 and 3.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CODEBOOK = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "tc-vq-f8-k1024.codebook.npy"


class CodebookError(ValueError):
    """The codebook file is missing, unreadable or has the wrong shape."""


def load_codebook(path: Path | str = DEFAULT_CODEBOOK, codebook_size: int = 1024) -> np.ndarray:
    """(K, D) float32 unit code vectors; CodebookError naming the file otherwise."""
    path = Path(path)
    try:
        cb = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.error("codebook %s unreadable: %s", path, exc)
        raise CodebookError(f"codebook {path}: cannot read ({exc}); write it with scripts/export_codebook.py") from None
    if cb.ndim != 2 or cb.shape[0] != codebook_size or cb.dtype.kind != "f" or not np.isfinite(cb).all():
        log.error("codebook %s has shape %s %s", path, cb.shape, cb.dtype)
        raise CodebookError(f"codebook {path}: expected finite floats of shape ({codebook_size}, D), "
                            f"got {cb.dtype} {cb.shape}")
    return cb.astype(np.float32)


def code_distance(codebook: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between the code vectors of index grids ``a`` and ``b`` (same shape).

    On unit codes it lies in [0, 2]; 0 for equal ids."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"index grids differ in shape: {a.shape} vs {b.shape}")
    return np.linalg.norm(codebook[a] - codebook[b], axis=-1)
