"""Restore + decode time (and PSNR) of tokenizer v2 frames for restore settings, on this CPU.

    python -m benchmarks.restore_speed2 --threads 2 --size 768x512 --configs 8:4 6:2 4:2 4:0 \
        --out benchmarks/results/restore_speed2.json

Why: the cloud budget is 4 s per 768x512 frame on a 2-core CPU, and the restorer's time is
steps x windows x a transformer pass; each ``STEPS:OVERLAP`` setting (16x16 windows) is timed
end to end through ``TokenCodec2.reconstruct`` (coarse fill, restore, decode), median of
``--runs``, on val photos resized to ``--size``. The fine layer sent is what the v2 edge sends:
object-shaped regions plus a dispersed share (``--keep``), the coarse layer whole. PSNR is only
meaningful with trained weights (``--random-init`` times the same architecture). The process's
CPU seconds are reported too: on a shared machine wall time depends on the other jobs, while CPU
seconds with ``--threads 1`` are what one free core would take.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.data import list_images, load_rgb
from models.masks import dispersed_known, object_known
from models.metrics import psnr


def parse_config(text: str) -> tuple[int, int]:
    steps, overlap = (int(v) for v in text.split(":"))
    return steps, overlap


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="../shared/data/val")
    p.add_argument("--limit", type=int, default=3)
    p.add_argument("--size", default="768x512", help="WxH")
    p.add_argument("--configs", nargs="+", default=["8:4", "6:2", "4:2", "4:0"], help="STEPS:OVERLAP")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--keep", type=float, default=0.3, help="share of fine cells sent")
    p.add_argument("--mask", choices=("objects", "dispersed", "none"), default="objects",
                   help="fine cells sent: object-shaped regions + dispersed (the v2 edge), dispersed only, none")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--random-init", action="store_true", help="time the shipped architecture with random weights")
    p.add_argument("--tokenizer", default="", help="tokenizer v2 weights instead of the shipped file "
                   "(same coarse head as the shipped restorer, e.g. a later decoder)")
    p.add_argument("--v1-restorer", action="store_true",
                   help="restore with the v1 MaskGIT (coarse inputs at zero): the baseline for the v2 restorer")
    p.add_argument("--out", default="")
    return p


def random_full_size():
    """TokenCodec2 with a random restorer of the shipped v1 architecture (+ coarse inputs)."""
    from models.checkpoints import CHECKPOINT_DIR, read_metadata
    from models.codec2 import RESTORE_V2, TokenCodec2, load_tokenizer2
    from models.maskgit import MaskGIT, MaskGITConfig
    from models.restore import Restorer

    cfg = MaskGITConfig.from_dict(read_metadata(CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors")["config"])
    tok = load_tokenizer2(random_init=True, device="cpu")
    mg = MaskGIT(MaskGITConfig(**{**cfg.to_dict(), "coarse_channels": len(tok.cfg.coarse_levels)}))
    mg.set_codebook(tok.quantizer.normalized_codebook().detach())
    return TokenCodec2(tok, Restorer(mg, RESTORE_V2, "cpu", codebook=tok.quantizer.normalized_codebook().detach()))


def with_tokenizer(path: str):
    """The shipped restorer with the tokenizer v2 weights at ``path``; refused if its fine ids or
    coarse levels are not the ones the restorer was trained on."""
    from models.checkpoints import load_weights, read_metadata
    from models.codec import load_maskgit
    from models.codec2 import RESTORE_V2, V2_TOKEN_PARTS, TokenCodec2
    from models.registry import ModelNotFound, files_for
    from models.restore import Restorer
    from models.tokenizer2 import Tokenizer2Config, TwoLayerTokenizer
    from models.train_maskgit import encoder_fingerprint

    state, meta = load_weights(path)
    tok = TwoLayerTokenizer(Tokenizer2Config.from_dict(meta["config"]))
    tok.load_state_dict(state)
    want = read_metadata(files_for(3).path("maskgit")).get("tokenizer_fingerprint")
    if encoder_fingerprint(tok, V2_TOKEN_PARTS) != want:
        raise ModelNotFound(f"{path}: not the tokenizer the shipped restorer was trained on ({want})")
    codebook = tok.quantizer.normalized_codebook().detach()
    return TokenCodec2(tok.eval(), Restorer(load_maskgit(3, "cpu"), RESTORE_V2, "cpu", codebook=codebook))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    from models.codec2 import TokenCodec2
    from models.restore import RestoreConfig, Restorer

    if args.random_init:
        base = random_full_size()
    elif args.tokenizer:
        base = with_tokenizer(args.tokenizer)
    else:
        base = TokenCodec2.load(device="cpu")
    if args.v1_restorer:
        from models.checkpoints import CHECKPOINT_DIR
        from models.train_maskgit2 import build_model

        v1 = build_model(base.tokenizer, str(CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors"))
        base = TokenCodec2(base.tokenizer, Restorer(v1, base.restorer.cfg, "cpu", codebook=base.restorer.codebook))
    w, h = (int(v) for v in args.size.lower().split("x"))
    images = [np.asarray(Image.fromarray(load_rgb(p)).resize((w, h), Image.BICUBIC))
              for p in list_images(args.images)[: args.limit]]
    rng = np.random.default_rng(0)
    frames = []
    for im in images:
        fine, coarse = base.encode([im])[0]
        if args.mask == "objects":
            known = object_known(*fine.shape, args.keep, rng)
        elif args.mask == "dispersed":
            known = dispersed_known(*fine.shape, args.keep, rng)
        else:
            known = np.zeros(fine.shape, dtype=bool)
        frames.append((im, fine, known, coarse))
    results = []
    for text in args.configs:
        steps, overlap = parse_config(text)
        cfg = RestoreConfig(steps=steps, window=args.window, overlap=overlap)
        codec = TokenCodec2(base.tokenizer, Restorer(base.restorer.model, cfg, "cpu", codebook=base.restorer.codebook))
        times, cpu, scores = [], [], []
        for im, fine, known, coarse in frames:
            for _ in range(args.runs):
                t0, c0 = time.perf_counter(), time.process_time()
                _, out = codec.reconstruct([fine], [known], [coarse], [np.ones(coarse.shape[1:], bool)], [im.shape[:2]])
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            scores.append(psnr(im, out[0]))
        rec = {"steps": steps, "overlap": overlap, "window": args.window, "seconds_median": round(statistics.median(times), 3),
               "seconds_max": round(max(times), 3), "cpu_seconds_median": round(statistics.median(cpu), 3),
               "psnr": round(float(np.mean(scores)), 3)}
        print(json.dumps(rec), flush=True)
        results.append(rec)
    coarse_only = []
    for im, _, _, coarse in frames:
        t0 = time.perf_counter()
        out = base.decode_coarse_only([coarse], [np.ones(coarse.shape[1:], bool)], [im.shape[:2]])
        coarse_only.append((time.perf_counter() - t0, psnr(im, out[0])))
    summary = {"size": [w, h], "threads": args.threads, "keep": args.keep, "mask": args.mask,
               "kept_fraction": round(float(np.mean([k.mean() for _, _, k, _ in frames])), 3), "images": len(frames),
               "random_init": args.random_init, "restorer": "v1 (coarse at zero)" if args.v1_restorer else "v2", "loadavg_1min": round(float(Path("/proc/loadavg").read_text().split()[0]), 2),
               "configs": results, "coarse_only": {"seconds_median": round(statistics.median(t for t, _ in coarse_only), 3),
                                                  "psnr": round(float(np.mean([s for _, s in coarse_only])), 3)}}
    print(json.dumps(summary["coarse_only"]), f"load {summary['loadavg_1min']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
