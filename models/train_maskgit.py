"""Train the MaskGIT restorer on token grids of the (frozen) tokenizer, resumably.

    python -m models.train_maskgit --minutes 50

The training images are tokenized once (and their mirror images), then random windows of the
token grids are masked with the mixture in ``models.masks``. Also writes the static token prior
(``tc-vq-f8-k1024.prior.npy``) the link's entropy coder uses. Kill and rerun to resume.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.checkpoints import CHECKPOINT_DIR, WORK_DIR, load_state, load_weights, save_state, save_weights
from models.data import load_folder
from models.maskgit import MaskGIT, MaskGITConfig, masked_ce
from models.masks import dispersed_known, training_known
from models.tokenizer import TokenizerConfig, VQTokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--tokenizer", default=str(CHECKPOINT_DIR / "tokenizer_f8_k1024.safetensors"))
    p.add_argument("--out", default=str(CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors"))
    p.add_argument("--prior-out", default=str(Path(__file__).resolve().parents[1] / "link" / "priors" / "tc-vq-f8-k1024.prior.npy"))
    p.add_argument("--run", default="maskgit_f8_k1024")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--minutes", type=float, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--save-every", type=float, default=180.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent-dim", type=int, default=-1,
                   help="regress code vectors too (-1: the tokenizer's code_dim, 0: no latent head)")
    p.add_argument("--latent-weight", type=float, default=4.0, help="weight of the code-vector MSE in the loss")
    p.add_argument("--interp-sigma", type=float, default=1.5,
                   help="interpolation prior the latent head corrects (0: plain regression)")
    p.add_argument("--init", default="", help="start from these shipped weights (a fresh run only)")
    return p


def encoder_fingerprint(tok: torch.nn.Module, prefixes: tuple[str, ...] = ("encoder.", "quantizer.")) -> str:
    """Hash of everything that decides token ids, so a restorer can be matched to its tokenizer.

    ``prefixes``: the state-dict entries that decide them (tokenizer v2 adds its coarse head)."""
    h = hashlib.sha256()
    for name, t in sorted(tok.state_dict().items()):
        if name.startswith(prefixes):
            h.update(name.encode())
            h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def tokenize_all(tok: VQTokenizer, images: list[np.ndarray], flips: bool) -> list[np.ndarray]:
    grids = []
    for im in images:
        for flip in (False, True) if flips else (False,):
            a = im[:, ::-1] if flip else im
            x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float().div(255)
            grids.append(tok.encode(x)[0].numpy().astype(np.int64))
    return grids


def sample_batch(grids: list[np.ndarray], n: int, win: int, rng: np.random.Generator):
    ids = np.empty((n, win, win), dtype=np.int64)
    known = np.empty((n, win, win), dtype=bool)
    for i in range(n):
        g = grids[rng.integers(0, len(grids))]
        y = rng.integers(0, g.shape[0] - win + 1)
        x = rng.integers(0, g.shape[1] - win + 1)
        ids[i] = g[y : y + win, x : x + win]
        known[i] = training_known(win, win, rng)
    return ids, known


def lr_at(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def latent_loss(pred: torch.Tensor, target_ids: torch.Tensor, masked: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared error (summed over the code dimensions) between predicted and true code vectors at
    masked cells: the decoder sees code vectors, so this is the error that becomes pixel error."""
    return (pred[masked] - codebook[target_ids[masked]]).pow(2).sum(-1).mean()


def model_score(m: dict) -> float:
    """Higher is better: the code-vector error when the model regresses codes, else token accuracy."""
    return -m["val_latent_mse_50"] if "val_latent_mse_50" in m else m["val_acc_50"]


@torch.no_grad()
def validate(model: MaskGIT, batches: list[tuple[np.ndarray, np.ndarray]], codebook: torch.Tensor) -> dict:
    model.eval()
    correct = total = 0
    ce = lat = 0.0
    for ids, known in batches:
        t_ids = torch.from_numpy(ids)
        t_known = torch.from_numpy(known)
        inp = torch.where(t_known, t_ids, torch.full_like(t_ids, model.cfg.mask_id))
        logits, latents = model.forward_both(inp)
        m = ~t_known
        ce += masked_ce(logits, t_ids, m).item() * int(m.sum())
        if latents is not None:
            lat += latent_loss(latents, t_ids, m, codebook).item() * int(m.sum())
        correct += int((logits.argmax(-1)[m] == t_ids[m]).sum())
        total += int(m.sum())
    model.train()
    out = {"val_ce_50": ce / total, "val_acc_50": correct / total}
    if model.latent_head is not None:
        out["val_latent_mse_50"] = lat / total
    return out


