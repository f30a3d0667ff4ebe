"""One camera's stream through tokencast for the temporal benchmark: edge -> channel -> worker.

Every frame goes through the real parts: ``edge.temporal.TemporalSelector`` over the
``EdgePipeline`` (key frames: coarse layer + fine tokens under the budget; delta frames: moved
and object tokens against the reference), ``edge.packer.LinkPacker`` (sealed fragments), an
i.i.d. fragment-erasure channel, and ``cloud.worker.Worker`` on its own SQLite store
(reassembly, references, restore, decode), drained after each frame as a live worker would be
once the frame completes. A frame none of whose fragments arrived is shown as the last picture
the cloud stored (freeze), as the video baseline's concealment does.

Per frame it records what the radio carried (bytes and LoRa airtime at SF7 / 222-byte
fragments) and the same frame re-planned at SF10's 51-byte MTU (header overhead grows with the
fragment count; the kept set is the one chosen for 222 bytes).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge.packer import LinkPacker
from edge.reference import TemporalConfig
from edge.sampler import BudgetConfig
from edge.temporal import TemporalSelector
from link.frame import FRAME_DELTA, Frame
from link.lora import RadioProfile
from link.packet2 import plan2
from link.security import KeyStore, Sealer
from models.metrics import masked_psnr, psnr

DEVICE = 7
KEY = bytes(range(16))
TAG = 8
SF7, SF10 = RadioProfile.for_sf(7), RadioProfile.for_sf(10)


@dataclass
class StreamResult:
    rows: list[dict[str, Any]] = field(default_factory=list)


def airtime(sizes: list[int], radio: RadioProfile) -> float:
    return float(sum(radio.time_on_air_s(s) for s in sizes))


def _frame_of(sel: Any, counter: int) -> Frame:
    return Frame(DEVICE, counter, 0, sel.width, sel.height, sel.tokenizer_id, sel.grid_h, sel.grid_w, sel.kept,
                 sel.indices, coarse=sel.coarse, frame_type=sel.frame_type, ref_counter=sel.ref_counter)


def run_stream(frames: list[np.ndarray], rois: list[np.ndarray], pipeline: Any, codec: Any, temporal: TemporalConfig,
               budget: BudgetConfig, loss: float, seed: int, label: str, progress: Any = None) -> StreamResult:
    from cloud.config import CloudConfig
    from cloud.store import make_store
    from cloud.worker import Worker

    rng = np.random.default_rng(seed)
    selector = TemporalSelector(pipeline, temporal)
    # as the edge service builds it: key frames' coarse copies, as the pipeline's budget paid for
    packer = LinkPacker(DEVICE, pipeline.config.packet.mtu, Sealer(KEY, DEVICE, tag_len=TAG),
                        coarse_repeat=pipeline.config.packet.coarse_repeat)
    out = StreamResult()
    with tempfile.TemporaryDirectory(prefix=f"temporal-{label}-") as tmp:
        cfg = CloudConfig(source="none", worker_id="bench")
        cfg.security.tag_len = TAG
        cfg.store.path, cfg.store.image_dir = Path(tmp) / "db.sqlite", Path(tmp) / "frames"
        cfg.metrics.enabled = cfg.dashboard.enabled = False
        with make_store(cfg.store) as store:
            worker = Worker(cfg, store, {pipeline.config.tokenizer_id: codec}, keys=KeyStore({DEVICE: KEY}))
            shown: np.ndarray | None = None
            for i, (img, roi) in enumerate(zip(frames, rois, strict=True)):
                counter = i + 1
                t0 = time.perf_counter()
                sel = selector.select(img, budget)
                if sel is None:  # only an event trigger declines a picture; the benchmark sets none
                    raise RuntimeError(f"frame {i}: the selector sent nothing (event trigger configured?)")
                fragments = list(packer(sel, counter, 1_700_000_000_000 + i).fragments)
                selector.queued(sel, counter)
                t1 = time.perf_counter()
                lost = rng.random(len(fragments)) < loss
                for f, gone in zip(fragments, lost, strict=True):
                    if not gone:
                        worker.submit(f)
                stored = {r.counter: r for r in worker.drain()}
                t2 = time.perf_counter()
                rec = stored.get(counter)
                if rec is not None:
                    paths = store.frame_paths(DEVICE, counter)
                    with Image.open(paths.image) as im:  # type: ignore[union-attr]
                        shown = np.asarray(im.convert("RGB"))[: img.shape[0], : img.shape[1]]
                picture = shown if shown is not None else np.zeros_like(img)
                resized = picture.shape != img.shape
                if resized:  # a frame coded at 1/2 or 1/4 size whose size-carrying fragment was lost
                    picture = np.asarray(Image.fromarray(picture).resize((img.shape[1], img.shape[0]),
                                                                         Image.Resampling.BICUBIC))
                sizes = [len(f) for f in fragments]
                sizes51 = [p.size for p in plan2(_frame_of(sel, counter), mtu=SF10.mtu, tag_len=TAG)]
                out.rows.append({
                    "frame": i, "type": "delta" if sel.frame_type == FRAME_DELTA else "key", "reason": sel.reason,
                    "ref": sel.ref_counter, "kept": int(sel.kept.sum()), "moved_fraction": sel.moved_fraction,
                    "bytes": sum(sizes), "fragments": len(sizes), "fragments_lost": int(lost.sum()),
                    "received": rec is not None, "degraded": bool(rec.degraded) if rec is not None else None,
                    "airtime_sf7_s": airtime(sizes, SF7), "bytes_mtu51": sum(sizes51),
                    "airtime_sf10_s": airtime(sizes51, SF10),
                    "psnr": psnr(img, picture), "roi_psnr": masked_psnr(img, picture, roi),
                    "edge_s": t1 - t0, "cloud_s": t2 - t1, "scale": sel.scale, "resized_for_scoring": resized,
                })  # fmt: skip
                if progress is not None:
                    progress.update(1)
    return out
