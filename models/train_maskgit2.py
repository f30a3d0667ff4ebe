"""Train the coarse-conditioned MaskGIT (v2) on tokenizer v2's fine ids and coarse values, resumably.

    python -m models.train_maskgit2 --minutes 50 --threads 1

Tokenizer v2's fine ids are v1's (same frozen encoder and codebook), so the restorer starts from
the shipped v1 MaskGIT (``--init``) and only learns to use the coarse layer: its coarse input and
coarse prior projections start at zero, so step 0 *is* the v1 model, and the first validation
line is the v1 baseline on exactly the same windows.

What v2 adds to the training windows, as the edge sends them: the coarse values of every window
(bilinear on the fine grid, ``models.maskgit.coarse_to_fine``); besides v1's mask mixture, a
share of windows with no fine token at all or only object-shaped kept regions (background
coarse-only); a share whose coarse layer lost cells (interpolated, as ``models.codec2`` does) and
a few with no coarse layer at all (zeros). Images are tokenized once (and their mirror images)
into a cache keyed by the tokenizer's fingerprint. Kill it at any time and rerun to resume
(``models/checkpoints/.work/<run>/``); the shipped file is written when validation improves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from models.checkpoints import CHECKPOINT_DIR, WORK_DIR, load_state, load_weights, save_state, save_weights
from models.codec2 import COARSE_SIGMA, V2_TOKEN_PARTS
from models.data import load_folder
from models.interp import interpolate_codes
from models.maskgit import MaskGIT, MaskGITConfig, coarse_to_fine
from models.masks import dispersed_known, object_known, training_known
from models.tokenizer2 import Tokenizer2Config, TwoLayerTokenizer
from models.train_maskgit import after_step, append_jsonl, encoder_fingerprint, latent_loss, lr_at, train_step

NEW_PARTS = ("coarse_in.", "coarse_prior.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--tokenizer", default=str(CHECKPOINT_DIR / "tokenizer2_f16c_f8.safetensors"))
    p.add_argument("--init", default=str(CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors"),
                   help="MaskGIT weights to start from (fresh run only): v1, or a v2 run on provisional "
                        "coarse levels (a tokenizer v2 whose coarse head was still training)")
    p.add_argument("--baseline", default=str(CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors"),
                   help="v1 MaskGIT validated once at the start, on the same windows, as the reference")
    p.add_argument("--out", default=str(CHECKPOINT_DIR / "maskgit2_f16c_f8.safetensors"))
    p.add_argument("--run", default="maskgit2_f16c_f8")
    p.add_argument("--steps", type=int, default=4500, help="total steps (sets the LR schedule)")
    p.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--latent-weight", type=float, default=4.0)
    p.add_argument("--sparse-share", type=float, default=0.35,
                   help="share of windows with no fine token or only object-shaped kept regions")
    p.add_argument("--coarse-drop-share", type=float, default=0.15, help="share of windows that lose coarse cells")
    p.add_argument("--coarse-zero-share", type=float, default=0.03, help="share of windows with no coarse layer")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--save-every", type=float, default=180.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p


def load_tokenizer2(path: str) -> TwoLayerTokenizer:
    state, meta = load_weights(path)
    tok = TwoLayerTokenizer(Tokenizer2Config.from_dict(meta["config"]))
    tok.load_state_dict(state)
    return tok.eval()


@torch.no_grad()
def tokenize_all2(tok: TwoLayerTokenizer, images: list[np.ndarray], flips: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image (and mirror image): (fine ids (h, w) int16, coarse levels (C, hc, wc) int8)."""
    out = []
    for im in images:
        for flip in (False, True) if flips else (False,):
            a = im[:, ::-1] if flip else im
            x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float().div(255)  # a writable copy
            fine, coarse = tok.encode(x)
            out.append((fine[0].numpy().astype(np.int16), coarse[0].numpy().astype(np.int8)))
    return out


def load_or_tokenize(tok: TwoLayerTokenizer, fp: str, args: argparse.Namespace) -> tuple[list, list]:
    cache = WORK_DIR / args.run / f"grids_{fp}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        train = [(z[f"tf{i}"], z[f"tc{i}"]) for i in range(int(z["n_train"]))]
        val = [(z[f"vf{i}"], z[f"vc{i}"]) for i in range(int(z["n_val"]))]
        return train, val
    print("tokenizing training and validation images ...", flush=True)
    train = tokenize_all2(tok, load_folder(args.train), flips=True)
    val = tokenize_all2(tok, load_folder(args.val, limit=32), flips=False)
    arrays = {}
    for pre, items in (("t", train), ("v", val)):
        for i, (f, c) in enumerate(items):
            arrays[f"{pre}f{i}"], arrays[f"{pre}c{i}"] = f, c
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, n_train=len(train), n_val=len(val), **arrays)
    return train, val


