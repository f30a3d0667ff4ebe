"""Train the VQ tokenizer on CPU (or GPU when present), resumably.

    python -m models.train_tokenizer --train ../shared/data/train --val ../shared/data/val \
        --minutes 60 --out models/checkpoints/tokenizer_f8_k1024.safetensors

Kill it at any time and run the same command again: it resumes from the last state saved
under ``models/checkpoints/.work/`` (every ``--save-every`` seconds). With
``--freeze-encoder-after N`` the encoder and codebook stop changing at step N and only the
decoder keeps training, so the tokens are final from then on and the MaskGIT restorer can be
trained on them in parallel.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from models.tokenizer import TokenizerConfig, VQTokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--out", default="models/checkpoints/tokenizer_f8_k1024.safetensors")
    p.add_argument("--run", default="tokenizer_f8_k1024", help="name of the resumable state under .work/")
    p.add_argument("--steps", type=int, default=6000, help="total steps (sets the LR schedule)")
    p.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ssim-weight", type=float, default=0.1)
    p.add_argument("--freeze-encoder-after", type=int, default=0, help="0: never")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-limit", type=int, default=16)
    p.add_argument("--save-every", type=float, default=180.0, help="seconds between resumable saves")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--downsample", type=int, default=8, choices=[8])
    p.add_argument("--init", default="", help="fine-tune these shipped weights (a fresh run only)")
    p.add_argument("--decoder-only", action="store_true",
                   help="freeze encoder and codebook from the start: token ids stay those of --init")
    p.add_argument("--mask-channel", action="store_true",
                   help="decoder also takes the known/restored map and learns to render interpolated codes")
    p.add_argument("--masked-share", type=float, default=0.75, help="share of crops with restored cells")
    p.add_argument("--interp-sigma", type=float, default=1.5, help="as the restorer's (models.interp)")
    return p


def lr_at(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def random_known(n: int, h: int, w: int, share: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, h, w) known maps: ``share`` of the samples lose a random 20-80% of their cells."""
    ratio = 0.2 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen)
    known = (torch.rand(n, 1, h, w, generator=gen) >= ratio).float()
    hit = (torch.rand(n, generator=gen) < share)[:, None, None, None]
    return torch.where(hit, known, torch.ones_like(known))


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return (y[0].permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)


@torch.no_grad()
def validate(model: VQTokenizer, images: list[np.ndarray], device: torch.device, sigma: float = 1.5) -> dict:
    model.eval()
    scores, masked, used = [], [], set()
    gen = torch.Generator().manual_seed(4321)
    for im in images:
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255).to(device)
        idx = model.encode(x)
        used.update(idx.unique().tolist())
        scores.append(psnr(im, to_uint8(model.decode(idx, size=im.shape[:2]))))
        if model.cfg.mask_channel:
            known = (torch.rand(1, 1, *idx.shape[1:], generator=gen) >= 0.5).float().to(device)
            codes, _ = interpolate_codes(model.quantizer.lookup(idx), known, sigma)
            masked.append(psnr(im, to_uint8(model.decode_codes(codes, known, size=im.shape[:2]))))
    model.train()
    out = {"val_psnr": float(np.mean(scores)), "val_codes_used": len(used)}
    if masked:
        out["val_psnr_interp50"] = float(np.mean(masked))  # half the cells interpolated, as restored
    return out


def score(m: dict) -> float:
    """Export criterion: all-tokens PSNR, plus restored-cell PSNR when the decoder sees the map."""
    return m["val_psnr"] + m.get("val_psnr_interp50", 0.0)


