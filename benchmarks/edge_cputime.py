"""Edge pipeline and detector cost per 768x512 frame as wall time and as process CPU time.

    python -m benchmarks.edge_cputime --out FILE [--engines DIR --precision fp32|int8] [--threads 1]

Why CPU time beside wall time: on a shared machine the wall clock measures the neighbours as
much as the code; with one inference thread per model the process CPU time is what the frame
costs one otherwise idle core. ``--engines`` takes the encoder, scorer and detector of
``--precision`` from a build_engines.py manifest (tokenizer v1 files); without it the edge's
default configuration runs. The detector row is ``segment()`` alone (detection + masks).
No torch (it runs on the device).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.latency_power import resize_to
from edge.pipeline import EdgePipeline, PipelineConfig
from edge.sampler import BudgetConfig
from edge.segmenter import create_segmenter
from link.packet2 import clear_plan_cache


def timed(fn, items: list, repeats: int) -> tuple[float, float]:
    """(wall p50 ms, CPU p50 ms) of ``fn(item)`` over ``repeats`` calls cycling through ``items``."""
    fn(items[0])
    wall, cpu = [], []
    for i in range(repeats):
        clear_plan_cache()  # the items repeat; a camera's next picture is not one it planned before
        t, c = time.perf_counter(), time.process_time()
        fn(items[i % len(items)])
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return float(np.median(wall)), float(np.median(cpu))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=Path("/work/shared/data/coco128/images/val2017"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--engines", type=Path, default=None)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=16)
    p.add_argument("--bpp", type=float, default=None, help="budget in bits per pixel (default: the config's)")
    p.add_argument("--stage-threads", type=int, default=None, help="pipeline stage threads (default: the config's)")
    args = p.parse_args(argv)
    paths = sorted(q for q in args.images.glob("*") if q.suffix.lower() in {".jpg", ".jpeg", ".png"})[:8]
    if not paths:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    images = [resize_to(np.asarray(Image.open(q).convert("RGB")), (768, 512)) for q in paths]
    cfg = PipelineConfig()
    if args.bpp is not None:
        cfg.budget = BudgetConfig("bpp", args.bpp)
    if args.stage_threads is not None:
        cfg.stage_threads = args.stage_threads
    if args.engines is not None:
        models = json.loads((args.engines / "manifest.json").read_text())["models"]
        cfg.encoder, cfg.tokenizer_id = args.engines / models["encoder"]["engines"][args.precision]["file"], 1
        cfg.recoverability.scorer = args.engines / models["scorer"]["engines"][args.precision]["file"]
    for runtime in (cfg.encoder_runtime, cfg.recoverability.runtime, cfg.segmenter.runtime):
        runtime.intra_op_threads = args.threads
    result: dict = {"precision": args.precision, "threads": args.threads, "stage_threads": cfg.stage_threads,
                    "budget": [cfg.budget.unit, cfg.budget.value], "encoder": str(cfg.encoder),
                    "tokenizer_id": cfg.tokenizer_id, "frame": [768, 512]}
    with EdgePipeline.from_config(cfg) as pipe:
        result["pipeline_wall_p50_ms"], result["pipeline_cpu_p50_ms"] = timed(pipe.select, images, args.repeats)
        result["scale"] = pipe.select(images[0]).scale  # 2, 4: the budget was below a full-size empty frame
    with create_segmenter(cfg.segmenter) as seg:
        result["detector_wall_p50_ms"], result["detector_cpu_p50_ms"] = timed(seg.segment, images, args.repeats + 8)
    result |= {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "torch_loaded": "torch" in sys.modules, "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
