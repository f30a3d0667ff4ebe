"""Train tokenizer v2 (coarse f16 FSQ layer + fine f8 tokens) on CPU or GPU, resumably.

    python -m models.train_tokenizer2 --minutes 60 --threads 2

Starts from tokenizer v1 (``--init``): its encoder and codebook are frozen, so fine token ids are
v1's; the coarse head and the whole decoder train. Every crop gets a random *fine known map*
(none, all, a random share of cells, or object-shaped blobs), and the decoder sees the
normalised-convolution interpolation of the known fine codes elsewhere, flagged unknown. A few
crops also lose coarse cells (interpolated), as a lost coarse fragment would. Kill it at any
time and run the same command again: it resumes from ``models/checkpoints/.work/<run>/``.
The shipped file is written whenever validation improves.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from tqdm import tqdm

from models.checkpoints import WORK_DIR, load_state, load_weights, save_state, save_weights
from models.data import CropSampler, load_folder
from models.interp import interpolate_codes
from models.metrics import psnr
from models.tokenizer import TokenizerConfig
from models.tokenizer2 import Tokenizer2Config, TwoLayerTokenizer, coarse_pad, encoder_features
from models.train_tokenizer import lr_at, to_uint8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--init", default="models/checkpoints/tokenizer_f8_k1024.safetensors",
                   help="tokenizer v1 weights: encoder + codebook (frozen) and decoder start")
    p.add_argument("--out", default="models/checkpoints/tokenizer2_f16c_f8.safetensors")
    p.add_argument("--run", default="tokenizer2_f16c_f8")
    p.add_argument("--steps", type=int, default=4000, help="total steps (sets the LR schedule)")
    p.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--ssim-weight", type=float, default=0.1)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--val-limit", type=int, default=12)
    p.add_argument("--save-every", type=float, default=180.0, help="seconds between resumable saves")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--freeze-coarse-after", type=int, default=0,
                   help="step after which the coarse head stops changing (0: never), so the restorer "
                        "can train on final coarse levels in parallel")
    p.add_argument("--interp-sigma", type=float, default=1.5)
    p.add_argument("--export-only", action="store_true",
                   help="validate the run's saved state and write it to --out, without training")
    return p


def random_known(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, h, w) fine known maps: a fifth coarse-only, a seventh all fine, the rest a random
    5-60% of cells, half scattered and half as rectangles (object-shaped selections)."""
    out = torch.zeros(n, 1, h, w)
    kind = torch.rand(n, generator=gen)
    for i in range(n):
        k = float(kind[i])
        if k < 0.2:
            continue
        if k < 0.34:
            out[i] = 1
            continue
        ratio = 0.05 + 0.55 * float(torch.rand(1, generator=gen))
        if k < 0.67:
            out[i, 0] = (torch.rand(h, w, generator=gen) < ratio).float()
            continue
        while out[i].mean() < ratio:
            bh = int(torch.randint(2, max(3, h // 2 + 1), (1,), generator=gen))
            bw = int(torch.randint(2, max(3, w // 2 + 1), (1,), generator=gen))
            y = int(torch.randint(0, h - bh + 1, (1,), generator=gen))
            x = int(torch.randint(0, w - bw + 1, (1,), generator=gen))
            out[i, 0, y : y + bh, x : x + bw] = 1
    return out


def drop_coarse(values: torch.Tensor, gen: torch.Generator, share: float = 0.15) -> torch.Tensor:
    """Lose 10-40% of coarse cells in ``share`` of the samples and interpolate them back."""
    n, _, h, w = values.shape
    hit = torch.rand(n, generator=gen) < share
    if not hit.any():
        return values
    ratio = 0.1 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    keep = (torch.rand(n, 1, h, w, generator=gen) >= ratio).float()
    keep[~hit] = 1
    filled, _ = interpolate_codes(values, keep.to(values.device), 1.0)
    return filled


def prepare_fine(model: TwoLayerTokenizer, z: torch.Tensor, known: torch.Tensor, sigma: float) -> torch.Tensor:
    q = model.quantizer.lookup(model.quantizer.indices(z))
    filled, _ = interpolate_codes(q, known, sigma)
    return filled


@torch.no_grad()
def validate(model: TwoLayerTokenizer, images: list[np.ndarray], device: torch.device, sigma: float) -> dict:
    model.eval()
    res: dict[str, list[float]] = {"val_all": [], "val_coarse": [], "val_fine30": []}
    gen = torch.Generator().manual_seed(4321)
    for im in images:
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255).to(device)
        xp = coarse_pad(x * 2 - 1, model.coarse_factor)
        z, c = model.encode_parts(xp)
        cv = model.fsq.values(model.fsq.levels_of(c))
        h, w = z.shape[-2:]
        for key, ratio in (("val_all", 1.0), ("val_coarse", 0.0), ("val_fine30", 0.3)):
            known = (torch.rand(1, 1, h, w, generator=gen) < ratio).float().to(device)
            q = prepare_fine(model, z, known, sigma)
            y = model.decode_codes(q, known, cv, size=im.shape[:2])
            res[key].append(psnr(im, to_uint8(y)))
    model.train()
    return {k: float(np.mean(v)) for k, v in res.items()}


def score(m: dict) -> float:
    return m["val_all"] + m["val_coarse"] + m["val_fine30"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    init_state, init_meta = load_weights(args.init)
    fine_cfg = TokenizerConfig.from_dict(init_meta["config"])
    if not fine_cfg.mask_channel:
        raise SystemExit(f"--init {args.init}: needs the map-aware v1 decoder (mask_channel)")
    cfg = Tokenizer2Config(fine=fine_cfg)
    model = TwoLayerTokenizer(cfg).to(device)
    mapped = {k.replace("decoder.", "decoder.fine.", 1) if k.startswith("decoder.") else k: v
              for k, v in init_state.items()}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if unexpected or any(not (k.startswith("coarse_head.") or k.startswith("decoder.coarse.") or k == "fsq.halfw")
                         for k in missing):
        raise SystemExit(f"--init {args.init}: unexpected {unexpected}, missing {missing}")
    model.encoder.requires_grad_(False)
    model.quantizer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    print(f"loading images from {args.train} ...", flush=True)
    sampler = CropSampler(load_folder(args.train), args.crop, seed=args.seed)
    val_images = load_folder(args.val, limit=args.val_limit) if args.val_limit else []
    state_path = WORK_DIR / args.run / "state.pt"
    log_path = WORK_DIR / args.run / "log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    step, best, wall = 0, -1e9, 0.0
    # Step of the weights in --out. With --freeze-coarse-after, a file exported before the freeze
    # has a coarse head the restorer and the edge encoder (trained/exported on the frozen one)
    # do not match, so the first validation after the freeze always exports, and so does the end
    # of a run that has exported nothing since the freeze.
    exported = 0
    st = load_state(state_path)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sampler.set_state(st["sampler"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        step, best, wall = st["step"], st["best"], st["wall"]
        exported = st.get("exported", 0)
        print(f"resumed from {state_path} at step {step} ({wall / 60:.1f} min trained)", flush=True)
    if args.export_only:
        if st is None:
            raise SystemExit(f"--export-only: no saved state at {state_path}")
        m = validate(model, val_images, device, args.interp_sigma) if val_images else {}
        m.update(step=step, wall=round(wall, 1))
        extra = {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "batch": args.batch,
                           "crop": args.crop, "data": str(args.train), "init": str(args.init)}, "metrics": m}
        save_weights(model, args.out, cfg.to_dict(), extra)
        print(f"exported step {step} to {args.out}: {json.dumps(m)}", flush=True)
        return 0
    n_train = sum(p.numel() for p in params)
    print(f"tokenizer v2: {n_train / 1e6:.2f}M trainable parameters, device {device}", flush=True)

    def save() -> None:
        save_state({"model": model.state_dict(), "opt": opt.state_dict(), "sampler": sampler.state(),
                    "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "step": step, "best": best, "wall": wall, "exported": exported}, state_path)

    def stale() -> bool:
        return bool(args.freeze_coarse_after) and exported < args.freeze_coarse_after <= step

    def export(metrics: dict) -> None:
        nonlocal exported
        exported = step
        extra = {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "batch": args.batch,
                           "crop": args.crop, "data": str(args.train), "init": str(args.init)},
                 "metrics": metrics}
        save_weights(model, args.out, cfg.to_dict(), extra)

    t_start, t_saved, wall0 = time.time(), time.time(), wall
    bar = tqdm(total=args.steps, initial=step, desc="tokenizer2", mininterval=10, file=sys.stdout)
    while step < args.steps:
        if args.minutes and wall >= args.minutes * 60:
            print("wall-time limit reached", flush=True)
            break
        coarse_frozen = bool(args.freeze_coarse_after) and step >= args.freeze_coarse_after
        model.coarse_head.requires_grad_(not coarse_frozen)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warmup=100)
        x = torch.from_numpy(sampler.batch(args.batch)).to(device)
        with torch.no_grad():
            z, h = encoder_features(model.encoder, x * 2 - 1)
            known = random_known(z.shape[0], z.shape[2], z.shape[3], gen).to(device)
            q = prepare_fine(model, z, known, args.interp_sigma)
        cv = model.fsq(model.coarse_head(h))
        cv = drop_coarse(cv, gen)
        y01 = (model.decoder(q, known, cv) + 1) / 2
        mse = F.mse_loss(y01, x)
        loss = mse + 0.5 * F.l1_loss(y01, x)
        if args.ssim_weight:
            loss = loss + args.ssim_weight * (1 - ssim(y01.clamp(0, 1), x, data_range=1.0, size_average=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        wall = wall0 + (time.time() - t_start)
        bar.update(1)
        if step % 25 == 0:
            p_batch = 10 * math.log10(1 / max(mse.item(), 1e-10))
            bar.set_postfix(psnr=f"{p_batch:.2f}", loss=f"{loss.item():.4f}")
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step, "wall": round(wall, 1), "loss": loss.item(),
                                    "train_psnr": p_batch, "lr": opt.param_groups[0]["lr"]}) + "\n")
        if val_images and (step % args.val_every == 0 or step == args.steps):
            m = validate(model, val_images, device, args.interp_sigma)
            m.update(step=step, wall=round(wall, 1))
            bar.write(f"validation: {json.dumps(m)}")
            with open(log_path, "a") as f:
                f.write(json.dumps(m) + "\n")
            if score(m) > best or stale():
                best = score(m)
                export(m)
        if time.time() - t_saved > args.save_every:
            save()
            t_saved = time.time()
    bar.close()
    if val_images and stale():
        m = validate(model, val_images, device, args.interp_sigma)
        m.update(step=step, wall=round(wall, 1))
        print(f"validation (first export since the coarse freeze): {json.dumps(m)}", flush=True)
        best = score(m)
        export(m)
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
