"""``tokencast models eval``: how good are the shipped tokenizer and restorer on a folder of images.

For each image: PSNR of encode->decode with every token kept (the ceiling), and for each mask
ratio with dispersed random masks: PSNR after MaskGIT restoration and after a naive fill (each
masked token copied from its nearest kept neighbour), plus seconds spent in each stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from models.codec import TokenCodec
from models.data import list_images, load_rgb
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


def summarize(records: list[dict], ratios: list[float]) -> dict:
    s: dict = {"images": len(records),
               "psnr_all_tokens": float(np.mean([r["psnr_all_tokens"] for r in records])),
               "encode_s": float(np.mean([r["encode_s"] for r in records])),
               "decode_s": float(np.mean([r["decode_s"] for r in records])), "ratios": {}}
    for r in ratios:
        key = f"{r:g}"
        vals = [x["ratios"][key] for x in records]
        s["ratios"][key] = {k: float(np.mean([v[k] for v in vals]))
                            for k in ("psnr_restored", "psnr_restored_tokens", "psnr_naive_fill", "token_accuracy",
                                      "restore_s")}
        s["ratios"][key]["loss_vs_all_tokens_db"] = s["psnr_all_tokens"] - s["ratios"][key]["psnr_restored"]
        s["ratios"][key]["gain_over_naive_db"] = (s["ratios"][key]["psnr_restored"]
                                                  - s["ratios"][key]["psnr_naive_fill"])
    return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokencast models eval", description=__doc__)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mask-ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=8, help="restore steps")
    p.add_argument("--pick", choices=["argmax", "mmse"], default="mmse", help="how a restored token is chosen")
    p.add_argument("--latents", choices=["reveal", "first", "tokens"], default="reveal",
                   help="pixels of restored cells from regressed code vectors or from the tokens")
    p.add_argument("--random-init", action="store_true", help="untrained weights (for tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for r in args.mask_ratios:
        if not 0 <= r < 1:
            print(f"tokencast models eval: mask ratio {r} is not in [0, 1)", file=sys.stderr)
            return 2
    paths = list_images(args.images)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        print(f"tokencast models eval: no images in {args.images}", file=sys.stderr)
        return 2
    codec = TokenCodec.load(device=args.device, random_init=args.random_init,
                            restore=RestoreConfig(steps=args.steps, pick=args.pick, latents=args.latents))
    records = []
    for path in tqdm(paths, desc="models eval", file=sys.stderr):
        try:
            im = load_rgb(path)
        except OSError as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)
            continue
        rec = evaluate_image(codec, im, args.mask_ratios, args.seed)
        rec["image"] = path.name
        records.append(rec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"summary": summarize(records, args.mask_ratios), "images": records}
    (out / "models_eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    return 0
