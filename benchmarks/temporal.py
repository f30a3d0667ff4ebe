"""Temporal coding on a video: delta frames vs independent frames vs a real video codec.

    python benchmarks/temporal.py --video FILE --frames N --out DIR [--step 2] [--budget 500]
        [--key-ratio 15] [--coarse-repeat 3] [--delta-min-packets 3] [--gop 100] [--loss 0.1] [--ladder 1200 2400 4800]
        [--threshold 0.35] [--codec hevc av1] [--resume]

Conditions, each over the same N frames (every ``step``-th of the file), one camera:

* ``delta``        key frame every ``gop`` frames (and on scene change) under ``budget`` x
                   ``key_ratio`` bytes (an I-frame: its quality lasts the GOP), its coarse
                   fragments sent ``coarse_repeat`` times; delta frames between under ``budget``
                   bytes, as at least ``delta_min_packets`` packets (edge.temporal, the settings
                   the edge service reads from [temporal]);
* ``independent``  every frame a key frame (coarse sent once) under ``budget``, and at the
                   ``ladder`` budgets: the rate-distortion curve the "bytes at equal PSNR" figure
                   reads; then ``independent_eq``: every frame alone at the budget the curve says
                   matches the delta stream's PSNR, measured, and re-aimed (up to
                   ``match_tries`` runs) until it lies within ``match_db`` of it;
* ``delta`` again with ``loss`` i.i.d. fragment erasures, and ``independent`` at the matched
  budget (else ``budget``) with the same loss;
* the video codec (HEVC libx265 or AV1 SVT, PyAV) with a GOP of ``gop``, the sweep point with
  the best PSNR at or under the delta stream's mean bytes/frame, without and with the loss
  (benchmarks/video_codec.py: packets of the same MTU, a broken GOP freezes).

ROI = union of the shipped detector's masks on the original frame (the same for every method).
Writes DIR/temporal.json (config, per-condition means, per-frame rows, equal-PSNR comparison,
airtime at SF7/222 B and SF10/51 B, frames per hour at 1% duty cycle) and DIR/temporal.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import fail, nanmean, pyplot, write_json

PROG = "temporal"
DUTY_S_PER_HOUR = 36.0  # 1% duty cycle
LOSS_DRAWS = 20  # channel draws averaged for the video codec under loss (tokencast: one draw, see notes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--video", type=Path, required=True, help="video file (OpenCV-readable)")
    p.add_argument("--frames", type=int, default=30, help="frames to code (default 30)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/temporal"), help="output folder")
    p.add_argument("--step", type=int, default=2, help="take every step-th frame of the file (default 2)")
    p.add_argument("--budget", type=int, default=500,
                   help="bytes per delta frame, and per independent frame (default 500)")
    p.add_argument("--key-ratio", type=float, default=15.0,
                   help="a key frame's budget = this x --budget (temporal.key_budget_ratio; default 15)")
    p.add_argument("--coarse-repeat", type=int, default=3, choices=(1, 2, 3),
                   help="copies of a key frame's coarse fragments in the delta streams (default 3)")
    p.add_argument("--delta-min-packets", type=int, default=3, choices=(1, 2, 3, 4),
                   help="a delta frame goes out as at least this many packets (temporal.delta_min_packets; default 3)")
    p.add_argument("--gop", type=int, default=100, help="key-frame interval, also the video codec's GOP (default 100)")
    p.add_argument("--loss", type=float, default=0.1, help="fragment / packet loss probability (default 0.1)")
    p.add_argument("--ladder", type=int, nargs="*", default=[1200, 2400, 4800],
                   help="more independent-frame budgets for the equal-PSNR figure (default 1200 2400 4800)")
    p.add_argument("--match-db", type=float, default=0.3, help="equal PSNR means within this (default 0.3 dB)")
    p.add_argument("--match-tries", type=int, default=2, help="independent runs aimed at the delta PSNR (default 2)")
    p.add_argument("--threshold", type=float, default=0.35, help="code distance a token must move (default 0.35)")
    p.add_argument("--codec", choices=("hevc", "av1"), nargs="+", default=["hevc"],
                   help="video baselines (default hevc)")
    p.add_argument("--mtu", type=int, default=222, help="fragment MTU for the stream (default 222, SF7)")
    p.add_argument("--random-init", action="store_true", help="untrained models (smoke tests only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="reuse the conditions DIR/temporal_partial.json already holds (same arguments)")
    return p


def read_video(path: Path, n: int, step: int) -> tuple[list[np.ndarray], float]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    frames: list[np.ndarray] = []
    i = 0
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    return frames, fps / step


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    air7, air10 = float(np.mean([r["airtime_sf7_s"] for r in rows])), float(np.mean([r["airtime_sf10_s"] for r in rows]))
    return {
        "frames": len(rows), "key_frames": sum(r["type"] == "key" for r in rows),
        "delta_frames": sum(r["type"] == "delta" for r in rows),
        "bytes_per_frame": float(np.mean([r["bytes"] for r in rows])),
        "bytes_per_frame_mtu51": float(np.mean([r["bytes_mtu51"] for r in rows])),
        "psnr": nanmean(r["psnr"] for r in rows), "roi_psnr": nanmean(r["roi_psnr"] for r in rows),
        "airtime_sf7_s": air7, "airtime_sf10_s": air10,
        "frames_per_hour_1pct_sf7": DUTY_S_PER_HOUR / air7, "frames_per_hour_1pct_sf10": DUTY_S_PER_HOUR / air10,
        "not_received": sum(not r["received"] for r in rows),
        "degraded": float(sum(float(r["degraded"] or 0) for r in rows)),
        "fragments_lost": sum(r["fragments_lost"] for r in rows),
        "edge_s": float(np.mean([r["edge_s"] for r in rows])), "cloud_s": float(np.mean([r["cloud_s"] for r in rows])),
    }  # fmt: skip


def bytes_at_psnr(curve: list[tuple[float, float]], target: float) -> float | None:
    """Bytes/frame where the (bytes, PSNR) curve reaches ``target`` (linear interpolation), or None."""
    pts = sorted(curve)
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if min(p0, p1) <= target <= max(p0, p1) and p1 != p0:
            return b0 + (target - p0) * (b1 - b0) / (p1 - p0)
    return None


def independent_curve(results: dict[str, Any]) -> list[tuple[float, float]]:
    return [(r["bytes_per_frame"], r["psnr"]) for k, r in results.items()
            if k.startswith("independent") and r["loss"] == 0.0]


def match_independent(run: Any, results: dict[str, Any], target: float, within: float,
                      tries: int) -> dict[str, Any] | None:
    """Every frame coded alone at the budget the independent curve says gives ``target`` PSNR,
    measured; re-aimed on the curve with the new point until within ``within`` dB (``tries`` runs).
    The closest run, with its label, or None when the curve never brackets the target."""
    best: dict[str, Any] | None = None
    for k in range(tries):
        b = bytes_at_psnr(independent_curve(results), target)
        if b is None:
            break
        label = f"independent_eq{k}"
        r = {"label": label, **run(label, int(round(b)))}
        if best is None or abs(r["psnr"] - target) < abs(best["psnr"] - target):
            best = r
        if abs(r["psnr"] - target) <= within:
            break
    return best


def video_rows(coded: Any, shown: list[np.ndarray], frames: list[np.ndarray], rois: list[np.ndarray],
               mtu: int, gop: int) -> list[dict[str, Any]]:
    from benchmarks.temporal_stream import SF7, SF10, airtime
    from benchmarks.video_codec import packets
    from models.metrics import masked_psnr, psnr

    rows = []
    for i, (img, pic, roi, size) in enumerate(zip(frames, shown, rois, coded.sizes, strict=True)):
        s222, s51 = packets(size, mtu), packets(size, SF10.mtu)
        rows.append({"frame": i, "type": "key" if i % gop == 0 else "delta", "bytes": sum(s222),
                     "bytes_mtu51": sum(s51), "coded_bytes": size,
                     "airtime_sf7_s": airtime(s222, SF7), "airtime_sf10_s": airtime(s51, SF10),
                     "psnr": psnr(img, pic), "roi_psnr": masked_psnr(img, pic, roi), "received": True,
                     "degraded": not np.array_equal(pic, coded.decoded[i]), "fragments_lost": 0,
                     "edge_s": 0.0, "cloud_s": 0.0})
    return rows


def weight_digests() -> dict[str, str]:
    import hashlib

    from models.registry import files_for

    files = files_for(3)
    out = {}
    for name in ("tokenizer", "maskgit"):
        path = files.path(name)
        out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
    return out


def load_codec2(random_init: bool) -> tuple[Any, str]:
    """TokenCodec2 with the shipped v2 restorer, or, while none matches the shipped tokenizer v2,
    the v1 restorer with its coarse projections at zero (what v2 training starts from; the fine
    ids are v1's): (codec, which)."""
    from models.checkpoints import CHECKPOINT_DIR
    from models.codec2 import RESTORE_V2, TokenCodec2, load_tokenizer2
    from models.registry import ModelNotFound
    from models.restore import Restorer

    try:
        return TokenCodec2.load(3, device="cpu", random_init=random_init), "v2" if not random_init else "random"
    except ModelNotFound as exc:  # not shipped yet, or trained on another tokenizer v2 than the shipped one
        why = str(exc)
    from models.train_maskgit2 import build_model

    tok = load_tokenizer2(3, "cpu")
    mg = build_model(tok, str(CHECKPOINT_DIR / "maskgit_f8_k1024.safetensors"))
    codebook = tok.quantizer.normalized_codebook().detach()
    print(f"{PROG}: no usable v2 restorer ({why}): v1 restorer, coarse input at zero", file=sys.stderr)
    return TokenCodec2(tok, Restorer(mg, RESTORE_V2, "cpu", codebook=codebook)), "v1 (coarse at zero)"


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from benchmarks import video_codec
    from benchmarks.quality import roi_mask
    from benchmarks.temporal_stream import run_stream
    from benchmarks.tokencast_link import build_pipeline
    from edge.reference import TemporalConfig
    from edge.sampler import BudgetConfig
    from models.metrics import psnr

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # shares the machine; per-frame restores are small
    frames, fps = read_video(args.video, args.frames, args.step)
    codec, restorer = load_codec2(args.random_init)
    weights = weight_digests()  # the models change while v2 trains: name the files this run used
    pipelines = {1: build_pipeline(codec, mtu=args.mtu)}  # by coarse_repeat
    if args.coarse_repeat != 1:
        pipelines[args.coarse_repeat] = build_pipeline(codec, mtu=args.mtu, coarse_repeat=args.coarse_repeat)
    rois = [roi_mask(pipelines[1].segmenter.segment(f), f.shape[:2]) for f in frames]
    delta_cfg = TemporalConfig(enabled=True, key_interval=args.gop, threshold=args.threshold,
                               key_budget_ratio=args.key_ratio, delta_min_packets=args.delta_min_packets)
    alone = TemporalConfig(enabled=True, key_interval=1)
    results: dict[str, Any] = {}
    per_frame: dict[str, list[dict[str, Any]]] = {}
    partial = args.out / "temporal_partial.json"
    if args.resume and partial.is_file():
        done = json.loads(partial.read_text())
        results, per_frame = done["results"], done["per_frame"]
    t0 = time.time()
    bar = tqdm(desc=PROG, unit="frame")

    def condition(label: str, tcfg: TemporalConfig, budget: int, loss: float, repeat: int = 1) -> dict[str, Any]:
        if label not in results:  # --resume: a condition already in the partial file is not run again
            res = run_stream(frames, rois, pipelines[repeat], codec, tcfg, BudgetConfig("bytes", budget), loss,
                             args.seed, label, bar)
            per_frame[label] = res.rows
            results[label] = {"budget": budget, "loss": loss, "coarse_repeat": repeat, **summarize(res.rows)}
            args.out.mkdir(parents=True, exist_ok=True)  # what is done survives a failure further on
            write_json(partial, {"results": results, "per_frame": per_frame})
        return results[label]

    delta = condition("delta", delta_cfg, args.budget, 0.0, args.coarse_repeat)
    condition(f"delta_loss{args.loss:g}", delta_cfg, args.budget, args.loss, args.coarse_repeat)
    for label, budget in [("independent", args.budget)] + [(f"independent_{b}", b) for b in args.ladder]:
        condition(label, alone, budget, 0.0)
    match = match_independent(lambda label, b: condition(label, alone, b, 0.0), results, delta["psnr"],
                              args.match_db, args.match_tries)
    condition(f"independent_loss{args.loss:g}", alone, match["budget"] if match else args.budget, args.loss)
    bar.close()
    # the video codec(s) at the delta stream's bytes/frame
    target = results["delta"]["bytes_per_frame"]
    os.environ.setdefault("SVT_LOG", "1")

    def score(c: Any) -> float:
        return float(np.mean([psnr(a, b) for a, b in zip(frames, c.decoded, strict=True)]))

    sweep: list[dict[str, Any]] = []
    for codec_name in args.codec:
        qs = list(range(30, 52, 3)) + [51] if codec_name == "hevc" else list(range(40, 64, 3)) + [63]
        points = video_codec.encode_sweep(frames, codec_name, args.gop, sorted(set(qs)), scales=(1, 2, 4))
        chosen = video_codec.pick(points, target, score, args.mtu)
        sweep += [{"codec": codec_name, "q": p.q, "scale": p.scale, "bytes_per_frame": p.mean_bytes(args.mtu),
                   "psnr": score(p)} for p in points]
        if chosen is None:
            continue
        for label, loss in ((codec_name, 0.0), (f"{codec_name}_loss{args.loss:g}", args.loss)):
            # losses are cheap to redraw here (no re-encoding): the mean over LOSS_DRAWS channel draws
            draws = [video_codec.conceal(chosen, args.gop, loss, args.mtu, np.random.default_rng(args.seed + d))
                     for d in range(LOSS_DRAWS if loss else 1)]
            all_rows = [video_rows(chosen, shown, frames, rois, args.mtu, args.gop) for shown, _ in draws]
            rows = [{**r0, "psnr": nanmean(rs[i]["psnr"] for rs in all_rows),
                     "roi_psnr": nanmean(rs[i]["roi_psnr"] for rs in all_rows),
                     "degraded": sum(bool(rs[i]["degraded"]) for rs in all_rows) / len(all_rows)}
                    for i, r0 in enumerate(all_rows[0])]
            per_frame[label] = rows
            results[label] = {"q": chosen.q, "scale": chosen.scale, "loss": loss, "loss_draws": len(draws),
                              **summarize(rows), "frames_not_decodable": float(np.mean([b for _, b in draws]))}
    curve = independent_curve(results)
    eq = bytes_at_psnr(curve, results["delta"]["psnr"])
    db = results["delta"]["bytes_per_frame"]
    comparison = {
        "delta_bytes_per_frame": db, "delta_psnr": results["delta"]["psnr"],
        "independent_bytes_at_delta_psnr": eq,
        "saving": None if eq is None else 1.0 - db / eq, "ratio": None if eq is None else eq / db,
        "note": None if eq is not None else "the delta PSNR lies outside the independent curve's range; see the curve",
        "independent_curve": sorted(curve),
        # the measured run: every frame coded alone at a budget aimed at the delta PSNR
        "measured": None if match is None else {
            "label": match["label"], "budget": match["budget"], "bytes_per_frame": match["bytes_per_frame"],
            "psnr": match["psnr"], "psnr_gap_db": match["psnr"] - results["delta"]["psnr"],
            "within_db": args.match_db, "ratio": match["bytes_per_frame"] / db},
    }
    report = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "fps_effective": fps, "frame_size": list(frames[0].shape[:2]), "restorer": restorer,
                   "weights": weights},
        "notes": [
            "tokencast rows: real edge (torch tokenizer in process, shipped detector and scorer), sealed fragments, "
            "the worker with its SQLite store; bytes include headers and 8-byte tags",
            "bytes_per_frame_mtu51 / airtime_sf10: the same selections re-planned into 51-byte fragments",
            "video rows: coded packets (no container) in radio packets of --mtu (51 for SF10) bytes, each with "
            "12 bytes of sequence header and tag as a fragment has; loss: a broken GOP freezes",
            "frames_per_hour_1pct = 36 s of airtime per hour / mean airtime per frame",
            f"tokencast under loss: one channel draw (seed); video under loss: mean of {LOSS_DRAWS} draws; "
            "'degraded' for video rows: frames frozen (mean per draw)",
        ],
        "results": results, "equal_psnr": comparison, "video_sweep": sweep, "per_frame": per_frame,
        "wall_s": time.time() - t0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "temporal.json", report)
    plot(args.out / "temporal.png", per_frame, results, curve, sweep, args.codec,
         None if match is None else match["label"])
    print_summary(results, comparison, args.out)
    return 0


