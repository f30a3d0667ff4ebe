"""Distil tokenizer v2's encoder into the light edge encoder (``models.fast_encoder``), resumably.

    python -m models.train_fast_encoder --minutes 60 --threads 2

The teacher is the shipped tokenizer v2 (``--teacher``); it is frozen and only runs forward. The
student learns the teacher's unit fine codes (a KL on the codebook similarities at a low
temperature, so the nearest code - the token id - is what matters most, plus a cosine term)
and its bounded coarse pre-activations in FSQ level units (so rounding lands on the same
level). A third of the crops are taken at twice the size and area-downscaled, as the edge does
under tiny budgets. Validation decodes the student's tokens with the teacher's decoder: the
figure that matters is that PSNR beside the teacher's own. Kill it at any time and run the
same command again: it resumes from ``models/checkpoints/.work/<run>/``; the weights and the
ONNX encoder are written whenever validation improves.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoints import CHECKPOINT_DIR, WORK_DIR, load_state, load_weights, save_state, save_weights
from models.data import CropSampler, load_folder
from models.fast_encoder import FastEncoder, FastEncoderConfig, FastEncoderExport
from models.metrics import psnr
from models.tokenizer2 import Tokenizer2Config, TwoLayerTokenizer, coarse_pad
from models.train_tokenizer import lr_at

ONNX_NAME = "tc-vq2-f16c-f8.fast-encoder.onnx"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--teacher", default="models/checkpoints/tokenizer2_f16c_f8.safetensors")
    p.add_argument("--out", default="models/checkpoints/fast_encoder_f16c_f8.safetensors")
    p.add_argument("--onnx", default=str(CHECKPOINT_DIR / ONNX_NAME))
    p.add_argument("--run", default="fast_encoder_f16c_f8")
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--steps", type=int, default=12000, help="total steps (sets the LR schedule)")
    p.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--crop", type=int, default=160)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--temperature", type=float, default=0.03)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-limit", type=int, default=8)
    p.add_argument("--save-every", type=float, default=180.0, help="seconds between resumable saves")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export-only", action="store_true", help="write --out and --onnx from the saved state")
    return p


def load_teacher(path: str) -> TwoLayerTokenizer:
    state, meta = load_weights(path)
    model = TwoLayerTokenizer(Tokenizer2Config.from_dict(meta["config"]))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def batch(sampler: CropSampler, n: int, rng: np.random.Generator) -> torch.Tensor:
    """(n, 3, crop, crop) in [0, 1]; about a third are twice-size crops area-downscaled."""
    x = torch.from_numpy(sampler.batch(n))
    if rng.random() < 1 / 3:
        crop = sampler.crop
        sampler.crop = 2 * crop
        try:
            x = F.avg_pool2d(torch.from_numpy(sampler.batch(n)), 2)
        except ValueError:  # no image large enough: keep the plain crops
            pass
        finally:
            sampler.crop = crop
    return x


def losses(student: FastEncoder, teacher: TwoLayerTokenizer, x: torch.Tensor, codebook: torch.Tensor,
           tau: float) -> tuple[torch.Tensor, dict]:
    xm = coarse_pad(x * 2 - 1, teacher.coarse_factor)
    with torch.no_grad():
        zt, ct = teacher.encode_parts(xm)
        bt = teacher.fsq.bound(ct)
        target = F.softmax(torch.einsum("ndhw,kd->nkhw", zt, codebook) / tau, dim=1)
        idx_t = target.argmax(dim=1)
    zs, cs = student(xm)
    logits = torch.einsum("ndhw,kd->nkhw", zs, codebook) / tau
    kl = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean") / (zs.shape[2] * zs.shape[3])
    cos = (1 - (zs * zt).sum(dim=1)).mean()
    bs = teacher.fsq.bound(cs)
    coarse = F.mse_loss(bs, bt)
    loss = kl + 4.0 * cos + coarse
    with torch.no_grad():
        stats = {"kl": kl.item(), "cos": cos.item(), "coarse": coarse.item(),
                 "fine_agree": (logits.argmax(dim=1) == idx_t).float().mean().item(),
                 "coarse_agree": (torch.round(bs) == torch.round(bt)).float().mean().item()}
    return loss, stats


@torch.no_grad()
def validate(student: FastEncoder, teacher: TwoLayerTokenizer, images: list[np.ndarray]) -> dict:
    """Token/level agreement with the teacher and decoded PSNR, student tokens vs teacher tokens."""
    student.eval()
    agree, cagree, p_s, p_t = [], [], [], []
    codebook = teacher.quantizer.normalized_codebook()
    for im in images:
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        xm = coarse_pad(x * 2 - 1, teacher.coarse_factor)
        zt, ct = teacher.encode_parts(xm)
        zs, cs = student(xm)
        it, is_ = teacher.quantizer.indices(zt), teacher.quantizer.indices(zs)
        lt, ls = teacher.fsq.levels_of(ct), teacher.fsq.levels_of(cs)
        agree.append((it == is_).float().mean().item())
        cagree.append((lt == ls).float().mean().item())
        for idx, lev, out in ((it, lt, p_t), (is_, ls, p_s)):
            codes = codebook[idx].permute(0, 3, 1, 2)
            y = teacher.decode_codes(codes, torch.ones_like(codes[:, :1]), teacher.coarse_values(lev), (h, w))
            out.append(psnr((y[0] * 255).round().numpy(), (x[0] * 255).round().numpy()))
    student.train()
    return {"fine_agree": float(np.mean(agree)), "coarse_agree": float(np.mean(cagree)),
            "psnr_student": float(np.mean(p_s)), "psnr_teacher": float(np.mean(p_t))}


def export_onnx(student: FastEncoder, teacher: TwoLayerTokenizer, path: Path) -> None:
    """The edge's graph: image [0, 1] (1, 3, H, W) -> indices (1, H/8, W/8), coarse (1, 4, H/16, W/16)."""
    module = FastEncoderExport(student, teacher.quantizer.normalized_codebook(), teacher.fsq).eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(1, 3, 256, 256),), buf, dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["indices", "coarse"],
                          dynamic_axes={"image": {2: "height", 3: "width"}, "indices": {1: "gh", 2: "gw"},
                                        "coarse": {2: "hc", 3: "wc"}},
                          do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name, model.producer_version = "tokencast-export", "1"
    onnx.checker.check_model(model)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher = load_teacher(args.teacher)
    cfg = FastEncoderConfig(channels=args.channels, blocks=args.blocks)
    student = FastEncoder(cfg)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    codebook = teacher.quantizer.normalized_codebook().detach()
    val_images = load_folder(args.val, limit=args.val_limit) if args.val_limit else []
    state_path = WORK_DIR / args.run / "state.pt"
    log_path = WORK_DIR / args.run / "log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed + 7)
    step, best, wall = 0, -1e9, 0.0
    st = load_state(state_path)
    sampler_state = None
    if st is not None:
        student.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sampler_state, step, best, wall = st["sampler"], st["step"], st["best"], st["wall"]
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed from {state_path} at step {step} ({wall / 60:.1f} min trained)", flush=True)

    def export(metrics: dict) -> None:
        extra = {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "batch": args.batch,
                           "crop": args.crop, "data": str(args.train), "teacher": str(args.teacher)},
                 "metrics": metrics}
        save_weights(student, args.out, cfg.to_dict(), extra)
        export_onnx(student, teacher, Path(args.onnx))

    if args.export_only:
        if st is None:
            raise SystemExit(f"--export-only: no saved state at {state_path}")
        m = validate(student, teacher, val_images) if val_images else {}
        m.update(step=step, wall=round(wall, 1))
        export(m)
        print(f"exported step {step} to {args.out} and {args.onnx}: {json.dumps(m)}", flush=True)
        return 0
    print(f"loading images from {args.train} ...", flush=True)
    sampler = CropSampler(load_folder(args.train), args.crop, seed=args.seed)
    if sampler_state is not None:
        sampler.set_state(sampler_state)
    n = sum(p.numel() for p in student.parameters())
    print(f"fast encoder {cfg}: {n / 1e3:.0f}k parameters", flush=True)

    def save() -> None:
        save_state({"model": student.state_dict(), "opt": opt.state_dict(), "sampler": sampler.state(),
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "step": step, "best": best, "wall": wall}, state_path)

    t_start, t_saved, wall0 = time.time(), time.time(), wall
    bar = tqdm(total=args.steps, initial=step, desc="fast-encoder", mininterval=10, file=sys.stdout)
    while step < args.steps:
        if args.minutes and wall >= args.minutes * 60:
            print("wall-time limit reached", flush=True)
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warmup=200)
        loss, stats = losses(student, teacher, batch(sampler, args.batch, rng), codebook, args.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        wall = wall0 + (time.time() - t_start)
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(agree=f"{stats['fine_agree']:.3f}", cagree=f"{stats['coarse_agree']:.3f}")
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step, "wall": round(wall, 1), "loss": loss.item(), **stats,
                                    "lr": opt.param_groups[0]["lr"]}) + "\n")
        if val_images and (step % args.val_every == 0 or step == args.steps):
            m = validate(student, teacher, val_images)
            m.update(step=step, wall=round(wall, 1))
            bar.write(f"validation: {json.dumps(m)}")
            with open(log_path, "a") as f:
                f.write(json.dumps(m) + "\n")
            if m["psnr_student"] > best:
                best = m["psnr_student"]
                export(m)
        if time.time() - t_saved > args.save_every:
            save()
            t_saved = time.time()
    bar.close()
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
