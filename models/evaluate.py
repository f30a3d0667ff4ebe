"""``tokencast models eval``: how good are the shipped tokenizer and restorer on a folder of images.

For each image: PSNR of encode->decode with every token kept (the ceiling), and for each mask
ratio with dispersed random masks: PSNR after MaskGIT restoration and after a naive fill (each
masked token copied from its nearest kept neighbour), plus seconds spent in each stage.

Images larger than ``--max-side`` are scaled down first (a 12-megapixel photo would take gigabytes
and minutes on a CPU and says nothing a camera frame does not). An image that cannot be read is
skipped, logged and listed under ``failed``; the run exits 2 only when no image was evaluated.
The JSON is strict: a mean over nothing, or an infinite PSNR, is ``null``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from models.codec import TokenCodec
from models.data import list_images
from models.masks import dispersed_known
from models.metrics import psnr
from models.restore import RestoreConfig

log = logging.getLogger(__name__)


def naive_fill(grid: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Copy each unknown cell from its nearest known cell (Euclidean on the grid)."""
    if known.all() or not known.any():
        return grid.copy()
    _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return grid[iy, ix]


def evaluate_image(codec: TokenCodec, im: np.ndarray, ratios: list[float], seed: int) -> dict:
    h, w = im.shape[:2]
    t0 = time.perf_counter()
    grid = codec.encode([im])[0]
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = codec.decode([grid], [(h, w)])[0]
    t_dec = time.perf_counter() - t0
    rec: dict = {"width": w, "height": h, "grid": list(grid.shape), "psnr_all_tokens": psnr(im, full),
                 "encode_s": t_enc, "decode_s": t_dec, "ratios": {}}
    rng = np.random.default_rng(seed)
    for r in ratios:
        known = dispersed_known(*grid.shape, 1.0 - r, rng)
        t0 = time.perf_counter()
        restored, latents = codec.restorer.restore_with_latents([grid], [known], seed=seed)
        restored = restored[0]
        t_res = time.perf_counter() - t0
        out = codec.decode_latents([restored], latents, [(h, w)])[0]
        hard = codec.decode([restored], [(h, w)])[0]
        naive = codec.decode([naive_fill(grid, known)], [(h, w)])[0]
        rec["ratios"][f"{r:g}"] = {
            "masked_ratio": float(1 - known.mean()),
            "psnr_restored": psnr(im, out),
            "psnr_restored_tokens": psnr(im, hard),
            "psnr_naive_fill": psnr(im, naive),
            "token_accuracy": float((restored[~known] == grid[~known]).mean()) if (~known).any() else 1.0,
            "restore_s": t_res,
        }
    return rec


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarize(records: list[dict], ratios: list[float]) -> dict:
    """Means over the images; None (JSON null) where there is nothing finite to average."""
    s: dict = {"images": len(records),
               "psnr_all_tokens": _mean([r["psnr_all_tokens"] for r in records]),
               "encode_s": _mean([r["encode_s"] for r in records]),
               "decode_s": _mean([r["decode_s"] for r in records]), "ratios": {}}
    for r in ratios:
        key = f"{r:g}"
        vals = [x["ratios"][key] for x in records]
        row = {k: _mean([v[k] for v in vals])
               for k in ("psnr_restored", "psnr_restored_tokens", "psnr_naive_fill", "token_accuracy", "restore_s")}
        row["loss_vs_all_tokens_db"] = _diff(s["psnr_all_tokens"], row["psnr_restored"])
        row["gain_over_naive_db"] = _diff(row["psnr_restored"], row["psnr_naive_fill"])
        s["ratios"][key] = row
    return s


