"""Build wire v2's context-model set from the training images (link.coding2.ContextModels).

    python -m models.build_wire_models --tokenizer models/checkpoints/tokenizer2_f16c_f8.safetensors

Counts, over every training image (and its mirror), how coarse levels follow their upper and left
neighbours and how fine tokens follow the cluster of a kept neighbour, with add-half smoothing,
and writes ``link/priors/<tokenizer>.ctx<set>.npz``. The set is part of the wire contract: once
devices use it, a changed table needs a new set id (the header's coding byte), never a rewrite.
Prints the held-out bits per symbol of each model next to the plain marginal, the figures quoted
in link/coding2.py.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from link.coding2 import ContextModels, models_path
from link.tokenizers import get_tokenizer
from models.checkpoints import load_weights
from models.data import list_images, load_rgb
from models.tokenizer2 import Tokenizer2Config, TwoLayerTokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--tokenizer", default="models/checkpoints/tokenizer2_f16c_f8.safetensors")
    p.add_argument("--tokenizer-id", type=int, default=3)
    p.add_argument("--set-id", type=int, default=1)
    p.add_argument("--clusters", type=int, default=32)
    p.add_argument("--out", default="", help="default: link/priors/<tokenizer name>.ctx<set>.npz")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0)
    return p


def kmeans_clusters(codebook: np.ndarray, k: int, seed: int = 0, iters: int = 30) -> np.ndarray:
    """Cosine k-means over the unit code vectors: tokens that look alike share a context."""
    rng = np.random.default_rng(seed)
    c = codebook[rng.choice(len(codebook), k, replace=False)].copy()
    for _ in range(iters):
        a = (codebook @ c.T).argmax(1)
        for j in range(k):
            if (a == j).any():
                v = codebook[a == j].mean(0)
                c[j] = v / max(np.linalg.norm(v), 1e-9)
    return (codebook @ c.T).argmax(1)


def coarse_context(v: np.ndarray, n: int) -> np.ndarray:
    """Flat context ids (above x left level, n = none) of every cell of one (h, w) channel, as the
    wire coder sees a whole frame in one fragment (link.coding2.coarse_symbols)."""
    up = np.full_like(v, n)
    up[1:] = v[:-1]
    left = np.full_like(v, n)
    left[:, 1:] = v[:, :-1]
    return (up * (n + 1) + left).ravel()


def coarse_counts(levels: list[np.ndarray], n_levels: tuple[int, ...]) -> list[np.ndarray]:
    out = [np.zeros(((n + 1) ** 2, n)) for n in n_levels]
    for lv in levels:  # (C, h, w)
        for ch, n in enumerate(n_levels):
            v = lv[ch]
            np.add.at(out[ch], (coarse_context(v, n), v.ravel()), 1)
    return out


def index_counts(grids: list[np.ndarray], clusters: np.ndarray, k: int, n_clusters: int) -> np.ndarray:
    """Counts of a token given the cluster of its left neighbour, and given its upper one (both
    are contexts the coder uses: left first, else up); 'none' row = the marginal."""
    t = np.zeros((n_clusters + 1, k))
    for g in grids:
        np.add.at(t, (clusters[g[:, :-1]].ravel(), g[:, 1:].ravel()), 1)
        np.add.at(t, (clusters[g[:-1]].ravel(), g[1:].ravel()), 1)
        np.add.at(t[n_clusters], g.ravel(), 1)
    return t


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = get_tokenizer(args.tokenizer_id)
    state, meta = load_weights(args.tokenizer)
    tok = TwoLayerTokenizer(Tokenizer2Config.from_dict(meta["config"]))
    tok.load_state_dict(state)
    tok.eval()
    paths = list_images(args.train)
    if args.limit:
        paths = paths[: args.limit]
    fine, coarse = [], []
    with torch.no_grad():
        for p in paths:
            im = load_rgb(p)
            for a in (im, im[:, ::-1]):
                x = torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
                f, c = tok.encode(x)
                fine.append(f[0].numpy())
                coarse.append(c[0].numpy())
    codebook = tok.quantizer.normalized_codebook().detach().numpy()
    clusters = kmeans_clusters(codebook, args.clusters)
    train_f = [g for i, g in enumerate(fine) if i % 10 != 1]
    train_c = [g for i, g in enumerate(coarse) if i % 10 != 1]
    models = ContextModels.from_arrays(
        spec, args.set_id, [t + 0.5 for t in coarse_counts(train_c, spec.coarse_levels)],
        index_counts(train_f, clusters, spec.codebook_size, args.clusters) + 0.5, clusters)
    held_f = [g for i, g in enumerate(fine) if i % 10 == 1]  # every tenth grid held out for the figures
    held_c = [g for i, g in enumerate(coarse) if i % 10 == 1]
    report = evaluate(models, held_f, held_c, spec.coarse_levels)
    # the shipped tables use every image
    models = ContextModels.from_arrays(
        spec, args.set_id, [t + 0.5 for t in coarse_counts(coarse, spec.coarse_levels)],
        index_counts(fine, clusters, spec.codebook_size, args.clusters) + 0.5, clusters)
    out = args.out or str(models_path(spec, args.set_id))
    models.save(out)
    print(json.dumps({"out": out, "images": len(paths), "digest": models.digest, "held_out": report}, indent=1))
    return 0


def evaluate(models: ContextModels, fine: list[np.ndarray], coarse: list[np.ndarray], n_levels: tuple[int, ...]) -> dict:
    """Held-out bits per symbol: coarse bits per cell (context vs marginal), fine bits per token
    with the left-neighbour context (all neighbours kept) vs the marginal row."""
    cb, cm, cells = 0.0, 0.0, 0
    for lv in coarse:
        for ch, n in enumerate(n_levels):
            v = lv[ch]
            p = models.coarse[ch][coarse_context(v, n), v.ravel()]
            cb += float(-np.log2(p).sum())
            marg = models.coarse[ch].sum(0) / models.coarse[ch].sum()
            cm += float(-np.log2(marg[v.ravel()]).sum())
        cells += lv[0].size
    fb, fm, toks = 0.0, 0.0, 0
    for g in fine:
        ctx = models.clusters[g[:, :-1]].ravel()
        s = g[:, 1:].ravel()
        fb += float(-np.log2(models.index[ctx, s]).sum())
        fm += float(-np.log2(models.index[models.n_clusters, s]).sum())
        toks += s.size
    return {"coarse_bits_per_cell": cb / max(cells, 1), "coarse_marginal_bits_per_cell": cm / max(cells, 1),
            "fine_bits_per_token_left_ctx": fb / max(toks, 1), "fine_marginal_bits_per_token": fm / max(toks, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
