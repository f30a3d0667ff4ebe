"""``engines/manifest.json``: what was built, from what, how well it does, and which file to use.

Schema (version 1)::

    {"schema": 1, "input_size": [H, W], "opset": 17,
     "calibration": {"source": "skimage.data" | DIR, "images": [{"name", "sha256"}]},
     "tensorrt": {"available": bool, "version": str | null},
     "models": {NAME: {"kind": "edge" | "cloud", "source": {"path", "sha256", "random_init"},
                       "recommended": PRECISION | null,
                       "engines": {PRECISION: ENTRY}}}}

ENTRY holds ``file``, ``sha256``, ``opset``, ``inputs``/``outputs`` (name -> dims), ``size_bytes``,
``latency_ms_median``, ``accuracy`` (metric -> value), ``metric``/``threshold``, ``status``
(``ok`` | ``below_threshold`` | ``skipped`` or ``failed`` with ``reason``), ``cache_key`` and, after a
TensorRT build, ``tensorrt`` (engine file, sha256, size). The cache key is the sha256 of the
source weights plus every option that changes the bytes; a matching key and file hash means the
entry is reused as is, which keeps a re-run fast and the manifest byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SCHEMA = 1
EXPORT_VERSION = 4  # bump when a change here alters exported bytes, to invalidate caches
REQUIRED_ENTRY_KEYS = ("file", "sha256", "opset", "inputs", "size_bytes", "latency_ms_median", "accuracy",
                       "status", "cache_key")
# Preference for the recommended engine: smallest/fastest first among those that pass.
PREFERENCE = {"edge": ("int8", "fp16", "fp32"), "cloud": ("fp16", "fp32", "int8")}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(source_sha256: str, **options: Any) -> str:
    blob = json.dumps({"source": source_sha256, "export_version": EXPORT_VERSION, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(path: Path) -> dict[str, Any]:
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"schema": SCHEMA, "models": {}}  # a broken manifest only costs a rebuild
        if data.get("schema") == SCHEMA:
            data.setdefault("models", {})
            return data
    return {"schema": SCHEMA, "models": {}}


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def reusable(entry: dict[str, Any] | None, key: str, out_dir: Path) -> bool:
    """True when ``entry`` was built with ``key`` and its file is still the one it describes."""
    if not entry or entry.get("cache_key") != key or entry.get("status") in ("skipped", "failed"):
        return False
    path = out_dir / entry["file"]
    return path.is_file() and sha256_file(path) == entry.get("sha256")


def recommend(kind: str, engines: dict[str, dict[str, Any]]) -> str | None:
    """The first precision of ``PREFERENCE[kind]`` that passes its accuracy threshold and, unless a
    TensorRT engine was built for it, is faster than FP32 where both were timed (ONNX Runtime on
    the build machine): a reduced precision that runs slower there must not become the default."""
    base = engines.get("fp32", {}).get("latency_ms_median")
    for precision in PREFERENCE[kind]:
        e = engines.get(precision, {})
        if e.get("status") != "ok":
            continue
        ms = e.get("latency_ms_median")
        if precision != "fp32" and "tensorrt" not in e and base is not None and ms is not None and ms >= base:
            continue
        return precision
    return None


def failures(data: dict[str, Any]) -> list[str]:
    """One line per engine that failed to build: ``model precision: reason``."""
    return [f"{name} {prec}: {e.get('reason', '')}" for name, model in sorted(data.get("models", {}).items())
            for prec, e in sorted(model.get("engines", {}).items()) if e.get("status") == "failed"]


def _fmt_shapes(shapes: dict[str, list]) -> str:
    return " ".join(f"{n}[{'x'.join(str(d) for d in dims)}]" for n, dims in shapes.items())


def table(data: dict[str, Any]) -> str:
    """The manifest as a fixed-width text table, one row per model and precision."""
    head = ("model", "prec", "status", "metric", "value", "min", "ms", "bytes", "sha256", "inputs")
    rows = [head]
    for name, model in sorted(data.get("models", {}).items()):
        for prec, e in sorted(model.get("engines", {}).items()):
            if e.get("status") in ("skipped", "failed"):
                rows.append((name, prec, e["status"], e.get("reason", ""), "", "", "", "", "", ""))
                continue
            star = "*" if model.get("recommended") == prec else ""
            rows.append((name, prec + star, e["status"], e.get("metric", ""), f"{e['accuracy'].get(e.get('metric'), '')}",
                         f"{e.get('threshold', '')}", f"{e['latency_ms_median']:.1f}", str(e["size_bytes"]),
                         e["sha256"][:12], _fmt_shapes(e["inputs"])))
    widths = [max(len(r[i]) for r in rows if r[2] not in ("skipped", "failed")) for i in range(len(head))]
    lines = []
    for r in rows:
        if r[2] in ("skipped", "failed"):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}: {r[3]}")
        else:
            lines.append("  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n(* = recommended; ms = median ONNX Runtime CPU latency on this machine)"
