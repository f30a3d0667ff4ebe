"""Public pretrained checkpoints that plug into the restoring pipeline, loaded from local files.

Nothing here downloads: a user with internet fetches the file named below and passes its path.
Each entry is a name (the config string), the published file, where it comes from, and a loader
taking ``(path, device)``. Architectures are our own implementations of the papers, with module
names matching the published state-dict keys so the weights load with ``strict=True``.

Wire format: tokenizer id 16 in ``link.tokenizers.TOKENIZERS`` is "llamagen-vq-ds16-c2i"
(codebook 16384, factor 16): frames carrying id 16 are LlamaGen VQ-16 indices, which
"halton-maskgit-imagenet256" restores (16x16 token windows, i.e. 256x256 pixels; its loader also
reads the ImageNet_384_*.pth files, whose 24x24 position table it detects).

=========================== ============================== ==========================================
name                        file                           source
=========================== ============================== ==========================================
llamagen-vq-ds16-c2i        vq_ds16_c2i.pt                 huggingface.co/FoundationVision/LlamaGen
halton-maskgit-imagenet256  ImageNet_256_{tiny,small,base} huggingface.co/llvictorll/Halton-MaskGIT
                            .pth
=========================== ============================== ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.public.checkpoint import CheckpointError, CheckpointMismatch
from models.public.halton_maskgit import (
    HaltonMaskGIT,
    HaltonMaskGITConfig,
    HaltonRestoreAdapter,
    load_halton_maskgit,
)
from models.public.llamagen_vq import LlamaGenVQ, LlamaGenVQConfig, load_llamagen_vq

# The wire id of the token space both models speak (link.tokenizers.TOKENIZERS[16]).
LLAMAGEN_TOKENIZER_ID = 16


class UnknownPublicModel(LookupError):
    """A public model name that is not in ``PUBLIC_MODELS``."""


@dataclass(frozen=True)
class PublicModel:
    name: str
    filename: str  # as published; a glob where several sizes share a loader
    source: str
    tokenizer_id: int
    loader: Callable[..., nn.Module]

    def load(self, path: str | Path, device: str | torch.device = "cpu", **kwargs: object) -> nn.Module:
        return self.loader(path, device=device, **kwargs)


PUBLIC_MODELS: dict[str, PublicModel] = {
    m.name: m
    for m in (
        PublicModel("llamagen-vq-ds16-c2i", "vq_ds16_c2i.pt",
                    "https://huggingface.co/FoundationVision/LlamaGen", LLAMAGEN_TOKENIZER_ID, load_llamagen_vq),
        PublicModel("halton-maskgit-imagenet256", "ImageNet_256_*.pth",
                    "https://huggingface.co/llvictorll/Halton-MaskGIT", LLAMAGEN_TOKENIZER_ID,
                    load_halton_maskgit),
    )
}


def get_public_model(name: str) -> PublicModel:
    try:
        return PUBLIC_MODELS[name]
    except KeyError:
        raise UnknownPublicModel(f"unknown public model {name!r}; valid: {', '.join(PUBLIC_MODELS)}") from None


def load_public(name: str, path: str | Path, device: str | torch.device = "cpu", **kwargs: object) -> nn.Module:
    """Load public model ``name`` from the local file ``path`` (see the table above)."""
    return get_public_model(name).load(path, device=device, **kwargs)


__all__ = [
    "LLAMAGEN_TOKENIZER_ID", "PUBLIC_MODELS", "CheckpointError", "CheckpointMismatch", "HaltonMaskGIT",
    "HaltonMaskGITConfig", "HaltonRestoreAdapter", "LlamaGenVQ", "LlamaGenVQConfig", "PublicModel",
    "UnknownPublicModel", "get_public_model", "load_halton_maskgit", "load_llamagen_vq", "load_public",
]