def print_summary(results: dict[str, Any], comparison: dict[str, Any], out: Path) -> None:
    print(f"{'condition':24s} {'B/frame':>8s} {'B@51':>7s} {'PSNR':>6s} {'ROI':>6s} {'SF7 s':>6s} {'SF10 s':>7s} "
          f"{'f/h SF7':>8s} {'f/h SF10':>8s} degr lost")
    for k, r in results.items():
        print(f"{k:24s} {r['bytes_per_frame']:8.0f} {r['bytes_per_frame_mtu51']:7.0f} {r['psnr']:6.2f} "
              f"{r['roi_psnr']:6.2f} {r['airtime_sf7_s']:6.2f} {r['airtime_sf10_s']:7.2f} "
              f"{r['frames_per_hour_1pct_sf7']:8.0f} {r['frames_per_hour_1pct_sf10']:8.0f} "
              f"{r['degraded']:4.1f} {r['not_received']:4d}")
    eq = comparison["independent_bytes_at_delta_psnr"]
    print(f"independent frames need {'n/a' if eq is None else f'{eq:.0f}'} B/frame (interpolated) for the delta "
          f"stream's {comparison['delta_psnr']:.2f} dB (delta: {comparison['delta_bytes_per_frame']:.0f} B/frame)")
    m = comparison.get("measured")
    if m is not None:
        print(f"measured: {m['label']} at budget {m['budget']}: {m['bytes_per_frame']:.0f} B/frame, "
              f"{m['psnr']:.2f} dB ({m['psnr_gap_db']:+.2f} dB): {m['ratio']:.2f}x the delta stream's bytes")
    print(f"-> {out / 'temporal.json'}, {out / 'temporal.png'}")


