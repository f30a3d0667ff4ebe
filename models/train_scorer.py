"""Distil the MaskGIT restorer's per-token entropy into the edge's scorer network.

    python -m models.train_scorer --minutes 10

Targets: every training image's token grid is masked twice with complementary dispersed masks;
one restorer pass per mask gives the prediction entropy of every cell while it is masked. The
scorer learns to predict that from pixels alone (the edge has no restorer). Validation reports
the Spearman correlation between the score and the true per-token restore error (pixel MSE of
the token's 8x8 patch after a real Halton restore at 50% dispersed masking, against the
all-tokens decode).

``--tokenizer-id 3`` distils tokenizer v2's coarse-conditioned restorer instead: its entropy is
taken with the coarse layer known, half of it with half the fine cells as context (as for v1)
and half with no fine context at all (the coarse-only background the v2 edge mostly leaves), so
the score says which fine tokens the coarse layer does *not* already predict.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from models.checkpoints import CHECKPOINT_DIR, WORK_DIR, load_state, save_state, save_weights
from models.codec import TokenCodec
from models.codec2 import TokenCodec2
from models.data import list_images, load_folder, load_rgb
from models.masks import dispersed_known
from models.scorer import Scorer, ScorerConfig

SCORER_OUT = {1: "scorer_f8.safetensors", 3: "scorer2_f16c_f8.safetensors"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--tokenizer-id", type=int, choices=(1, 3), default=1)
    p.add_argument("--out", default="", help="default: scorer_f8.safetensors (id 1), scorer2_f16c_f8.safetensors (id 3)")
    p.add_argument("--run", default="", help="default: scorer_f8 (id 1), scorer2_f16c_f8 (id 3)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--minutes", type=float, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--val-limit", type=int, default=12)
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))


def _entropy(logits: torch.Tensor) -> np.ndarray:
    p = torch.log_softmax(logits, dim=-1)
    return -(p.exp() * p).sum(-1).cpu().numpy()


@torch.no_grad()
def entropy_targets(codec: TokenCodec | TokenCodec2, grid: np.ndarray, rng: np.random.Generator,
                    coarse: np.ndarray | None = None) -> np.ndarray:
    """Per-cell prediction entropy of the restorer with the cell masked in dispersed context; with
    ``coarse`` values (tokenizer v2) averaged with the entropy given the coarse layer alone."""
    h, w = grid.shape
    known = dispersed_known(h, w, 0.5, rng)
    out = np.zeros((h, w), dtype=np.float32)
    for k in (known, ~known):
        ids = np.where(k, grid, codec.restorer.mask_id)
        ent = _entropy(codec.restorer.logits(ids, coarse) if coarse is not None else codec.restorer.logits(ids))
        out[~k] = ent[~k]
    if coarse is not None:
        out = 0.5 * (out + _entropy(codec.restorer.logits(np.full_like(grid, codec.restorer.mask_id), coarse)))
    return out


def pad8(im: np.ndarray) -> np.ndarray:
    h, w = im.shape[:2]
    return np.pad(im, ((0, (-h) % 8), (0, (-w) % 8), (0, 0)), mode="edge")


@torch.no_grad()
def true_restore_error(codec: TokenCodec | TokenCodec2, im: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(per-token MSE after restore at 50% dispersed masking, masked cells) for one image; for
    tokenizer v2 with the whole coarse layer known, against the all-fine-tokens decode."""
    im = pad8(im)
    size = im.shape[:2]
    if isinstance(codec, TokenCodec2):
        grid, coarse = codec.encode([im])[0]
        h, w = grid.shape
        known = dispersed_known(h, w, 0.5, rng)
        ck = [np.ones(coarse.shape[1:], bool)]
        ref = codec.reconstruct([grid], [np.ones_like(known)], [coarse], ck, [size])[1][0].astype(np.float64)
        rec = codec.reconstruct([grid], [known], [coarse], ck, [size])[1][0].astype(np.float64)
        err = ((ref - rec) ** 2).mean(-1).reshape(h, 8, w, 8).mean(axis=(1, 3))
        return err, ~known
    grid = codec.encode([im])[0]
    h, w = grid.shape
    known = dispersed_known(h, w, 0.5, rng)
    restored = codec.restore([grid], [known])[0]
    ref = codec.decode([grid], [size])[0].astype(np.float64)
    rec = codec.decode([restored], [size])[0].astype(np.float64)
    err = ((ref - rec) ** 2).mean(-1).reshape(h, 8, w, 8).mean(axis=(1, 3))
    return err, ~known


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    codec: TokenCodec | TokenCodec2
    if args.tokenizer_id == 3:
        codec = TokenCodec2.load(3, device="cpu")
        args.run = args.run or "scorer2_f16c_f8"
    else:
        codec = TokenCodec.load(device="cpu")
        args.run = args.run or "scorer_f8"
    # Never the registry's path for id 3: until a v2 scorer ships, id 3 shares v1's scorer file.
    args.out = args.out or str(CHECKPOINT_DIR / SCORER_OUT[args.tokenizer_id])
    work = WORK_DIR / args.run
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    cache = work / "targets.npz"
    paths = list_images(args.train)
    if args.train_limit and args.train_limit < len(paths):
        # Evenly spaced, so every source set (BSDS, Sun-Hays, Urban100) is represented.
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.train_limit).round().astype(int)]
    images = [pad8(load_rgb(p)) for p in paths]
    if cache.exists():
        z = np.load(cache)
        targets = [z[f"t{i}"] for i in range(len(images))]
    else:
        targets = []
        for im in tqdm(images, desc="restorer entropy targets", mininterval=10, file=sys.stdout):
            if isinstance(codec, TokenCodec2):
                grid, levels = codec.encode([im])[0]
                values = codec.coarse_values(levels)[0].cpu().numpy()
                targets.append(entropy_targets(codec, grid, rng, values))
            else:
                targets.append(entropy_targets(codec, codec.encode([im])[0], rng))
        np.savez(cache, **{f"t{i}": t for i, t in enumerate(targets)})
    cfg = ScorerConfig()
    model = Scorer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    step, wall = 0, 0.0
    st = load_state(work / "state.pt")
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        step, wall = st["step"], st["wall"]
    t0, wall0 = time.time(), wall
    c, g = args.crop, args.crop // 8
    bar = tqdm(total=args.steps, initial=step, desc="scorer", mininterval=10, file=sys.stdout)
    while step < args.steps and not (args.minutes and wall >= args.minutes * 60):
        xs, ys = [], []
        for _ in range(args.batch):
            k = int(rng.integers(0, len(images)))
            im, t = images[k], targets[k]
            ty = int(rng.integers(0, t.shape[0] - g + 1))
            tx = int(rng.integers(0, t.shape[1] - g + 1))
            xs.append(im[ty * 8 : ty * 8 + c, tx * 8 : tx * 8 + c])
            ys.append(t[ty : ty + g, tx : tx + g])
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div(255)
        y = torch.from_numpy(np.stack(ys))[:, None]
        loss = torch.nn.functional.smooth_l1_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        wall = wall0 + time.time() - t0
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 500 == 0:
            save_state({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                        "step": step, "wall": wall}, work / "state.pt")
    bar.close()
    save_state({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                "step": step, "wall": wall}, work / "state.pt")
    # Validation: rank correlation with the true restore error on held-out images.
    model.eval()
    vrng = np.random.default_rng(99)
    scores, errors, grads = [], [], []
    for im in load_folder(args.val, limit=args.val_limit):
        err, masked = true_restore_error(codec, im, vrng)
        with torch.no_grad():
            s = model(torch.from_numpy(pad8(im)).permute(2, 0, 1)[None].float().div(255))[0, 0].numpy()
        scores.append(s[masked])
        errors.append(err[masked])
        gy, gx = np.gradient(pad8(im).astype(np.float64).mean(-1))
        e = (gy**2 + gx**2).reshape(s.shape[0], 8, s.shape[1], 8).mean(axis=(1, 3))
        grads.append(e[masked])
    s_all, e_all, g_all = map(np.concatenate, (scores, errors, grads))
    metrics = {"spearman_score_vs_restore_error": spearman(s_all, e_all),
               "spearman_gradient_energy_vs_restore_error": spearman(g_all, e_all),
               "val_images": args.val_limit, "val_tokens": int(s_all.size)}
    print(json.dumps(metrics), flush=True)
    save_weights(model, args.out, cfg.to_dict(),
                 {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "data": str(args.train),
                            "tokenizer_id": args.tokenizer_id},
                  "metrics": metrics})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
