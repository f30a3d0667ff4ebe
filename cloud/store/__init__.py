"""Frame stores behind a registry keyed by ``[store] type`` (or the scheme of ``store = "<url>"``).

Each backend module exposes ``create(cfg: StoreConfig) -> Store`` and imports its driver itself,
so a worker on SQLite never needs psycopg. ``sqlite``: the embedded default, one host.
``postgresql``: one database shared by workers on several hosts (``cloud/store/postgres.py``).
The worker does not know which it has.
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
    ReferenceRecord,
    SessionRecord,
    StagedFragment,
    Store,
    StoreError,
    StoreFull,
    StoreUnavailable,
)

BACKENDS: dict[str, str] = {
    "sqlite": "cloud.store.sqlite",
    "postgresql": "cloud.store.postgres",
}


def make_store(cfg: StoreConfig) -> Store:
    module_name = BACKENDS.get(cfg.type)
    if module_name is None:
        raise StoreError(f"unknown store type {cfg.type!r}; choose from {', '.join(BACKENDS)}")
    module = importlib.import_module(module_name)
    store: Store = module.create(cfg)
    return store


__all__ = ["BACKENDS", "Claim", "DeviceSummary", "FramePaths", "FrameRecord", "QuarantineRecord", "ReferenceRecord",
           "SessionRecord", "StagedFragment",
           "Store", "StoreError", "StoreFull", "StoreUnavailable", "make_store"]
