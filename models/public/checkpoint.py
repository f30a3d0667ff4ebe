"""Reading public torch checkpoints without running their pickles, and matching keys exactly.

Public checkpoints are pickled training dicts (``{"model": state_dict, ...}``), not safetensors,
so they are read with ``torch.load(weights_only=True)``: tensors, containers and plain numbers
only. ``argparse.Namespace`` is allowed too because training scripts routinely store their
``args`` beside the weights and a namespace is inert attribute storage. Anything else (a custom
class, a function) is refused unless the caller passes ``allow_pickle=True`` for a file it trusts.

Key matching is done here rather than left to ``load_state_dict`` so that a wrong file fails with
one typed error naming the missing, unexpected and wrongly shaped keys.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

# Wrappers that prefix every key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 8  # keys named per category in an error message


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of the expected kind."""


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint whose state dict does not fit the architecture."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched  # (key, shape in file, shape expected)


def _named(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def read_state_dict(path: str | Path, containers: Iterable[str], *,
                    allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict inside a torch checkpoint, looked up under the first of ``containers`` present.

    A file that is itself a flat ``{name: tensor}`` dict is accepted as is. Wrapper prefixes
    (``module.``, ``_orig_mod.``) are stripped. Raises FileNotFoundError for a missing path and
    CheckpointError for anything unreadable or without tensors where they should be.
    """
    path = Path(path)
    containers = tuple(containers)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    # safe_globals arrived in torch 2.5; on older versions a file holding args is refused by name.
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allowed = safe_globals([argparse.Namespace]) if safe_globals else contextlib.nullcontext()
    try:
        with allowed:
            obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if refused:
            raise CheckpointError(
                f"{path}: holds a pickled {refused.group(1)}, which weights-only loading refuses; "
                "pass allow_pickle=True only if you trust where the file came from") from e
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e.__class__.__name__})") from e
    except Exception as e:  # a damaged file surfaces as almost any exception type from torch.load
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e.__class__.__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    sd = next((obj[k] for k in containers if isinstance(obj.get(k), dict)), None)
    if sd is None:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            sd = obj
        else:
            raise CheckpointError(f"{path}: no state dict under any of {list(containers)}; "
                                  f"top-level keys are {_named(sorted(map(str, obj)))}")
    bad = [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {_named(bad)}")
    return {_strip(str(k)): v for k, v in sd.items()}


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def load_exact(model: nn.Module, sd: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strictly put ``sd``'s tensors into ``model``, raising CheckpointMismatch with every bad key named.

    The tensors are assigned, not copied, so ``model`` may be built on the meta device (no
    wasted random init of a large network); floating tensors are cast to the model's own dtype.
    Assignment unties shared parameters: the caller re-ties them.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted((k, tuple(sd[k].shape), tuple(own[k].shape))
                        for k in set(own) & set(sd) if sd[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_named(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_named(unexpected)}")
        if mismatched:
            parts.append("wrong shapes: " + _named([f"{k} {a} (expected {b})" for k, a, b in mismatched]))
        raise CheckpointMismatch(f"{source}: does not fit {type(model).__name__}; " + "; ".join(parts),
                                 missing, unexpected, mismatched)
    cast = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(cast, strict=True, assign=True)
