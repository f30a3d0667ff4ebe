"""Train the DeepJSCC baseline the channel benchmark compares against (resumable, time-boxed).

    nice -n 15 python benchmarks/train_deepjscc.py --minutes 14 --threads 1

Random crops of ``/work/shared/data/train`` pass through the model with a random SNR per image
(uniform in the config's range) and a random channel (AWGN or Rayleigh block fading), MSE loss,
optionally weighted up inside the edge segmenter's objects (``--roi-weight``, as in LRISC).
Training state is saved every ``--save-every`` seconds to ``--state`` (git-ignored pickle) and
the weights to ``--out`` (safetensors, config in the metadata), so a killed run resumes where
it stopped and ``--minutes`` bounds only this invocation. A model card is written beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmarks.deepjscc import DeepJSCC, DeepJSCCConfig, config_dict, transmit_image
from models.checkpoints import load_state, save_state, save_weights
from models.data import list_images, load_rgb
from models.metrics import psnr

DEFAULT_OUT = Path("benchmarks/checkpoints/deepjscc.safetensors")
DEFAULT_STATE = Path("benchmarks/checkpoints/.work/deepjscc.state.pt")
EVAL_SNRS = (-2.0, 4.0, 10.0, 16.0)


def load_pool(root: Path, max_images: int, max_side: int, seed: int) -> list[np.ndarray]:
    """Up to ``max_images`` training photos, downscaled so the long side is at most ``max_side``."""
    paths = list_images(root)
    if max_images and len(paths) > max_images:
        keep = np.random.default_rng(seed).choice(len(paths), max_images, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    out = []
    for p in tqdm(paths, desc="loading", file=sys.stderr, leave=False):
        im = Image.fromarray(load_rgb(p))
        s = max_side / max(im.size)
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC)
        out.append(np.asarray(im))
    return out


def roi_masks(images: list[np.ndarray]) -> list[np.ndarray]:
    """Union of the edge segmenter's instance masks per image (float32 0/1)."""
    from edge.segmenter import SegmenterConfig, create_segmenter

    with create_segmenter(SegmenterConfig()) as seg:
        out = []
        for im in tqdm(images, desc="segmenting", file=sys.stderr, leave=False):
            inst = seg.segment(im)
            m = np.any([i.mask for i in inst], axis=0) if inst else np.zeros(im.shape[:2], bool)
            out.append(m.astype(np.float32))
    return out


