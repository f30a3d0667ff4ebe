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

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from link.dc import block_means
from link.frame import SCALES, Frame
from link.lora import RadioProfile
from link.tokenizers import TokenizerSpec, get_tokenizer

from .complexity import pad_to_multiple
from .importance import ImportanceConfig, semantic_scores
from .recoverability import Recoverability, RecoverabilityConfig
from .runtime import InferenceBackend, RuntimeConfig, create_backend
from .runtime.registry import BackendError
from .sampler import BudgetConfig, BudgetTooSmall, SamplerConfig, SizeFn, budget_limit, sample
from .segmenter import Instance, Segmenter, SegmenterConfig, create_segmenter

log = logging.getLogger(__name__)

# Shipped beside the models package (installed with every extra; only torch is left out).
# Tokenizer v2 (id 3): coarse layer + fine tokens, wire v2. The default is the light encoder
# distilled from tokenizer v2's own (models/fast_encoder.py: about a quarter of the time, the same
# PSNR after restoration on val); the full one, tc-vq2-f16c-f8.encoder.onnx, gives the same ids
# vocabulary and stays selectable. Tokenizer 1 (fine tokens only, wire v1) has its own encoder,
# tc-vq-f8-k1024.encoder.onnx.
_CHECKPOINTS = Path(__file__).resolve().parents[1] / "models" / "checkpoints"
DEFAULT_ENCODER = _CHECKPOINTS / "tc-vq2-f16c-f8.fast-encoder.onnx"
FULL_ENCODER = _CHECKPOINTS / "tc-vq2-f16c-f8.encoder.onnx"


@dataclass
class PacketConfig:
    """What the exact size function needs to know about packing (mirrors the link config)."""

    mtu: int = 222
    tag_len: int = 8
    # LoRa channel for budgets in seconds: each planned fragment is one packet on air
    radio: RadioProfile = field(default_factory=lambda: RadioProfile.for_sf(8))  # SF8/125 kHz, mtu 222
    # Wire v2: each coarse fragment goes out this many times (the copies after the fine layer), so
    # a lossy link rarely loses the layer every cell depends on; the budget pays for the copies.
    coarse_repeat: int = 1

    def __post_init__(self) -> None:
        if self.coarse_repeat not in (1, 2, 3):
            raise ValueError(f"coarse_repeat must be 1, 2 or 3, got {self.coarse_repeat}")


