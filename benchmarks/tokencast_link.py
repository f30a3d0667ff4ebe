"""tokencast end to end for the benchmarks: edge selection -> fragments -> cloud restore -> image.

The edge half is the real ``EdgePipeline`` (segmenter, recoverability, dispersal sampler, exact
byte budget) with one substitution: the encoder backend runs the torch tokenizer in process
instead of its ONNX export (the same weights; the export may not exist yet, and ``--random-init``
has none). Fragments are packed and sealed exactly as the edge sends them (AES-CCM, 8-byte
tags, the configured MTU), so byte counts are what the radio carries; the cloud half reassembles
whichever fragments arrived and restores masked and lost tokens with the MaskGIT restorer.

``random_kept`` is the control: a uniformly random kept set cut to the same byte budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.pipeline import EdgePipeline, PacketConfig, PipelineConfig, Selection, link_cost_fn
from edge.recoverability import Recoverability
from edge.runtime import InferenceBackend, TensorSpec
from edge.sampler import BudgetConfig, BudgetTooSmall, SizeFn
from edge.segmenter import SegmenterConfig, create_segmenter
from link.entropy import default_prior
from link.frame import Frame
from link.packet import pack
from link.reassembly import unpack
from link.security import KeyStore, Opener, Sealer
from models.codec import TokenCodec

DEVICE_ID = 7
KEY = bytes(range(16))  # a fixed benchmark key: sealing costs the same bytes with any key


class TokenizerBackend(InferenceBackend):
    """An ``InferenceBackend`` over the in-process torch tokenizer (no model file)."""

    name = "torch-tokenizer"

    def __init__(self, codec: TokenCodec) -> None:
        super().__init__("<in-process>")
        self.codec = codec
        self.inputs = [TensorSpec("image", (1, 3, None, None), np.dtype(np.float32))]
        self.outputs = [TensorSpec("indices", (1, None, None), np.dtype(np.int64))]
        self._loaded = True

    def load(self) -> TokenizerBackend:
        return self

    def _open(self) -> None:  # nothing to open: the tokenizer is already in memory
        pass

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = (feed["image"][0].transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
        return {"indices": self.codec.encode([image])[0][None]}


def build_pipeline(codec: TokenCodec, segmenter: str = SegmenterConfig.backend, mtu: int = 222) -> EdgePipeline:
    config = PipelineConfig(segmenter=SegmenterConfig(backend=segmenter), packet=PacketConfig(mtu=mtu))
    seg = create_segmenter(config.segmenter).load()
    rec = Recoverability(config.recoverability, config.factor).load()
    return EdgePipeline(config, TokenizerBackend(codec), seg, rec)


def select(pipe: EdgePipeline, image: np.ndarray, bpp: float) -> Selection | None:
    """Semantic-aware selection at ``bpp``; None when even an empty frame is over budget."""
    try:
        return pipe.select(image, BudgetConfig("bpp", bpp))
    except BudgetTooSmall:
        return None


def random_kept(shape: tuple[int, int], tokens: np.ndarray, size_fn: SizeFn, limit: float,
                rng: np.random.Generator) -> np.ndarray:
    """Largest prefix of a random permutation of positions whose packet fits ``limit`` (bisection)."""
    order = rng.permutation(int(np.prod(shape)))

    def fits(k: int) -> bool:
        m = np.zeros(order.size, bool)
        m[order[:k]] = True
        m = m.reshape(shape)
        return size_fn(m, tokens[m]) <= limit

    lo, hi = 0, order.size + 1
    if not fits(0):
        raise BudgetTooSmall(limit, size_fn(np.zeros(shape, bool), tokens[:0].ravel()))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    m = np.zeros(order.size, bool)
    m[order[:lo]] = True
    return m.reshape(shape)


def random_kept_ratio(shape: tuple[int, int], keep: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(keep x positions) random kept positions."""
    n = int(np.prod(shape))
    m = np.zeros(n, bool)
    m[rng.permutation(n)[: int(round(keep * n))]] = True
    return m.reshape(shape)


def bytes_cost(pipe: EdgePipeline, width: int, height: int) -> SizeFn:
    return link_cost_fn(width, height, "bytes", pipe.config.tokenizer_id, pipe.config.packet)


@dataclass
class Sent:
    fragments: list[bytes]
    frame: Frame

    @property
    def size(self) -> int:
        return sum(map(len, self.fragments))


def send(grid: np.ndarray, kept: np.ndarray, width: int, height: int, mtu: int = 222,
         tokenizer_id: int = 1) -> Sent:
    """Sealed fragments of one frame, as the edge puts them on the air."""
    frame = Frame.from_index_grid(grid, kept, device_id=DEVICE_ID, counter=1, capture_ms=0, width=width,
                                  height=height, tokenizer_id=tokenizer_id)
    # The shipped prior, as the edge packer uses: the budget was sized with it.
    return Sent(pack(frame, mtu=mtu, sealer=Sealer(KEY, DEVICE_ID), prior=default_prior(tokenizer_id)), frame)


def receive(codec: TokenCodec, fragments: list[bytes], shape: tuple[int, int], width: int, height: int,
            seed: int = 0) -> tuple[np.ndarray, float]:
    """Cloud side: arrived fragments -> restored image, and the share of positions lost.

    With every fragment lost there is nothing to reassemble: the restorer starts from an empty
    grid (it still produces a picture, a guess from nothing)."""
    if fragments:
        prior = default_prior(1)
        rf = unpack(fragments, Opener(KeyStore({DEVICE_ID: KEY})), priors={1: prior} if prior else None)
        grid, known, lost = rf.index_grid(), rf.kept, float(rf.lost.mean())
    else:
        grid, known, lost = np.zeros(shape, np.int64), np.zeros(shape, bool), 1.0
    return reconstruct(codec, grid, known, width, height, seed=seed), lost


def reconstruct(codec: TokenCodec, grid: np.ndarray, kept: np.ndarray, width: int, height: int,
                seed: int = 0) -> np.ndarray:
    """Image from a token grid where only ``kept`` is known (no channel)."""
    return codec.reconstruct([np.where(kept, grid, 0)], [kept], [(height, width)], seed=seed)[1][0]
