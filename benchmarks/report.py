"""Shared plumbing for the benchmark CLIs: image lists, JSON/CSV writing, per-group means, plots."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from models.data import list_images, load_rgb


def images_in(directory: str | Path, limit: int = 0) -> list[Path]:
    paths = list_images(directory)
    return paths[:limit] if limit else paths


def load_image(path: Path, max_side: int = 0) -> np.ndarray:
    """RGB uint8; downscaled (Lanczos) so the long side is at most ``max_side`` when given."""
    im = load_rgb(path)
    if max_side and max(im.shape[:2]) > max_side:
        from PIL import Image

        s = max_side / max(im.shape[:2])
        pil = Image.fromarray(im).resize((round(im.shape[1] * s), round(im.shape[0] * s)), Image.Resampling.LANCZOS)
        im = np.asarray(pil)
    return im


def _clean(v: object) -> object:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(data), indent=2) + "\n")


def write_csv(path: Path, records: Sequence[dict]) -> None:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(records)


def nanmean(values: Iterable[float | None]) -> float:
    """Mean of the finite values; NaN when there are none (inf PSNR counts as missing)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else float("nan")


def group_means(records: Sequence[dict], keys: Sequence[str], fields: Sequence[str]) -> list[dict]:
    """One row per distinct ``keys`` tuple with the nan-mean of each field and the image count."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in keys)].append(r)
    return [dict(zip(keys, k, strict=True)) | {f: nanmean(r.get(f) for r in rs) for f in fields} | {"n": len(rs)}
            for k, rs in groups.items()]


def pyplot():  # noqa: ANN201 - matplotlib.pyplot, imported lazily with the file-only backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return 2
