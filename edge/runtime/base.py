"""The inference-backend contract: a model file in, ``run(dict of arrays) -> dict of arrays`` out.

Everything above this layer (encoder, segmenter, scorer) speaks numpy and tensor names only, so
the same model runs under ONNX Runtime on a laptop and under TensorRT on a Jetson. Dynamic
dimensions are ``None`` in a ``TensorSpec``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from .registry import BackendError

log = logging.getLogger(__name__)

Provider = Literal["cpu", "cuda", "tensorrt"]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def concrete(self, fill: int = 64) -> tuple[int, ...]:
        """A runnable shape: dynamic batch -> 1, other dynamic dims -> ``fill``."""
        return tuple((1 if i == 0 else fill) if d is None else d for i, d in enumerate(self.shape))


@dataclass
class RuntimeConfig:
    """How a model is executed; one per model in the pipeline config."""

    backend: str = "onnxruntime"
    # ONNX Runtime execution providers, in preference order; unavailable ones are dropped.
    providers: list[Provider] = field(default_factory=lambda: ["cpu"])
    intra_op_threads: int = 0  # 0 = the runtime's default
    device_id: int = 0
    warmup: bool = True
    warmup_dim: int = 64  # size used for dynamic dims in the warm-up run
    # ONNX Runtime's memory pattern pre-plans one arena block per input shape. For the edge's
    # dynamic-size graphs it only costs: the light encoder at 768x512 peaks at 161 MB RSS with it
    # and 117 MB without, and runs 67 instead of 76 ms. Off unless asked for.
    memory_pattern: bool = False

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")
        if self.warmup_dim < 1:
            raise ValueError(f"warmup_dim must be >= 1, got {self.warmup_dim}")


class InferenceBackend(ABC):
    """Loads one model file and runs it. Use as a context manager or call ``close()``."""

    name: str = "?"

    def __init__(self, model_path: str | Path, config: RuntimeConfig | None = None) -> None:
        self.model_path = Path(model_path)
        self.config = config or RuntimeConfig()
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._loaded = False

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def load(self) -> InferenceBackend:
        """Open the model, warm it up once and log what was loaded; returns self."""
        if self._loaded:
            return self
        if not self.model_path.is_file():
            raise BackendError(f"{self.name}: model file not found: {self.model_path}")
        self._open()
        self._loaded = True
        if self.config.warmup:
            self.run(self._warmup_feed())
        log.info(
            "%s loaded %s [%s] inputs=%s outputs=%s",
            self.name,
            self.model_path.name,
            self.describe(),
            _fmt(self.inputs),
            _fmt(self.outputs),
        )
        return self

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named arrays (cast to the model's dtypes); returns named outputs."""
        if not self._loaded:
            self.load()
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BackendError(
                f"{self.model_path.name}: missing inputs {missing}; the model takes {self.input_names}"
            )
        feed = {t.name: np.ascontiguousarray(inputs[t.name], dtype=t.dtype) for t in self.inputs}
        return self._run(feed)

    def _warmup_feed(self) -> dict[str, np.ndarray]:
        return {t.name: np.zeros(t.concrete(self.config.warmup_dim), t.dtype) for t in self.inputs}

    def describe(self) -> str:
        """Precision / device summary for the load log line."""
        return ""

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> InferenceBackend:
        return self.load()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def _open(self) -> None:
        """Load the model and fill ``self.inputs`` / ``self.outputs``."""

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute on contiguous arrays of the right dtypes."""


def _fmt(specs: list[TensorSpec]) -> str:
    return ", ".join(
        f"{t.name}{list('?' if d is None else d for d in t.shape)}:{np.dtype(t.dtype).name}" for t in specs
    )