def train_step(model: MaskGIT, opt: torch.optim.Optimizer, ids: torch.Tensor, known: torch.Tensor,
               codebook: torch.Tensor, latent_weight: float, coarse: torch.Tensor | None = None) -> float:
    """One optimiser step on masked windows: cross-entropy (label smoothing 0.1) at masked cells
    plus ``latent_weight`` x the code-vector error when the model regresses codes; returns the loss."""
    inp = torch.where(known, ids, torch.full_like(ids, model.cfg.mask_id))
    logits, latents = model.forward_both(inp) if coarse is None else model.forward_both(inp, coarse)
    sel = (~known).reshape(-1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1])[sel], ids.reshape(-1)[sel],
                                             label_smoothing=0.1)
    if latents is not None:
        loss = loss + latent_weight * latent_loss(latents, ids, ~known, codebook)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def after_step(step: int, wall: float, loss: float, args: argparse.Namespace, log_path: Path, bar: tqdm,
               validate_now: Callable[[], dict], score: Callable[[dict], float], best: float,
               export: Callable[[dict], None]) -> float:
    """Log the loss every 50 steps; every ``args.val_every`` steps validate, log, and export when
    the score beats ``best``. Returns the best score so far."""
    if step % 50 == 0:
        bar.set_postfix(loss=f"{loss:.3f}")
        append_jsonl(log_path, {"step": step, "wall": round(wall, 1), "loss": loss})
    if step % args.val_every == 0 or step == args.steps:
        m = validate_now()
        m.update(step=step, wall=round(wall, 1))
        bar.write(f"validation: {json.dumps(m)}")
        append_jsonl(log_path, m)
        if score(m) > best:
            best = score(m)
            export(m)
    return best


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state, meta = load_weights(args.tokenizer)
    tok = VQTokenizer(TokenizerConfig.from_dict(meta["config"]))
    tok.load_state_dict(state)
    tok.eval()
    fp = encoder_fingerprint(tok)
    work = WORK_DIR / args.run
    work.mkdir(parents=True, exist_ok=True)
    cache = work / f"grids_{fp}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        grids = [z[f"t{i}"] for i in range(int(z["n_train"]))]
        val_grids = [z[f"v{i}"] for i in range(int(z["n_val"]))]
    else:
        print("tokenizing training and validation images ...", flush=True)
        grids = tokenize_all(tok, load_folder(args.train), flips=True)
        val_grids = tokenize_all(tok, load_folder(args.val, limit=32), flips=False)
        np.savez(cache, n_train=len(grids), n_val=len(val_grids),
                 **{f"t{i}": g for i, g in enumerate(grids)}, **{f"v{i}": g for i, g in enumerate(val_grids)})
    cb = tok.cfg.codebook_size
    counts = np.bincount(np.concatenate([g.ravel() for g in grids]), minlength=cb).astype(np.uint32)
    np.save(args.prior_out, counts)
    used = int((counts > 0).sum())
    print(f"{len(grids)} training grids, {used}/{cb} codes used, tokenizer {fp}", flush=True)

    latent_dim = tok.cfg.code_dim if args.latent_dim < 0 else args.latent_dim
    codebook = tok.quantizer.normalized_codebook().detach().to(device)
    cfg = MaskGITConfig(codebook_size=cb, dim=args.dim, depth=args.depth, heads=args.heads, latent_dim=latent_dim,
                        interp_sigma=args.interp_sigma if latent_dim else 0.0)
    model = MaskGIT(cfg)
    model.init_from_codebook(tok.quantizer.normalized_codebook().detach(), seed=args.seed)
    fresh_latent_head = model.latent_head.state_dict() if model.latent_head is not None else None
    if args.init:
        init_state, init_meta = load_weights(args.init)
        init_cfg = MaskGITConfig.from_dict(init_meta["config"])
        if (init_cfg.dim, init_cfg.depth, init_cfg.heads, init_cfg.codebook_size) != (cfg.dim, cfg.depth, cfg.heads, cb):
            raise SystemExit(f"--init {args.init}: architecture {init_cfg} does not match {cfg}")
        missing, unexpected = model.load_state_dict(init_state, strict=False)
        if model.interp_in is not None and "interp_in.weight" in missing and fresh_latent_head is not None:
            model.latent_head.load_state_dict(fresh_latent_head)  # type: ignore[union-attr]  # residual: start at 0
        print(f"initialised from {args.init} (new: {missing}, dropped: {unexpected})", flush=True)
    if model.interp_in is not None:
        model.set_codebook(tok.quantizer.normalized_codebook().detach())
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    rng = np.random.default_rng(args.seed)
    vrng = np.random.default_rng(1234)
    val_batches = []
    for _ in range(4):
        ids, _ = sample_batch(val_grids, 32, args.window, vrng)
        known = np.stack([dispersed_known(args.window, args.window, 0.5, vrng) for _ in range(32)])
        val_batches.append((ids, known))
    step, best, wall = 0, -float("inf"), 0.0
    st = load_state(work / "state.pt")
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step, best, wall = st["step"], st["best"], st["wall"]
        print(f"resumed at step {step} ({wall / 60:.1f} min trained)", flush=True)
    print(f"maskgit: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)

    def save() -> None:
        save_state({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "step": step, "best": best, "wall": wall}, work / "state.pt")

    def export(m: dict) -> None:
        extra = {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "batch": args.batch,
                           "window": args.window, "data": str(args.train)},
                 "metrics": m, "tokenizer_fingerprint": fp}
        save_weights(model, args.out, cfg.to_dict(), extra)

    log_path = work / "log.jsonl"
    t0, t_saved, wall0 = time.time(), time.time(), wall
    bar = tqdm(total=args.steps, initial=step, desc="maskgit", mininterval=10, file=sys.stdout)
    model.train()
    while step < args.steps:
        if args.minutes and wall >= args.minutes * 60:
            print("wall-time limit reached", flush=True)
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        ids, known = sample_batch(grids, args.batch, args.window, rng)
        loss = train_step(model, opt, torch.from_numpy(ids).to(device), torch.from_numpy(known).to(device),
                          codebook, args.latent_weight)
        step += 1
        wall = wall0 + time.time() - t0
        bar.update(1)
        best = after_step(step, wall, loss, args, log_path, bar, lambda: validate(model, val_batches, codebook),
                          model_score, best, export)
        if time.time() - t_saved > args.save_every:
            save()
            t_saved = time.time()
    bar.close()
    save()
    m = validate(model, val_batches, codebook)
    m.update(step=step, wall=round(wall, 1))
    print(f"final validation: {json.dumps(m)}", flush=True)
    if model_score(m) >= best:
        export(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
