"""Frame stores behind a registry keyed by ``[store] type`` in cloud.toml.

Each backend module exposes ``create(cfg: StoreConfig) -> Store`` and imports its driver itself.
Only ``sqlite`` ships. A PostgreSQL backend would be one more module here (``cloud/store/postgres.py``
registered as ``"postgres"``) implementing ``Store``: ``claim`` maps to
``SELECT ... FOR UPDATE SKIP LOCKED``, ``put_frame`` to ``INSERT ... ON CONFLICT DO NOTHING``,
images to a shared volume or object store; the worker does not change.
"""

from __future__ import annotations

import importlib

from cloud.config import StoreConfig
from cloud.store.base import (
    Claim,
    DeviceSummary,
    FramePaths,
    FrameRecord,
    QuarantineRecord,
    StagedFragment,
    Store,
    StoreError,
    StoreFull,
    StoreUnavailable,
)

BACKENDS: dict[str, str] = {
    "sqlite": "cloud.store.sqlite",
}


def make_store(cfg: StoreConfig) -> Store:
    module_name = BACKENDS.get(cfg.type)
    if module_name is None:
        raise StoreError(f"unknown store type {cfg.type!r}; choose from {', '.join(BACKENDS)}")
    module = importlib.import_module(module_name)
    store: Store = module.create(cfg)
    return store


__all__ = ["BACKENDS", "Claim", "DeviceSummary", "FramePaths", "FrameRecord", "QuarantineRecord", "StagedFragment",
           "Store", "StoreError", "StoreFull", "StoreUnavailable", "make_store"]