def restart_dead_codes(model: VQTokenizer, usage: torch.Tensor, z: torch.Tensor, gen: torch.Generator) -> int:
    """Move codes nobody picked lately onto random encoder outputs of the current batch."""
    dead = (usage < 1e-4 * usage.sum()).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=gen)
    noise = 0.01 * torch.randn(dead.numel(), flat.shape[1], generator=gen)
    with torch.no_grad():
        model.quantizer.codebook[dead] = F.normalize(flat[pick].cpu() + noise, dim=1).to(flat.device)
    usage[dead] = usage.mean()
    return int(dead.numel())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TokenizerConfig(codebook_size=args.codebook_size, downsample=args.downsample, mask_channel=args.mask_channel)
    model = VQTokenizer(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    print(f"loading images from {args.train} ...", flush=True)
    sampler = CropSampler(load_folder(args.train), args.crop, seed=args.seed)
    val_images = load_folder(args.val, limit=args.val_limit) if args.val_limit else []
    state_path = WORK_DIR / args.run / "state.pt"
    log_path = WORK_DIR / args.run / "log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    usage = torch.ones(cfg.codebook_size, device=device)
    gen = torch.Generator().manual_seed(args.seed + 1)
    step, best, wall = 0, -1.0, 0.0
    if args.decoder_only and not args.init:
        raise SystemExit("--decoder-only needs --init (the weights whose tokens must stay)")
    st = load_state(state_path)
    if st is None and args.init:
        init_state, init_meta = load_weights(args.init)
        init_cfg = TokenizerConfig.from_dict(init_meta["config"])
        if dataclasses.replace(init_cfg, mask_channel=cfg.mask_channel) != cfg:
            raise SystemExit(f"--init {args.init}: config {init_meta['config']} differs from {cfg}")
        w = init_state["decoder.inp.weight"]
        if cfg.mask_channel and not init_cfg.mask_channel:
            # A zero-weighted map input: the decoder starts exactly as it was.
            init_state["decoder.inp.weight"] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
        model.load_state_dict(init_state)
        if val_images:
            m0 = validate(model, val_images, device, args.interp_sigma)
            best = score(m0)
            print(f"initialised from {args.init}: {json.dumps(m0)}", flush=True)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sampler.set_state(st["sampler"])
        usage = st["usage"].to(device)
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        step, best, wall = st["step"], st["best"], st["wall"]
        print(f"resumed from {state_path} at step {step} ({wall / 60:.1f} min trained)", flush=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"tokenizer: {params / 1e6:.2f}M parameters, device {device}", flush=True)

    def frozen() -> bool:
        return args.decoder_only or (bool(args.freeze_encoder_after) and step >= args.freeze_encoder_after)

    def save() -> None:
        save_state({"model": model.state_dict(), "opt": opt.state_dict(), "sampler": sampler.state(),
                    "usage": usage.cpu(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "step": step, "best": best, "wall": wall}, state_path)

    def export(metrics: dict) -> None:
        extra = {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "batch": args.batch,
                           "crop": args.crop, "data": str(args.train)}, "metrics": metrics}
        save_weights(model, args.out, cfg.to_dict(), extra)

    t_start, t_saved = time.time(), time.time()
    wall0 = wall
    bar = tqdm(total=args.steps, initial=step, desc="tokenizer", mininterval=10, file=sys.stdout)
    while step < args.steps:
        if args.minutes and wall >= args.minutes * 60:
            print("wall-time limit reached", flush=True)
            break
        if frozen():
            for mod in (model.encoder, model.quantizer):
                mod.requires_grad_(False)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        x = torch.from_numpy(sampler.batch(args.batch)).to(device)
        xin = x * 2 - 1
        if frozen():
            with torch.no_grad():
                z = model.encoder(xin)
                idx = model.quantizer.indices(z)
                q = model.quantizer.lookup(idx)
                known = None
                if args.mask_channel:
                    known = random_known(q.shape[0], q.shape[2], q.shape[3], args.masked_share, gen).to(device)
                    q, _ = interpolate_codes(q, known, args.interp_sigma)
            y = model.decoder(q, known)
            qloss = torch.zeros((), device=device)
        else:
            z = model.encoder(xin)
            q, idx, qloss = model.quantizer(z)
            y = model.decoder(q)
        y01 = (y + 1) / 2
        mse = F.mse_loss(y01, x)
        loss = mse + 0.5 * F.l1_loss(y01, x) + qloss
        if args.ssim_weight:
            loss = loss + args.ssim_weight * (1 - ssim(y01.clamp(0, 1), x, data_range=1.0, size_average=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        wall = wall0 + (time.time() - t_start)
        if not frozen():
            counts = torch.bincount(idx.flatten(), minlength=cfg.codebook_size).float()
            usage.mul_(0.99).add_(counts, alpha=0.01)
            if step % 100 == 0 and step < 0.8 * args.steps:
                n = restart_dead_codes(model, usage, z, gen)
                if n:
                    bar.write(f"step {step}: restarted {n} dead codes")
        bar.update(1)
        if step % 50 == 0:
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
            if score(m) > best or (frozen() and not args.init):
                best = max(best, score(m))
                export(m)
        if time.time() - t_saved > args.save_every:
            save()
            t_saved = time.time()
    bar.close()
    save()
    if val_images:
        m = validate(model, val_images, device, args.interp_sigma)
        m.update(step=step, wall=round(wall, 1))
        print(f"final validation: {json.dumps(m)}", flush=True)
        if score(m) > best or not args.init:
            export(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