def plot(path: Path, per_frame: dict[str, list[dict]], results: dict[str, Any], curve: list, sweep: list,
         codecs: list[str], matched: str | None = None) -> None:
    plt = pyplot()
    fig, (a, r, b) = plt.subplots(1, 3, figsize=(19, 4.8))
    for label, rows in per_frame.items():
        if label.startswith("independent_") and "loss" not in label and label != matched:
            continue
        name = f"{label} ({results[label]['bytes_per_frame']:.0f} B/f)"
        for ax, key in ((a, "psnr"), (r, "roi_psnr")):
            ax.plot([x["frame"] for x in rows], [x[key] for x in rows], label=name, lw=1,
                    ls="--" if "loss" in label else "-")
    a.set(xlabel="frame", ylabel="PSNR (dB)", title="PSNR per frame")
    r.set(xlabel="frame", ylabel="ROI-PSNR (dB)", title="ROI-PSNR per frame (detected people)")
    a.legend(fontsize=7)
    xs, ys = zip(*sorted(curve)) if curve else ((), ())
    b.plot(xs, ys, "o-", label="independent (key frames)")
    for label in ("delta", *codecs):
        if label in results:
            b.plot(results[label]["bytes_per_frame"], results[label]["psnr"], "s", ms=9, label=label)
    for codec in codecs:
        pts = [s for s in sweep if s["codec"] == codec]
        b.plot([s["bytes_per_frame"] for s in pts], [s["psnr"] for s in pts], ".", alpha=0.5, label=f"{codec} sweep")
    b.set(xlabel="bytes / frame", ylabel="PSNR (dB)", title="rate-distortion", xscale="log")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.step < 1 or args.gop < 1 or args.budget < 1 or not 0 <= args.loss < 1:
        return fail(PROG, "--frames, --step, --gop and --budget must be positive and --loss in [0, 1)")
    if not args.video.is_file():
        return fail(PROG, f"--video {args.video} is not a file")
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        return fail(PROG, str(exc))


if __name__ == "__main__":
    sys.exit(main())