def crops(images: list[np.ndarray], masks: list[np.ndarray] | None, n: int, size: int,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(n, 3, size, size) crops in [0, 1] with flips, and their ROI mask crops when given."""
    xs, ms = [], []
    for k in rng.integers(0, len(images), n):
        im = images[k]
        y = int(rng.integers(0, im.shape[0] - size + 1))
        x = int(rng.integers(0, im.shape[1] - size + 1))
        flip = rng.random() < 0.5
        c = im[y : y + size, x : x + size]
        xs.append(c[:, ::-1] if flip else c)
        if masks is not None:
            m = masks[k][y : y + size, x : x + size]
            ms.append(m[:, ::-1] if flip else m)
    t = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).copy()).float().div(255)
    return t, (torch.from_numpy(np.stack(ms).copy())[:, None] if masks is not None else None)


def evaluate(model: DeepJSCC, images: list[np.ndarray], snrs: tuple[float, ...] = EVAL_SNRS) -> dict:
    """Mean PSNR per channel and SNR over ``images`` (fixed noise seeds)."""
    model.eval()
    res = {kind: {f"{s:g}": float(np.mean([psnr(im, transmit_image(model, im, s, kind, seed=i))
                                           for i, im in enumerate(images)]))
                  for s in snrs} for kind in ("awgn", "rayleigh")}
    model.train()
    return res


def write_card(path: Path, meta: dict) -> None:
    c = meta["config"]
    lines = [
        "# DeepJSCC baseline (benchmarks/checkpoints/deepjscc.safetensors)",
        "",
        "Conv autoencoder after Bourtsoulatze et al. 2019 (5x5 convs, PReLU, 1/8 resolution latent,",
        "per-image power normalisation), made SNR-adaptive by an SNR input plane to encoder and decoder.",
        "Trained here by `benchmarks/train_deepjscc.py` on random crops of /work/shared/data/train",
        "(BSDS500 train+test, Sun-Hays 80, Urban100; research-use images), random SNR per image uniform in",
        f"[{c['snr_min_db']}, {c['snr_max_db']}] dB, AWGN or Rayleigh block fading (receiver knows h), MSE loss"
        + (f" with weight {meta['roi_weight']} extra inside the edge segmenter's objects." if meta["roi_weight"] else "."),
        "",
        f"- latent channels c = {c['channels']}, width {c['width']}: "
        f"{c['channels'] / 128:.4f} complex channel uses per pixel (k/n = {c['channels'] / 384:.4f})",
        f"- parameters: {meta['parameters']}; steps: {meta['steps']}; batch {meta['batch']} x {meta['crop']} px crops;"
        f" wall time {meta['wall_s'] / 60:.1f} min on {meta['threads']} CPU thread(s), niced, beside other training",
        "- a deliberately small CPU budget: a baseline that is under-trained, not a tuned DeepJSCC;"
        " treat its curve as a lower bound for the method",
        "",
        "Held-out PSNR (dB; /work/shared/data/val, first images, full resolution):",
        "",
        "| channel | " + " | ".join(f"{s} dB" for s in meta.get("eval", {}).get("awgn", {})) + " |",
        "|---|" + "---|" * len(meta.get("eval", {}).get("awgn", {})),
    ]
    for kind, row in meta.get("eval", {}).items():
        lines.append(f"| {kind} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |")
    path.write_text("\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/train"))
    p.add_argument("--val", type=Path, default=Path("/work/shared/data/val"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--state", type=Path, default=DEFAULT_STATE)
    p.add_argument("--minutes", type=float, default=14.0, help="wall-clock budget of this invocation")
    p.add_argument("--save-every", type=float, default=120.0, help="seconds between checkpoints")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels", type=int, default=DeepJSCCConfig.channels)
    p.add_argument("--width", type=int, default=DeepJSCCConfig.width)
    p.add_argument("--roi-weight", type=float, default=0.0, help="extra MSE weight inside segmenter objects")
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--eval-images", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))
    torch.manual_seed(args.seed)
    state = load_state(args.state)
    config = DeepJSCCConfig(**state["config"]) if state else DeepJSCCConfig(channels=args.channels, width=args.width)
    model = DeepJSCC(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, wall = 0, 0.0
    rng = np.random.default_rng(args.seed)
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, wall = state["step"], state["wall_s"]
        rng.bit_generator.state = state["rng"]
        print(f"resuming at step {step} ({wall / 60:.1f} min trained)", file=sys.stderr)
    images = load_pool(args.data, args.max_images, args.max_side, args.seed)
    images = [im for im in images if min(im.shape[:2]) >= args.crop]
    if not images:
        print(f"no training image of at least {args.crop} px in {args.data}", file=sys.stderr)
        return 2
    masks = roi_masks(images) if args.roi_weight > 0 else None
    n_params = sum(p.numel() for p in model.parameters())
    meta = {"steps": step, "wall_s": wall, "batch": args.batch, "crop": args.crop, "threads": args.threads,
            "roi_weight": args.roi_weight, "parameters": n_params, "config": config_dict(config)}

    def checkpoint() -> None:
        meta.update(steps=step, wall_s=wall)
        save_weights(model, args.out, config_dict(config), {k: v for k, v in meta.items() if k != "config"})
        save_state({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "wall_s": wall,
                    "rng": rng.bit_generator.state, "config": config_dict(config)}, args.state)

    kinds = ("awgn", "rayleigh")
    t_start = t_last = time.monotonic()
    deadline = t_start + args.minutes * 60
    bar = tqdm(total=int(args.minutes * 60), desc="deepjscc", unit="s", file=sys.stderr)
    ema = None
    model.train()
    while time.monotonic() < deadline:
        x, m = crops(images, masks, args.batch, args.crop, rng)
        snr = torch.from_numpy(rng.uniform(config.snr_min_db, config.snr_max_db, args.batch)).float()
        kind = kinds[int(rng.integers(0, 2))]
        y = model(x, snr, kind)
        err = (y - x).pow(2).mean(1, keepdim=True)
        loss = (err * (1 + args.roi_weight * m)).mean() if m is not None else err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        now = time.monotonic()
        wall += now - t_last
        bar.update(int(now - t_start) - bar.n)
        t_last = now
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(step=step, psnr=f"{-10 * math.log10(max(ema, 1e-10)):.2f}")
        if now - getattr(checkpoint, "at", t_start) >= args.save_every:
            checkpoint()
            checkpoint.at = now  # type: ignore[attr-defined]
    bar.close()
    val = list_images(args.val)[: args.eval_images]
    if val:
        meta["eval"] = evaluate(model, [load_rgb(p) for p in val])
    checkpoint()
    write_card(args.out.with_name("deepjscc.md"), meta)
    print(json.dumps({k: meta[k] for k in ("steps", "wall_s", "parameters")} | {"eval": meta.get("eval")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
