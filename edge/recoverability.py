"""Keep priority for non-semantic tokens: how badly the restorer would miss each one if masked.

Two signals, fused: the learned scorer (an ONNX model predicting the restore error of a token
were it masked; ``image`` [1,3,H,W] in [0,1], H and W multiples of 8 -> ``difficulty``
[1,1,H/8,W/8]) and the hand-made local complexity. Without the scorer file the edge runs on
complexity alone and says so once, so a camera works before the models lead ships it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from .complexity import complexity_map, robust_unit
from .runtime import InferenceBackend, RuntimeConfig, create_backend
from .runtime.registry import BackendError

log = logging.getLogger(__name__)

# Distilled from the v2 (coarse-conditioned) restorer: Spearman 0.72 with its restore error, the v1
# scorer 0.60 (12 val images); both look at pixels only, so either serves tokenizer 1 too.
DEFAULT_SCORER = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "scorer2.onnx"


@dataclass
class RecoverabilityConfig:
    scorer: Path | None = DEFAULT_SCORER  # None or a missing file: complexity only
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    scorer_weight: float = 0.5  # share of the learned difficulty in the fused priority (see MODEL_CARD)
    require_scorer: bool = False  # true: a missing scorer file is an error, not a fallback

    def __post_init__(self) -> None:
        if not 0.0 <= self.scorer_weight <= 1.0:
            raise ValueError(f"scorer_weight must be in [0, 1], got {self.scorer_weight}")


def fuse(complexity: np.ndarray, difficulty: np.ndarray | None, scorer_weight: float) -> np.ndarray:
    """One keep priority in [0, 1]: the scorer's difficulty (robustly scaled) blended with complexity."""
    if difficulty is None:
        return complexity.astype(np.float32)
    d = robust_unit(np.maximum(difficulty, 0.0))
    return (scorer_weight * d + (1.0 - scorer_weight) * complexity).astype(np.float32)


class Recoverability:
    """Scores a padded RGB frame; ``load()`` then ``priority(image)``."""

    def __init__(self, config: RecoverabilityConfig | None = None, factor: int = 8) -> None:
        self.config = config or RecoverabilityConfig()
        self.factor = factor
        self.scorer: InferenceBackend | None = None

    def load(self) -> Recoverability:
        path = self.config.scorer
        if path is None or not Path(path).is_file():
            if self.config.require_scorer:
                raise BackendError(f"recoverability scorer not found: {path}")
            log.info("recoverability: no scorer model at %s; ranking by local complexity only", path)
            return self
        self.scorer = create_backend(path, self.config.runtime).load()
        return self

    def difficulty(self, image: np.ndarray) -> np.ndarray | None:
        """The scorer's (H/8, W/8) difficulty for an RGB uint8 frame already padded to multiples of 8."""
        if self.scorer is None:
            return None
        x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = self.scorer.run({self.scorer.input_names[0]: x})
        d = np.asarray(out.get("difficulty", next(iter(out.values()))), np.float32)
        expected = (image.shape[0] // self.factor, image.shape[1] // self.factor)
        d = d.reshape(d.shape[-2:]) if d.ndim >= 2 else d
        if d.shape != expected:
            raise BackendError(f"scorer returned difficulty {d.shape}, expected {expected} for {image.shape[:2]}")
        return d

    def priority(self, image: np.ndarray) -> np.ndarray:
        """Keep priority in [0, 1] per token for a padded RGB uint8 frame; higher = keep first."""
        return fuse(complexity_map(image, self.factor), self.difficulty(image), self.config.scorer_weight)

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None

    def __enter__(self) -> Recoverability:
        return self.load()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