@dataclass
class PipelineConfig:
    encoder: Path = DEFAULT_ENCODER
    encoder_runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    tokenizer_id: int = 3
    factor: int = 8
    codebook_size: int = 1024
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    importance: ImportanceConfig = field(default_factory=ImportanceConfig)
    recoverability: RecoverabilityConfig = field(default_factory=RecoverabilityConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    packet: PacketConfig = field(default_factory=PacketConfig)
    # Under a budget below even an empty full-size frame (wire v2: its coarse layer), code the
    # picture at half, then quarter size instead of failing; the cloud scales it back up.
    downscale: bool = True
    # Wire v2: send each 32x32 block's mean colour with the coarse layer (link.dc), which the
    # cloud pulls its picture to; about 7 bits a block, worth ~0.8 dB on val.
    block_means: bool = True
    # The encoder, the detector and the scorer do not depend on each other: with 2 (or more)
    # stage threads the encoder runs beside the detector and scorer, each model on one core (a
    # model whose runtime says intra_op_threads = 0 gets 1 here instead of every core, which
    # would only make the concurrent models fight). 1: one after another, as before.
    stage_threads: int = 2

    def __post_init__(self) -> None:
        if self.stage_threads < 1:
            raise ValueError(f"stage_threads must be >= 1, got {self.stage_threads}")


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
    coarse: np.ndarray | None = None  # two-layer tokenizers: coarse levels (C, hc, wc), always sent
    scale: int = 1  # the picture was coded at 1/scale size (budget below a full-size empty frame)
    tokens: np.ndarray | None = None  # the whole fine grid as coded (kept or not), for references and studies
    dc: np.ndarray | None = None  # wire v2: quantised 32x32 block means (link.dc), sent with the coarse layer

    @property
    def kept_fraction(self) -> float:
        return float(self.kept.mean())


# (width, height, unit "bytes" | "seconds") -> the cost function the sampler cuts with
CostFactory = Callable[[int, int, str], SizeFn]


def link_cost_fn(width: int, height: int, unit: str, tokenizer_id: int, packet: PacketConfig,
                 coarse: np.ndarray | None = None, grid: tuple[int, int] | None = None,
                 dc: np.ndarray | None = None) -> SizeFn:
    """Exact packet cost from the link's planner: total bytes (``wire_size``), or the LoRa airtime
    of the fragments ``pack`` would send, one packet each, at ``packet.radio``."""
    if coarse is not None:
        if grid is None:
            raise ValueError("a two-layer cost needs the fine grid size")
        return layered_cost_fn(width, height, unit, tokenizer_id, packet, coarse, grid, dc)
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


def layered_cost_fn(width: int, height: int, unit: str, tokenizer_id: int, packet: PacketConfig,
                    coarse: np.ndarray, grid: tuple[int, int], dc: np.ndarray | None = None) -> SizeFn:
    """Wire v2 cost: the coarse layer (planned once per picture, times ``coarse_repeat``) plus the
    fine layer's exact plan. Carries ``.estimate`` (bytes only), which the sampler searches with."""
    from link.header2 import LAYER_COARSE, LAYER_FINE
    from link.packet2 import default_models, estimate_layer, plan_layer

    models = default_models(tokenizer_id)
    gh, gw = grid  # of the picture as coded: smaller than width x height implies when shrunk

    def frame(kept: np.ndarray, indices: np.ndarray) -> Frame:
        return Frame(0, 1, 0, width, height, tokenizer_id, kept.shape[0], kept.shape[1], kept, indices,
                     coarse=coarse, dc=dc)

    empty = frame(np.zeros((gh, gw), bool), np.zeros(0, np.int64))
    coarse_plans = plan_layer(empty, LAYER_COARSE, mtu=packet.mtu, tag_len=packet.tag_len, models=models)
    rep = packet.coarse_repeat

    def fine(kept: np.ndarray, indices: np.ndarray) -> list:
        return plan_layer(frame(kept, indices), LAYER_FINE, mtu=packet.mtu, tag_len=packet.tag_len, models=models)

    class Cost:
        def __init__(self, per: Callable[[int], float]) -> None:
            self.per = per
            self.fixed = rep * sum(per(p.size) for p in coarse_plans)

        def __call__(self, kept: np.ndarray, indices: np.ndarray) -> float:
            return self.fixed + sum(self.per(p.size) for p in fine(kept, indices))

    if unit == "seconds":
        if packet.mtu > packet.radio.mtu:
            raise ValueError(f"packet.mtu {packet.mtu} exceeds the radio profile's mtu {packet.radio.mtu}")
        return Cost(packet.radio.time_on_air_s)
    cost = Cost(float)

    def estimate(kept: np.ndarray, indices: np.ndarray) -> float:
        return cost.fixed + estimate_layer(frame(kept, indices), LAYER_FINE, mtu=packet.mtu,
                                           tag_len=packet.tag_len, models=models)

    cost.estimate = estimate  # type: ignore[attr-defined]
    return cost


def shrink(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` at 1/scale size (area filter: the average the cloud's upscale should undo)."""
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, -(-w // scale)), max(1, -(-h // scale))), interpolation=cv2.INTER_AREA)


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
        self._pool: ThreadPoolExecutor | None = None
        # (scale, width, height, unit) -> (empty-frame cost seen over budget, frames skipped since)
        self._too_small: dict[tuple[int, int, int, str], tuple[float, int]] = {}
        if config.stage_threads > 1:
            self._pool = ThreadPoolExecutor(config.stage_threads - 1, thread_name_prefix="edge-stage")

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        *,
        cost_fn: CostFactory | None = None,
    ) -> EdgePipeline:
        def runtime(r: RuntimeConfig) -> RuntimeConfig:
            if config.stage_threads > 1 and r.intra_op_threads == 0:
                return dataclasses.replace(r, intra_op_threads=1)
            return r

        encoder = create_backend(config.encoder, runtime(config.encoder_runtime)).load()
        try:
            seg_cfg = dataclasses.replace(config.segmenter, runtime=runtime(config.segmenter.runtime))
            rec_cfg = dataclasses.replace(config.recoverability, runtime=runtime(config.recoverability.runtime))
            segmenter = create_segmenter(seg_cfg).load()
            recoverability = Recoverability(rec_cfg, config.factor).load()
        except Exception:
            encoder.close()
            raise
        return cls(config, encoder, segmenter, recoverability, cost_fn)

    @property
    def spec(self) -> TokenizerSpec:
        return get_tokenizer(self.config.tokenizer_id)

    def encode(self, padded: np.ndarray) -> np.ndarray:
        """(gh, gw) int64 indices of an RGB uint8 frame whose sides are multiples of the factor."""
        return self.encode_layers(padded)[0]

    def encode_layers(self, padded: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(fine indices (gh, gw), coarse levels (C, hc, wc) or None for one-layer tokenizers).

        A two-layer encoder takes sides padded to the coarse factor and returns the fine grid
        of that padded picture, which may be a row/column larger than the caller's."""
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
        spec = self.spec
        if not spec.layered:
            return idx, None
        if "coarse" not in out:
            raise BackendError(f"{self.config.encoder}: tokenizer {spec.name} needs a two-layer encoder "
                               f"(outputs 'indices' and 'coarse'); this one gives {sorted(out)}")
        coarse = np.asarray(out["coarse"])
        c_expected = (len(spec.coarse_levels), *spec.coarse_grid(*expected))
        if coarse.shape[-3:] != c_expected or coarse.dtype.kind not in "iu":
            raise BackendError(f"encoder coarse output {coarse.dtype} {coarse.shape}, expected integer {c_expected}")
        coarse = coarse.reshape(c_expected).astype(np.int64)
        levels = np.asarray(spec.coarse_levels).reshape(-1, 1, 1)
        if (coarse < 0).any() or (coarse >= levels).any():
            raise BackendError(f"encoder coarse levels outside {spec.coarse_levels}")
        return idx, coarse

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

        budget = budget or cfg.budget
        limit = budget_limit(budget, width, height)
        unit = "seconds" if budget.unit == "seconds" else "bytes"
        instances = None
        for scale in SCALES if cfg.downscale else (1,):
            if cfg.downscale and self._expect_too_small(scale, width, height, unit, limit):
                continue
            small = image if scale == 1 else shrink(image, scale)
            h, w = small.shape[:2]
            spec = self.spec
            padded = pad_to_multiple(small, spec.coarse_factor if spec.layered else cfg.factor)
            gh, gw = -(-h // cfg.factor), -(-w // cfg.factor)
            # detector and scorer beside the encoder (they need only the picture)
            side = self._start_side(image if instances is None else None, padded[: gh * cfg.factor, : gw * cfg.factor])
            tokens, coarse = self.encode_layers(padded)
            means = block_means(small) if coarse is not None and cfg.block_means else None
            tokens = tokens[:gh, :gw]  # a two-layer encoder saw the picture padded to 16
            lap("encode")
            found, priority, side_ms = self._finish_side(side)
            if instances is None:
                instances = found
            timings.update(side_ms)
            semantic = semantic_scores(instances or [], gh, gw, cfg.factor * scale, cfg.importance)
            lap("wait")
            cost = self._cost(width, height, unit, coarse, (gh, gw), means)
            try:
                picked = sample(semantic, priority, tokens, cost, limit, cfg.sampler)
                break
            except BudgetTooSmall as exc:
                self._too_small[(scale, width, height, unit)] = (exc.empty_size, 0)
                if scale == SCALES[-1] or not cfg.downscale:
                    raise BudgetTooSmall.for_budget(budget, width, height, exc.empty_size) from None
                log.info("budget %.0f %s below an empty %dx%d frame (%.0f): coding at 1/%d size",
                         limit, unit, w, h, exc.empty_size, scale * 2)
        kept = picked.kept
        size = int(picked.cost) if unit == "bytes" else int(self._cost(width, height, "bytes", coarse, (gh, gw), means)(kept, tokens[kept]))
        lap("select")
        return Selection(
            kept=kept, indices=tokens[kept], grid_h=gh, grid_w=gw, width=width, height=height,
            tokenizer_id=cfg.tokenizer_id, timings=timings, size_bytes=size, cost=picked.cost, limit=limit,
            unit=unit, n_semantic=picked.n_semantic, stride=picked.stride, instances=instances or [],
            coarse=coarse, scale=scale, tokens=tokens, dc=means,
        )  # fmt: skip

    # A scale whose empty frame was over budget by this share last time is skipped (its encode
    # would be thrown away) for up to RETRY_AFTER frames, then tried again: the scene may have
    # become simpler.
    SKIP_MARGIN = 0.85
    RETRY_AFTER = 8

    def _expect_too_small(self, scale: int, width: int, height: int, unit: str, limit: float) -> bool:
        if scale == SCALES[-1]:
            return False
        key = (scale, width, height, unit)
        seen = self._too_small.get(key)
        if seen is None or limit >= self.SKIP_MARGIN * seen[0] or seen[1] >= self.RETRY_AFTER:
            self._too_small.pop(key, None)
            return False
        self._too_small[key] = (seen[0], seen[1] + 1)
        return True

    def _side(self, image: np.ndarray | None, padded: np.ndarray) -> tuple[list[Instance] | None, np.ndarray, dict[str, float]]:
        """Detection (when ``image`` is given) and keep priority, with their own times in ms."""
        t = time.perf_counter()
        instances = self.segmenter.segment(image) if image is not None else None
        t1 = time.perf_counter()
        priority = self.recoverability.priority(padded)
        t2 = time.perf_counter()
        ms = {"score": (t2 - t1) * 1000.0}
        if image is not None:
            ms["segment"] = (t1 - t) * 1000.0
        return instances, priority, ms

    def _start_side(self, image: np.ndarray | None, padded: np.ndarray) -> Future | tuple:
        if self._pool is None:
            return self._side(image, padded)
        return self._pool.submit(self._side, image, padded)

    @staticmethod
    def _finish_side(side: Future | tuple) -> tuple[list[Instance] | None, np.ndarray, dict[str, float]]:
        return side.result() if isinstance(side, Future) else side

    def _cost(self, width: int, height: int, unit: str, coarse: np.ndarray | None, grid: tuple[int, int],
              dc: np.ndarray | None = None) -> SizeFn:
        if self._cost_fn != self._link_cost or coarse is None:
            return self._cost_fn(width, height, unit)
        return link_cost_fn(width, height, unit, self.config.tokenizer_id, self.config.packet, coarse, grid, dc)

    def _link_cost(self, width: int, height: int, unit: str) -> SizeFn:
        return link_cost_fn(width, height, unit, self.config.tokenizer_id, self.config.packet)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.encoder.close()
        self.segmenter.close()
        self.recoverability.close()

    def __enter__(self) -> EdgePipeline:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
