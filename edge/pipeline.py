"""The edge's selection pipeline: picture -> tokens, scores -> which tokens fit the budget.

    encode   VQ encoder (ONNX / TensorRT): padded image -> (H/8, W/8) codebook indices
    segment  segmenter: instances (class, score, mask)
    score    semantic score per token (importance) + keep priority (recoverability)
    select   sampler: keep mask whose packet fits the budget exactly

``EdgePipeline.select(image)`` returns a ``Selection``; the service turns it into a
``link.frame.Frame``. The packet size comes from the link's exact ``wire_size`` unless a size
function is injected (tests, or a different packer). No torch anywhere below this file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from link.frame import Frame
from link.lora import RadioProfile

from .complexity import pad_to_multiple
from .importance import ImportanceConfig, semantic_scores
from .recoverability import Recoverability, RecoverabilityConfig
from .runtime import InferenceBackend, RuntimeConfig, create_backend
from .runtime.registry import BackendError
from .sampler import BudgetConfig, BudgetTooSmall, SamplerConfig, SizeFn, budget_limit, sample
from .segmenter import Instance, Segmenter, SegmenterConfig, create_segmenter

log = logging.getLogger(__name__)

# Shipped beside the models package (installed with every extra; only torch is left out).
DEFAULT_ENCODER = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "tc-vq-f8-k1024.encoder.onnx"


@dataclass
class PacketConfig:
    """What the exact size function needs to know about packing (mirrors the link config)."""

    mtu: int = 222
    tag_len: int = 8
    # LoRa channel for budgets in seconds: each planned fragment is one packet on air
    radio: RadioProfile = field(default_factory=lambda: RadioProfile.for_sf(8))  # SF8/125 kHz, mtu 222


@dataclass
class PipelineConfig:
    encoder: Path = DEFAULT_ENCODER
    encoder_runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    tokenizer_id: int = 1
    factor: int = 8
    codebook_size: int = 1024
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    importance: ImportanceConfig = field(default_factory=ImportanceConfig)
    recoverability: RecoverabilityConfig = field(default_factory=RecoverabilityConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    packet: PacketConfig = field(default_factory=PacketConfig)


@dataclass(eq=False)
class Selection:
    kept: np.ndarray  # bool (grid_h, grid_w)
    indices: np.ndarray  # int64 codebook indices of the kept tokens, row-major
    grid_h: int
    grid_w: int
    width: int
    height: int
    tokenizer_id: int = 1
    timings: dict[str, float] = field(default_factory=dict)  # ms: encode, segment, score, select
    size_bytes: int = 0  # exact packet bytes
    cost: float = 0.0  # what the budget limits: bytes, or seconds on air
    limit: float = 0.0
    unit: str = "bytes"  # "bytes" or "seconds"
    n_semantic: int = 0  # kept tokens with a semantic score
    stride: int = 0  # dispersal lattice stride (masked tokens lie within stride - 1 of kept ones)
    instances: list[Instance] = field(default_factory=list)

    @property
    def kept_fraction(self) -> float:
        return float(self.kept.mean())


# (width, height, unit "bytes" | "seconds") -> the cost function the sampler cuts with
CostFactory = Callable[[int, int, str], SizeFn]


def link_cost_fn(width: int, height: int, unit: str, tokenizer_id: int, packet: PacketConfig) -> SizeFn:
    """Exact packet cost from the link's planner: total bytes (``wire_size``), or the LoRa airtime
    of the fragments ``pack`` would send, one packet each, at ``packet.radio``."""
    from link.entropy import default_prior
    from link.packet import plan, wire_size

    prior = default_prior(tokenizer_id)

    def frame(kept: np.ndarray, indices: np.ndarray) -> Frame:
        return Frame(0, 0, 0, width, height, tokenizer_id, kept.shape[0], kept.shape[1], kept, indices)

    if unit == "seconds":
        if packet.mtu > packet.radio.mtu:
            raise ValueError(f"packet.mtu {packet.mtu} exceeds the radio profile's mtu {packet.radio.mtu}")
        toa = packet.radio.time_on_air_s
        return lambda k, i: sum(
            toa(p.size) for p in plan(frame(k, i), mtu=packet.mtu, tag_len=packet.tag_len, prior=prior)
        )
    return lambda k, i: wire_size(frame(k, i), mtu=packet.mtu, tag_len=packet.tag_len, prior=prior)


class EdgePipeline:
    def __init__(
        self,
        config: PipelineConfig,
        encoder: InferenceBackend,
        segmenter: Segmenter,
        recoverability: Recoverability,
        cost_fn: CostFactory | None = None,
    ) -> None:
        """Parts are passed in loaded; ``cost_fn(width, height, unit)`` replaces the link's sizer."""
        self.config = config
        self.encoder, self.segmenter, self.recoverability = encoder, segmenter, recoverability
        self._cost_fn = cost_fn or self._link_cost

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        *,
        cost_fn: CostFactory | None = None,
    ) -> EdgePipeline:
        encoder = create_backend(config.encoder, config.encoder_runtime).load()
        try:
            segmenter = create_segmenter(config.segmenter).load()
            recoverability = Recoverability(config.recoverability, config.factor).load()
        except Exception:
            encoder.close()
            raise
        return cls(config, encoder, segmenter, recoverability, cost_fn)

    def encode(self, padded: np.ndarray) -> np.ndarray:
        """(gh, gw) int64 indices of an RGB uint8 frame whose sides are multiples of the factor."""
        x = padded.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = self.encoder.run({self.encoder.input_names[0]: x})
        idx = np.asarray(out.get("indices", next(iter(out.values()))))
        f = self.config.factor
        expected = (padded.shape[0] // f, padded.shape[1] // f)
        if idx.shape[-2:] != expected or idx.dtype.kind not in "iu":
            raise BackendError(f"encoder returned {idx.dtype} {idx.shape}, expected integer [1, {expected}]")
        idx = idx.reshape(expected).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.codebook_size):
            raise BackendError(f"encoder indices outside [0, {self.config.codebook_size})")
        return idx

    def select(self, image: np.ndarray, budget: BudgetConfig | None = None) -> Selection:
        """Tokens of one RGB uint8 (H, W, 3) picture to send under ``budget`` (default: the config's)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        cfg = self.config
        height, width = image.shape[:2]
        timings: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[name] = (now - t) * 1000.0
            t = now

        padded = pad_to_multiple(image, cfg.factor)
        tokens = self.encode(padded)
        lap("encode")
        instances = self.segmenter.segment(image)
        lap("segment")
        gh, gw = tokens.shape
        semantic = semantic_scores(instances, gh, gw, cfg.factor, cfg.importance)
        priority = self.recoverability.priority(padded)
        lap("score")
        budget = budget or cfg.budget
        limit = budget_limit(budget, width, height)
        unit = "seconds" if budget.unit == "seconds" else "bytes"
        cost = self._cost_fn(width, height, unit)
        try:
            picked = sample(semantic, priority, tokens, cost, limit, cfg.sampler)
        except BudgetTooSmall as exc:
            raise BudgetTooSmall.for_budget(budget, width, height, exc.empty_size) from None
        kept = picked.kept
        size = int(picked.cost) if unit == "bytes" else int(self._cost_fn(width, height, "bytes")(kept, tokens[kept]))
        lap("select")
        return Selection(
            kept=kept, indices=tokens[kept], grid_h=gh, grid_w=gw, width=width, height=height,
            tokenizer_id=cfg.tokenizer_id, timings=timings, size_bytes=size, cost=picked.cost, limit=limit,
            unit=unit, n_semantic=picked.n_semantic, stride=picked.stride, instances=instances,
        )  # fmt: skip

    def _link_cost(self, width: int, height: int, unit: str) -> SizeFn:
        return link_cost_fn(width, height, unit, self.config.tokenizer_id, self.config.packet)

    def close(self) -> None:
        self.encoder.close()
        self.segmenter.close()
        self.recoverability.close()

    def __enter__(self) -> EdgePipeline:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
