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
from pathlib import Path
from typing import Any

import numpy as np

from edge.pipeline import EdgePipeline, PacketConfig, PipelineConfig, Selection, link_cost_fn
from edge.recoverability import Recoverability
from edge.runtime import InferenceBackend, TensorSpec, create_backend
from edge.sampler import BudgetConfig, BudgetTooSmall, SizeFn
from edge.segmenter import SegmenterConfig, create_segmenter
from link.dc import correct as correct_means
from link.entropy import default_prior
from link.frame import Frame
from link.packet import pack
from link.reassembly import unpack
from link.security import KeyStore, Opener, Sealer
from link.tokenizers import get_tokenizer
from models.codec import TokenCodec

Codec = Any  # TokenCodec (tokenizer 1) or models.codec2.TokenCodec2 (tokenizer 3)
DEVICE_ID = 7
KEY = bytes(range(16))  # a fixed benchmark key: sealing costs the same bytes with any key


class TokenizerBackend(InferenceBackend):
    """An ``InferenceBackend`` over the in-process torch tokenizer (no model file)."""

    name = "torch-tokenizer"

    def __init__(self, codec: Codec) -> None:
        super().__init__("<in-process>")
        self.codec = codec
        self.layered = hasattr(codec, "coarse_levels")
        self.inputs = [TensorSpec("image", (1, 3, None, None), np.dtype(np.float32))]
        self.outputs = [TensorSpec("indices", (1, None, None), np.dtype(np.int64))]
        if self.layered:
            self.outputs.append(TensorSpec("coarse", (1, None, None, None), np.dtype(np.int64)))
        self._loaded = True

    def load(self) -> TokenizerBackend:
        return self

    def _open(self) -> None:  # nothing to open: the tokenizer is already in memory
        pass

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = (feed["image"][0].transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
        if self.layered:
            fine, coarse = self.codec.encode([image])[0]
            return {"indices": fine[None], "coarse": coarse[None]}
        return {"indices": self.codec.encode([image])[0][None]}


def load_codec(tokenizer_id: int = 3, device: str = "auto", random_init: bool = False) -> Codec:
    if get_tokenizer(tokenizer_id).layered:
        from models.codec2 import TokenCodec2

        return TokenCodec2.load(tokenizer_id, device=device, random_init=random_init)
    return TokenCodec.load(tokenizer_id, device=device, random_init=random_init)


def build_pipeline(codec: Codec, segmenter: str = SegmenterConfig.backend, mtu: int = 222,
                   coarse_repeat: int = 1, encoder: Path | None = None) -> EdgePipeline:
    """The edge pipeline around ``codec``'s torch tokenizer, or around the ONNX ``encoder`` file
    (what a camera runs, e.g. the light distilled encoder) when one is given."""
    config = PipelineConfig(segmenter=SegmenterConfig(backend=segmenter),
                            packet=PacketConfig(mtu=mtu, coarse_repeat=coarse_repeat), tokenizer_id=codec.tokenizer_id)
    seg = create_segmenter(config.segmenter).load()
    rec = Recoverability(config.recoverability, config.factor).load()
    if encoder is not None:
        config.encoder = Path(encoder)
        backend = create_backend(config.encoder, config.encoder_runtime).load()
    else:
        backend = TokenizerBackend(codec)
    return EdgePipeline(config, backend, seg, rec)


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


def bytes_cost(pipe: EdgePipeline, width: int, height: int, coarse: np.ndarray | None = None,
               grid: tuple[int, int] | None = None, dc: np.ndarray | None = None) -> SizeFn:
    return link_cost_fn(width, height, "bytes", pipe.config.tokenizer_id, pipe.config.packet, coarse, grid, dc)


@dataclass
class Sent:
    fragments: list[bytes]
    frame: Frame

    @property
    def size(self) -> int:
        return sum(map(len, self.fragments))


def send(grid: np.ndarray, kept: np.ndarray, width: int, height: int, mtu: int = 222,
         tokenizer_id: int = 1, coarse: np.ndarray | None = None, dc: np.ndarray | None = None) -> Sent:
    """Sealed fragments of one frame, as the edge puts them on the air (two-layer frames: with
    their coarse layer, ``tokenizer_id`` 3)."""
    if coarse is not None and tokenizer_id == 1:
        tokenizer_id = 3
    frame = Frame.from_index_grid(grid, kept, device_id=DEVICE_ID, counter=1, capture_ms=0, width=width,
                                  height=height, tokenizer_id=tokenizer_id, coarse=coarse, dc=dc)
    # The shipped prior, as the edge packer uses: the budget was sized with it.
    return Sent(pack(frame, mtu=mtu, sealer=Sealer(KEY, DEVICE_ID), prior=default_prior(tokenizer_id)), frame)


def receive(codec: Codec, fragments: list[bytes], shape: tuple[int, int], width: int, height: int,
            seed: int = 0) -> tuple[np.ndarray, float]:
    """Cloud side: arrived fragments -> restored image (at the capture size), and the share of
    fine positions lost, through the worker's own ``reconstruct_frames``.

    With every fragment lost there is nothing to reassemble: the restorer starts from an empty
    grid (it still produces a picture, a guess from nothing)."""
    from cloud.restoring import reconstruct_frames

    tid = codec.tokenizer_id
    if fragments:
        prior = default_prior(1)
        rf = unpack(fragments, Opener(KeyStore({DEVICE_ID: KEY})), priors={1: prior} if prior else None)
        return reconstruct_frames(codec, [rf], seed)[1][0], float(rf.lost.mean())
    if get_tokenizer(tid).layered:
        spec = get_tokenizer(tid)
        coarse = np.zeros((len(spec.coarse_levels), *spec.coarse_grid(*shape)), np.int64)
        img = codec.reconstruct([np.zeros(shape, np.int64)], [np.zeros(shape, bool)], [coarse],
                                [np.zeros(coarse.shape[1:], bool)], [(height, width)], seed=seed)[1][0]
        return img, 1.0
    return reconstruct(codec, np.zeros(shape, np.int64), np.zeros(shape, bool), width, height, seed=seed), 1.0


def reconstruct(codec: Codec, grid: np.ndarray, kept: np.ndarray, width: int, height: int,
                seed: int = 0, coarse: np.ndarray | None = None, dc: np.ndarray | None = None) -> np.ndarray:
    """Image from a token grid where only ``kept`` is known (no channel); two-layer codecs also
    take the (complete) coarse layer."""
    if coarse is not None:
        img = codec.reconstruct([np.where(kept, grid, 0)], [kept], [coarse], [np.ones(coarse.shape[1:], bool)],
                                [(height, width)], seed=seed)[1][0]
        return img if dc is None else correct_means(img, dc)
    return codec.reconstruct([np.where(kept, grid, 0)], [kept], [(height, width)], seed=seed)[1][0]
