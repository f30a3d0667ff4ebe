"""Rate-distortion of tokencast against random masking, the tokenizer ceiling and classical codecs.

    python benchmarks/rate_distortion.py --images DIR --out DIR [--bpp 0.02 0.04 0.074 0.1 0.167]
        [--quick] [--limit N] [--random-init]

For every image and target bpp (bytes = bpp x W x H / 8, the sealed packet's exact size):
  tokencast          the edge pipeline's semantic-aware selection, packed, restored, decoded
  tokencast-random   a uniformly random kept set cut to the same byte budget, same restorer
  tokenizer-all      every token kept (the ceiling; its bpp is what that packet costs, once per image)
  jpeg, webp, avif, heic, jpeg2000
                     the largest file under the budget (quality bisection; half or quarter
                     resolution upsampled back where the lowest quality is still too big)
Metrics: bpp actually spent, PSNR, MS-SSIM, ROI-PSNR inside the edge segmenter's objects found on
the original (null when it finds none), HaarPSI, DSS, VSI. Writes rd.json (one record per method,
image and target), rd.csv, rd_summary.json (means and notes) and rd.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks import classical
from benchmarks.quality import PERCEPTUAL, all_metrics, learned_metric_notes, perceptual_available, roi_mask
from benchmarks.report import fail, group_means, images_in, load_image, pyplot, write_csv, write_json
from edge.segmenter import SegmenterConfig

PROG = "rate_distortion"
DEFAULT_BPP = (0.02, 0.04, 0.074, 0.1, 0.167)
QUICK_BPP = (0.06, 0.12)  # a 96x128 test image holds 192 tokens: ~0.2 bpp keeps them all
FIELDS = ("bpp", "psnr", "ms_ssim", "roi_psnr", "psnr_ds16", *PERCEPTUAL)
METHODS_TC = ("tokencast", "tokencast-random", "tokenizer-all")


def bpp_of(n_bytes: int, width: int, height: int) -> float:
    return 8.0 * n_bytes / (width * height)


def evaluate_image(codec, pipe, im: np.ndarray, name: str, targets: list[float], codecs: dict,
                   iters: int, seed: int) -> list[dict]:
    from benchmarks import tokencast_link as tl
    from edge.complexity import pad_to_multiple
    from edge.sampler import BudgetConfig, BudgetTooSmall, budget_limit
    from link.dc import block_means
    from link.tokenizers import get_tokenizer

    h, w = im.shape[:2]
    roi = roi_mask(pipe.segmenter.segment(im), (h, w))
    tid = pipe.config.tokenizer_id
    layered = get_tokenizer(tid).layered
    gh, gw = -(-h // pipe.config.factor), -(-w // pipe.config.factor)
    grid, coarse = pipe.encode_layers(pad_to_multiple(im, 16 if layered else pipe.config.factor))
    grid = grid[:gh, :gw]
    means = block_means(im) if coarse is not None and pipe.config.block_means else None
    mtu = pipe.config.packet.mtu
    rng = np.random.default_rng(seed)
    base = {"image": name, "width": w, "height": h, "roi_fraction": float(roi.mean())}
    out: list[dict] = []

    def add(method: str, target: float | None, recon: np.ndarray | None, n_bytes: int | None, **extra: object) -> None:
        rec = base | {"method": method, "target_bpp": target, **extra}
        if recon is None:  # the method cannot meet this budget at all
            rec |= {f: float("nan") for f in FIELDS} | {"bpp": float("nan")}
        else:
            rec |= {"bpp": bpp_of(n_bytes or 0, w, h)} | all_metrics(im, recon, roi)
        out.append(rec)

    every = np.ones(grid.shape, bool)
    full = tl.send(grid, every, w, h, mtu, tid, coarse, means)
    add("tokenizer-all", None, tl.reconstruct(codec, grid, every, w, h, seed, coarse, means), full.size,
        kept_fraction=1.0)
    if layered:
        none = tl.send(grid, ~every, w, h, mtu, tid, coarse, means)
        add("coarse-only", None, tl.receive(codec, none.fragments, grid.shape, w, h, seed)[0], none.size,
            kept_fraction=0.0)
    for t in targets:
        sel = tl.select(pipe, im, t)
        if sel is None or sel.tokens is None:
            add("tokencast", t, None, None, note="budget below an empty frame")
            add("tokencast-random", t, None, None, note="budget below an empty frame")
            continue
        sent = tl.send(sel.tokens, sel.kept, w, h, mtu, tid, sel.coarse, sel.dc)
        recon, _ = tl.receive(codec, sent.fragments, sel.kept.shape, w, h, seed)
        add("tokencast", t, recon, sent.size, kept_fraction=sel.kept_fraction, n_semantic=sel.n_semantic,
            scale=sel.scale)
        cost = tl.bytes_cost(pipe, w, h, sel.coarse, sel.kept.shape, sel.dc)
        try:
            kept = tl.random_kept(sel.kept.shape, sel.tokens, cost, budget_limit(BudgetConfig("bpp", t), w, h), rng)
        except BudgetTooSmall:
            add("tokencast-random", t, None, None, note="budget below an empty frame")
        else:
            sent = tl.send(sel.tokens, kept, w, h, mtu, tid, sel.coarse, sel.dc)
            recon, _ = tl.receive(codec, sent.fragments, kept.shape, w, h, seed)
            add("tokencast-random", t, recon, sent.size, kept_fraction=float(kept.mean()), scale=sel.scale)
        for cname, c in codecs.items():
            coded = classical.at_rate(c, im, t, iters)
            add(cname, t, coded.recon, len(coded.data), quality=coded.quality, scale=coded.scale,
                fits=coded.fits)
    return out


def plot(summary: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    methods = sorted({r["method"] for r in summary}, key=lambda m: (m not in METHODS_TC, m))
    for ax, field, label in zip(axes, ("psnr", "roi_psnr"), ("PSNR (dB)", "ROI-PSNR (dB)"), strict=True):
        for m in methods:
            rows = sorted((r for r in summary if r["method"] == m and np.isfinite(r["bpp"])
                           and np.isfinite(r[field])), key=lambda r: r["bpp"])
            xs = [r["bpp"] for r in rows]
            ys = [r[field] for r in rows]
            if not rows:
                continue
            if m == "tokenizer-all":
                ax.scatter(xs, ys, marker="*", s=120, label=m, zorder=3)
            else:
                ax.plot(xs, ys, "o-", label=m, lw=2.2 if m == "tokencast" else 1.2)
        if ax.has_data():
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no objects found: no ROI", ha="center", transform=ax.transAxes)
        ax.set_xlabel("bits per pixel (actually spent)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    if axes[0].has_data():
        axes[0].legend(fontsize=8)
    fig.suptitle("tokencast rate-distortion (mean over images)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--bpp", type=float, nargs="+", default=None, help=f"targets (default {DEFAULT_BPP})")
    p.add_argument("--codecs", nargs="+", default=None, help="classical codecs (default: all available)")
    p.add_argument("--quick", action="store_true", help="coarse codec search; targets 0.06 and 0.12 unless given")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--max-side", type=int, default=0, help="downscale images to this long side first")
    p.add_argument("--segmenter", default=SegmenterConfig.backend)
    p.add_argument("--mtu", type=int, default=222)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-init", action="store_true", help="untrained weights (tests)")
    p.add_argument("--tokenizer", type=int, choices=(1, 3), default=3,
                   help="3: coarse layer + fine tokens (wire v2, default); 1: fine tokens only (wire v1)")
    p.add_argument("--encoder", type=Path, default=None,
                   help="an ONNX encoder file for the edge (default: the torch tokenizer in process)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    targets = list(args.bpp or (QUICK_BPP if args.quick else DEFAULT_BPP))
    if any(t <= 0 for t in targets):
        return fail(PROG, f"bpp targets must be positive, got {targets}")
    paths = images_in(args.images, args.limit)
    if not paths:
        return fail(PROG, f"no images in {args.images}")
    codecs = classical.available_codecs()
    if args.codecs:
        unknown = sorted(set(args.codecs) - set(codecs))
        if unknown:
            return fail(PROG, f"codecs {unknown} unavailable; choose from {sorted(codecs)}")
        codecs = {k: codecs[k] for k in args.codecs}
    from benchmarks.tokencast_link import build_pipeline, load_codec

    codec = load_codec(args.tokenizer, device=args.device, random_init=args.random_init)
    records: list[dict] = []
    with build_pipeline(codec, args.segmenter, args.mtu, encoder=args.encoder) as pipe:
        for path in tqdm(paths, desc=PROG, file=sys.stderr):
            im = load_image(path, args.max_side)
            records += evaluate_image(codec, pipe, im, path.name, targets, codecs, 4 if args.quick else 8, args.seed)
    summary = group_means(records, ("method", "target_bpp"), FIELDS)
    notes = [learned_metric_notes(),
             "tokenizer-all has no target: every token kept, bpp is that packet's size.",
             "Classical files that exceed the target even at quarter resolution and lowest quality are "
             "recorded with fits=false at their smallest size.",
             f"Encoder: {args.encoder or 'the torch tokenizer in process (same weights as its ONNX export)'}."]
    if not perceptual_available():
        notes.append("piq not importable: HaarPSI, DSS and VSI are null.")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "rd.json", records)
    write_csv(args.out / "rd.csv", records)
    write_json(args.out / "rd_summary.json", {"targets": targets, "random_init": args.random_init,
                                               "images": len(paths), "summary": summary, "notes": notes})
    plot(summary, args.out / "rd.png")
    for r in summary:
        target = "-" if r["target_bpp"] is None else f"{r['target_bpp']:g}"
        print(f"{r['method']:>17} target {target:<6} bpp {r['bpp']:.4f}  PSNR {r['psnr']:.2f}  "
              f"ROI {r['roi_psnr']:.2f}  MS-SSIM {r['ms_ssim']:.3f}  PSNR/16 {r['psnr_ds16']:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
