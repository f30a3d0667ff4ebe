"""Optional 5G NR LDPC coding of fragments for channel benchmarks, through ``sionna-no-rt``.

Only benchmarks import this, and only where torch/tensorflow and sionna are installed; plain
link use never does (a test proves ``import link`` leaves torch unimported). Without sionna,
constructing a code raises BackendUnavailable. Not exercised in CI.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from link.errors import BackendUnavailable


def _sionna_ldpc() -> Any:
    try:
        return importlib.import_module("sionna.phy.fec.ldpc")
    except ImportError:
        raise BackendUnavailable("LDPC coding needs the optional 'sionna-no-rt' package (pip install sionna-no-rt)") from None


class Ldpc5G:
    """Rate-k/n 5G LDPC: ``encode(bits) -> codeword bits``, ``decode(llr) -> bits``."""

    def __init__(self, k: int, n: int, iterations: int = 20) -> None:
        ldpc = _sionna_ldpc()
        self.k, self.n = k, n
        self._encoder = ldpc.LDPC5GEncoder(k, n)
        self._decoder = ldpc.LDPC5GDecoder(self._encoder, num_iter=iterations, hard_out=True)

    def encode(self, bits: np.ndarray) -> np.ndarray:
        return np.asarray(self._encoder(bits.reshape(-1, self.k).astype(np.float32)))

    def decode(self, llr: np.ndarray) -> np.ndarray:
        return np.asarray(self._decoder(llr.reshape(-1, self.n).astype(np.float32))).astype(np.uint8)
