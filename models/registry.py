"""Tokenizer id (the wire format's constant) -> the files and classes that implement it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.checkpoints import CHECKPOINT_DIR


class ModelNotFound(FileNotFoundError):
    """The weights for a tokenizer id are not on disk."""


@dataclass(frozen=True)
class ModelFiles:
    tokenizer_id: int
    tokenizer: str
    maskgit: str
    encoder_onnx: str
    scorer: str
    scorer_onnx: str
    # the light edge encoder distilled from the tokenizer's own (models.fast_encoder): same ids
    fast_encoder: str = ""
    fast_encoder_onnx: str = ""

    def path(self, name: str, root: Path | None = None) -> Path:
        return (root or CHECKPOINT_DIR) / getattr(self, name)


REGISTRY: dict[int, ModelFiles] = {
    1: ModelFiles(1, "tokenizer_f8_k1024.safetensors", "maskgit_f8_k1024.safetensors",
                  "tc-vq-f8-k1024.encoder.onnx", "scorer_f8.safetensors", "scorer.onnx"),
    # tc-vq2-f16c-f8: tokenizer v2 (coarse f16 FSQ layer + v1's fine f8 tokens), its coarse-aware
    # MaskGIT (``models.codec2``) and a scorer distilled from that restorer (which fine tokens the
    # coarse layer does not already predict).
    3: ModelFiles(3, "tokenizer2_f16c_f8.safetensors", "maskgit2_f16c_f8.safetensors",
                  "tc-vq2-f16c-f8.encoder.onnx", "scorer2_f16c_f8.safetensors", "scorer2.onnx",
                  "fast_encoder_f16c_f8.safetensors", "tc-vq2-f16c-f8.fast-encoder.onnx"),
}


def files_for(tokenizer_id: int) -> ModelFiles:
    try:
        return REGISTRY[tokenizer_id]
    except KeyError:
        raise ModelNotFound(f"no shipped models for tokenizer id {tokenizer_id}; known: {sorted(REGISTRY)}") from None
