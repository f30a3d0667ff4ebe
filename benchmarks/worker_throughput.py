"""Worker throughput: frames/s of the real cloud worker at a given frame size, batching on and off.

    python benchmarks/worker_throughput.py --images ../shared/data/val --out benchmarks/results/worker \
        --frames 24 --max-batch 1 8

Frames are made as the edge makes them (shipped tokenizer, a dispersed kept set at ``--keep``,
sealed and fragmented at ``--mtu`` with the shipped prior) from pictures resized to
``--width`` x ``--height``, for ``--devices`` devices. For each ``--max-batch`` a fresh worker
(shipped weights, SQLite store and PNGs in a temporary folder) is fed every fragment through
``Worker.submit``, then timed while it restores, decodes and stores them all (``drain``): the
broker is left out on purpose, so the figure is the worker's own capacity on this machine.
Writes ``worker_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import fail, images_in, load_image, write_json  # noqa: E402


def device_key(device_id: int) -> bytes:
    return bytes((device_id * 31 + i) & 0xFF for i in range(16))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--keep", type=float, default=0.5, help="share of tokens kept (the rest restored)")
    p.add_argument("--mtu", type=int, default=222)
    p.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=8, help="restore steps")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="4 frames of 128x128 (for tests)")
    return p


def make_fragments(codec, paths: list[Path], args) -> list[list[bytes]]:
    """Sealed fragments per frame, devices interleaved as they would arrive."""
    from link.entropy import default_prior
    from link.frame import Frame
    from link.packet import pack
    from link.security import Sealer
    from models.masks import dispersed_known

    rng = np.random.default_rng(0)
    frames = []
    for i in tqdm(range(args.frames), desc="packing", file=sys.stderr):
        im = load_image(paths[i % len(paths)])
        im = np.asarray(Image.fromarray(im).resize((args.width, args.height), Image.BICUBIC))
        grid = codec.encode([im])[0]
        kept = dispersed_known(*grid.shape, args.keep, rng)
        dev = 1 + i % args.devices
        frame = Frame.from_index_grid(grid, kept, device_id=dev, counter=1 + i // args.devices,
                                      capture_ms=int(time.time() * 1000), width=args.width, height=args.height,
                                      tokenizer_id=1)
        frames.append(pack(frame, mtu=args.mtu, sealer=Sealer(device_key(dev), dev), prior=default_prior(1)))
    return frames


def run_once(codec, fragments: list[list[bytes]], max_batch: int, args, workdir: Path) -> dict:
    from cloud.config import CloudConfig
    from cloud.store import make_store
    from cloud.worker import Worker
    from link.entropy import default_prior
    from link.security import KeyStore

    cfg = CloudConfig(source="none", worker_id=f"bench-b{max_batch}")
    cfg.store.path = workdir / f"b{max_batch}" / "tokencast.db"
    cfg.store.image_dir = workdir / f"b{max_batch}" / "frames"
    cfg.batch.max_batch = max_batch
    cfg.restore.steps = args.steps
    cfg.metrics.enabled = cfg.dashboard.enabled = False
    if default_prior(1) is None:
        raise RuntimeError("the shipped token prior is missing; frames were packed with it")
    keys = KeyStore({d: device_key(d) for d in range(1, args.devices + 1)})
    worker = Worker(cfg, make_store(cfg.store), {1: codec}, keys=keys)
    t0 = time.perf_counter()
    outcomes = [worker.submit(f) for frags in fragments for f in frags]
    t_ingest = time.perf_counter() - t0
    if any(o != "staged" for o in outcomes):
        raise RuntimeError(f"worker did not stage every fragment: {sorted(set(outcomes))}")
    t0 = time.perf_counter()
    stored = worker.drain()
    seconds = time.perf_counter() - t0
    if len(stored) != len(fragments):
        raise RuntimeError(f"stored {len(stored)} of {len(fragments)} frames")
    return {"max_batch": max_batch, "frames": len(stored), "batches": worker.stats.batches,
            "ingest_s": round(t_ingest, 3), "restore_store_s": round(seconds, 3),
            "frames_per_s": round(len(stored) / seconds, 3), "ms_per_frame": round(seconds * 1000 / len(stored), 1)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.frames, args.width, args.height, args.steps = 4, 128, 128, 2
    if args.frames < 1 or args.devices < 1 or not 0 < args.keep <= 1 or min(args.max_batch) < 1:
        return fail("worker_throughput", "--frames, --devices and --max-batch must be >= 1 and --keep in (0, 1]")
    paths = images_in(args.images)
    if not paths:
        return fail("worker_throughput", f"no images in {args.images}")
    import torch

    from models.codec import TokenCodec
    from models.restore import RestoreConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = TokenCodec.load(1, device=args.device, restore=RestoreConfig(steps=args.steps))
    fragments = make_fragments(codec, paths, args)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in tqdm(args.max_batch, desc="runs", file=sys.stderr):
            runs.append(run_once(codec, fragments, mb, args, Path(tmp)))
    result = {"width": args.width, "height": args.height, "keep": args.keep, "frames": args.frames,
              "devices": args.devices, "restore_steps": args.steps, "device": str(codec.device),
              "torch_threads": torch.get_num_threads(),
              "fragments_per_frame": round(float(np.mean([len(f) for f in fragments])), 2),
              "bytes_per_frame": round(float(np.mean([sum(map(len, f)) for f in fragments])), 1), "runs": runs}
    out = Path(args.out)
    write_json(out / "worker_throughput.json", result)
    for r in runs:
        print(f"max_batch {r['max_batch']:>3}: {r['frames_per_s']:.2f} frames/s ({r['ms_per_frame']:.0f} ms/frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