def fine_coarse(tok: TwoLayerTokenizer, levels: np.ndarray, shape: tuple[int, int],
                keep: np.ndarray | None = None) -> np.ndarray:
    """Coarse levels (C, hc, wc) -> values on the fine grid (C, h, w); cells outside ``keep``
    interpolated from the kept ones, as ``TokenCodec2.coarse_values`` fills lost cells."""
    v = tok.coarse_values(torch.from_numpy(levels.astype(np.int64))[None])
    if keep is not None:
        v = interpolate_codes(v, torch.from_numpy(keep)[None, None].float(), COARSE_SIGMA)[0]
    return coarse_to_fine(v, *shape)[0].numpy()


def sparse_known(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """What the v2 edge sends outside a dispersal budget: nothing (background, coarse only), or
    fine tokens on a few object-shaped regions and nothing around them."""
    if rng.random() < 0.4:
        return np.zeros((h, w), dtype=bool)
    known = object_known(h, w, 0.0, rng)
    if known.all():
        known[rng.integers(0, h), rng.integers(0, w)] = False
    return known


class WindowSampler:
    """Random (ids, known, coarse-on-fine) training windows from the tokenized grids."""

    def __init__(self, tok: TwoLayerTokenizer, grids: list[tuple[np.ndarray, np.ndarray]], args: argparse.Namespace):
        self.tok, self.grids, self.args = tok, grids, args
        self.coarse = [fine_coarse(tok, c, f.shape) for f, c in grids]  # (C, h, w) float32 each

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, win = self.args, self.args.window
        c = self.coarse[0].shape[0]
        ids = np.empty((n, win, win), dtype=np.int64)
        known = np.empty((n, win, win), dtype=bool)
        coarse = np.empty((n, c, win, win), dtype=np.float32)
        for i in range(n):
            g = int(rng.integers(0, len(self.grids)))
            fine, levels = self.grids[g]
            y = int(rng.integers(0, fine.shape[0] - win + 1))
            x = int(rng.integers(0, fine.shape[1] - win + 1))
            ids[i] = fine[y : y + win, x : x + win]
            known[i] = sparse_known(win, win, rng) if rng.random() < a.sparse_share else training_known(win, win, rng)
            u = rng.random()
            if u < a.coarse_zero_share:
                coarse[i] = 0
            elif u < a.coarse_zero_share + a.coarse_drop_share:
                keep = rng.random(levels.shape[1:]) >= 0.1 + 0.4 * rng.random()
                if not keep.any():
                    coarse[i] = 0
                else:
                    coarse[i] = fine_coarse(self.tok, levels, fine.shape, keep)[:, y : y + win, x : x + win]
            else:
                coarse[i] = self.coarse[g][:, y : y + win, x : x + win]
        return ids, known, coarse


def val_sets(sampler: WindowSampler, window: int) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Fixed validation windows: half the cells kept (dispersed, as v1 was validated) and no
    fine token at all (background: coarse layer only)."""
    vrng = np.random.default_rng(1234)
    out: dict[str, list] = {"50": [], "0": []}
    for _ in range(4):
        idx = [int(vrng.integers(0, len(sampler.grids))) for _ in range(32)]
        ids, coarse = [], []
        for g in idx:
            fine = sampler.grids[g][0]
            y = int(vrng.integers(0, fine.shape[0] - window + 1))
            x = int(vrng.integers(0, fine.shape[1] - window + 1))
            ids.append(fine[y : y + window, x : x + window].astype(np.int64))
            coarse.append(sampler.coarse[g][:, y : y + window, x : x + window])
        ids_a, coarse_a = np.stack(ids), np.stack(coarse)
        half = np.stack([dispersed_known(window, window, 0.5, vrng) for _ in idx])
        out["50"].append((ids_a, half, coarse_a))
        out["0"].append((ids_a, np.zeros_like(half), coarse_a))
    return out


@torch.no_grad()
def validate(model: MaskGIT, sets: dict, codebook: torch.Tensor, zero_coarse: bool = False) -> dict:
    """Masked-cell cross-entropy, top-1 accuracy and code-vector error (sum over dims) per set."""
    model.eval()
    out = {}
    for name, batches in sets.items():
        ce = lat = 0.0
        correct = total = 0
        for ids, known, coarse in batches:
            t_ids, t_known = torch.from_numpy(ids), torch.from_numpy(known)
            inp = torch.where(t_known, t_ids, torch.full_like(t_ids, model.cfg.mask_id))
            c = torch.from_numpy(coarse)
            logits, latents = model.forward_both(inp, torch.zeros_like(c) if zero_coarse else c)
            m = ~t_known
            k = int(m.sum())
            ce += torch.nn.functional.cross_entropy(logits[m], t_ids[m]).item() * k
            lat += latent_loss(latents, t_ids, m, codebook).item() * k  # type: ignore[arg-type]
            correct += int((logits.argmax(-1)[m] == t_ids[m]).sum())
            total += k
        out.update({f"val_ce_{name}": ce / total, f"val_acc_{name}": correct / total, f"val_latent_mse_{name}": lat / total})
    model.train()
    return out


def score(m: dict) -> float:
    """Higher is better: mean code-vector error over half-kept and coarse-only windows."""
    return -(m["val_latent_mse_50"] + m["val_latent_mse_0"]) / 2


def build_model(tok: TwoLayerTokenizer, init: str) -> MaskGIT:
    """The v1 restorer plus zero-initialised coarse projections (at step 0 it is v1 exactly), or
    a v2 restorer as it was saved."""
    init_state, init_meta = load_weights(init)
    v1 = MaskGITConfig.from_dict(init_meta["config"])
    if v1.codebook_size != tok.cfg.fine.codebook_size or not v1.latent_dim or v1.interp_sigma <= 0:
        raise SystemExit(f"--init {init}: needs a v1 MaskGIT with a latent head and an interpolation prior "
                         f"over {tok.cfg.fine.codebook_size} codes, got {v1}")
    cfg = MaskGITConfig(**{**v1.to_dict(), "coarse_channels": len(tok.cfg.coarse_levels)})
    model = MaskGIT(cfg)
    missing, unexpected = model.load_state_dict(init_state, strict=False)
    if unexpected or any(not k.startswith(NEW_PARTS) for k in missing):
        raise SystemExit(f"--init {init}: unexpected {unexpected}, missing {missing}")
    model.set_codebook(tok.quantizer.normalized_codebook().detach())
    return model


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = load_tokenizer2(args.tokenizer)
    fp = encoder_fingerprint(tok, V2_TOKEN_PARTS)
    work = WORK_DIR / args.run
    work.mkdir(parents=True, exist_ok=True)
    grids, val_grids = load_or_tokenize(tok, fp, args)
    n_codes = np.prod(tok.cfg.coarse_levels)
    flat = [np.ravel_multi_index(tuple(c.astype(np.int64)), tok.cfg.coarse_levels).ravel() for _, c in grids]
    coarse_counts = np.bincount(np.concatenate(flat), minlength=n_codes).astype(np.uint32)
    np.save(work / "coarse_prior.npy", coarse_counts)  # for the link's entropy coder (not shipped here)
    print(f"{len(grids)} training grids, {(coarse_counts > 0).sum()}/{n_codes} coarse codes used, tokenizer {fp}",
          flush=True)
    model = build_model(tok, args.init)
    codebook = model.codebook.clone()
    sampler = WindowSampler(tok, grids, args)
    sets = val_sets(WindowSampler(tok, val_grids, args), args.window)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    rng = np.random.default_rng(args.seed)
    step, best, wall = 0, -float("inf"), 0.0
    log_path = work / "log.jsonl"
    st = load_state(work / "state.pt")
    if st is not None:
        if st.get("fingerprint") != fp:
            raise SystemExit(f"{work / 'state.pt'} was trained on tokenizer {st.get('fingerprint')}, "
                             f"--tokenizer is {fp}: use another --run")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step, best, wall = st["step"], st["best"], st["wall"]
        print(f"resumed at step {step} ({wall / 60:.1f} min trained)", flush=True)
    else:
        m = validate(build_model(tok, args.baseline), sets, codebook)
        m.update(step=0, wall=0.0, baseline=f"{args.baseline} (coarse projections at zero)")
        print(f"validation: {json.dumps(m)}", flush=True)
        append_jsonl(log_path, m)
    print(f"maskgit v2: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)

    def save() -> None:
        save_state({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "step": step, "best": best, "wall": wall,
                    "fingerprint": fp}, work / "state.pt")

    def export(m: dict) -> None:
        extra = {"train": {"steps": step, "wall_minutes": round(wall / 60, 1), "batch": args.batch,
                           "window": args.window, "data": str(args.train), "init": str(args.init),
                           "tokenizer": str(args.tokenizer)},
                 "metrics": m, "tokenizer_fingerprint": fp}
        save_weights(model, args.out, model.cfg.to_dict(), extra)

    t0, t_saved, wall0 = time.time(), time.time(), wall
    bar = tqdm(total=args.steps, initial=step, desc="maskgit2", mininterval=10, file=sys.stdout)
    model.train()
    while step < args.steps:
        if args.minutes and wall >= args.minutes * 60:
            print("wall-time limit reached", flush=True)
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        ids, known, coarse = sampler.batch(args.batch, rng)
        loss = train_step(model, opt, torch.from_numpy(ids), torch.from_numpy(known), codebook, args.latent_weight,
                          torch.from_numpy(coarse))
        step += 1
        wall = wall0 + time.time() - t0
        bar.update(1)
        best = after_step(step, wall, loss, args, log_path, bar, lambda: validate(model, sets, codebook),
                          score, best, export)
        if time.time() - t_saved > args.save_every:
            save()
            t_saved = time.time()
    bar.close()
    save()
    m = validate(model, sets, codebook)
    zero = {f"{k}_coarse_zeroed": v for k, v in validate(model, sets, codebook, zero_coarse=True).items()}
    m.update(step=step, wall=round(wall, 1), **zero)
    print(f"final validation: {json.dumps(m)}", flush=True)
    append_jsonl(log_path, {"final": m})
    if score(m) >= best:
        export(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