def strict_json(value: object) -> object:
    """``value`` with every non-finite float replaced by None: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def read_image(path: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int] | None]:
    """RGB uint8 pixels, scaled down so the longer side is at most ``max_side``; the original
    (width, height) when it was scaled, else None. PIL's draft mode lets a big JPEG decode at a
    fraction of its size, so a 12-megapixel photo never sits in memory whole."""
    with Image.open(path) as im:
        original = im.size
        if max_side and max(original) > max_side:
            im.draft("RGB", (max_side, max_side))
            rgb = im.convert("RGB")
            scale = max_side / max(original)
            size = (max(8, round(original[0] * scale)), max(8, round(original[1] * scale)))
            return np.array(rgb.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8), original
        # np.array, not asarray: PIL pixels are read-only, which torch warns about downstream
        return np.array(im.convert("RGB"), dtype=np.uint8), None


def sample_paths(folder: Path) -> list[Path]:
    """scikit-image's bundled photos written as PNGs into ``folder`` (the default --images; no download)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = folder / f"{name}.png"
        if not path.is_file():
            Image.fromarray(np.asarray(getattr(data, name)())[..., :3]).save(path)
        out.append(path)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokencast models eval", description=__doc__)
    p.add_argument("--images", type=Path, default=None,
                   help="image file or folder (searched recursively; default: scikit-image's sample photos)")
    p.add_argument("--out", type=Path, default=Path("models_eval_out"),
                   help="output folder for models_eval.json (default models_eval_out)")
    p.add_argument("--mask-ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7],
                   help="shares of tokens masked before restoring (default 0.3 0.5 0.7)")
    p.add_argument("--limit", type=int, default=0, help="use at most N images (default: all)")
    p.add_argument("--max-side", type=int, default=640,
                   help="scale larger images down to this longer side first (default 640, VGA like a camera frame; 0: never)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    p.add_argument("--steps", type=int, default=8, help="restore steps")
    p.add_argument("--pick", choices=["argmax", "mmse"], default="mmse", help="how a restored token is chosen")
    p.add_argument("--latents", choices=["reveal", "first", "tokens"], default="reveal",
                   help="pixels of restored cells from regressed code vectors or from the tokens")
    p.add_argument("--random-init", action="store_true", help="untrained weights (for tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for r in args.mask_ratios:
        if not 0 <= r < 1:
            print(f"tokencast models eval: mask ratio {r} is not in [0, 1)", file=sys.stderr)
            return 2
    if args.images is not None and not args.images.exists():
        print(f"tokencast models eval: --images {args.images} does not exist", file=sys.stderr)
        return 2
    paths = list_images(args.images) if args.images is not None else sample_paths(args.out / "samples")
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        print(f"tokencast models eval: no images in {args.images}", file=sys.stderr)
        return 2
    codec = TokenCodec.load(device=args.device, random_init=args.random_init,
                            restore=RestoreConfig(steps=args.steps, pick=args.pick, latents=args.latents))
    records: list[dict] = []
    failed: list[dict] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with logging_redirect_tqdm():  # a skipped image's line prints above the bar, not glued to it
            for path in tqdm(paths, desc="models eval", file=sys.stderr):
                try:
                    im, original = read_image(path, args.max_side)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    log.error("%s: skipped: cannot read image (%s)", path, exc)
                    failed.append({"image": str(path), "error": type(exc).__name__, "message": str(exc)})
                    continue
                rec = evaluate_image(codec, im, args.mask_ratios, args.seed)
                rec["image"] = path.name
                if original is not None:
                    rec["original_size"] = list(original)
                records.append(rec)
    finally:  # what was measured is kept, also when a later image fails hard
        result = {"summary": summarize(records, args.mask_ratios) | {"failed": len(failed)},
                  "images": records, "failed": failed}
        (out / "models_eval.json").write_text(json.dumps(strict_json(result), indent=2, allow_nan=False) + "\n")
    if not records:
        print(f"tokencast models eval: no image could be read ({len(failed)} skipped; see {out / 'models_eval.json'})",
              file=sys.stderr)
        return 2
    print(json.dumps(strict_json(result["summary"]), indent=2))
    return 0
