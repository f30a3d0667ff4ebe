"""Saving and loading shipped weights (safetensors + JSON config) and resumable training state.

Shipped files are safetensors so they load without pickle; the architecture config travels in
the safetensors metadata, so one file is enough to rebuild the model. Training state (optimizer,
RNG, step) is a torch pickle under ``models/checkpoints/.work/``, which git ignores.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
WORK_DIR = CHECKPOINT_DIR / ".work"


def save_weights(model: torch.nn.Module, path: str | Path, config: dict, extra: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(config)}
    if extra:
        meta.update({k: json.dumps(v) for k, v in extra.items()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(v) for k, v in meta.items()}


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return load_file(str(path)), read_metadata(path)


def save_state(state: dict, path: str | Path) -> None:
    """Atomic write so a training run killed mid-save resumes from the previous state."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
