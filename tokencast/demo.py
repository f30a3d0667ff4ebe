"""``tokencast demo``: edge and cloud end to end on sample images, in one process.

    image -> EdgePipeline.select (ONNX encoder, segmenter, scorer, sampler under the bpp budget)
          -> edge.packer.LinkPacker (sealed fragments; OUT/packets/<name>.bin, a capture file)
          -> link.channel (which fragments survive) -> the demo link (loopback, serial, MQTT)
          -> cloud.worker.Worker (verify, stage, restore masked and lost tokens, decode, store)
          -> OUT/reconstructions, OUT/side_by_side, report.json

This module is the composition root the style guide puts above edge/ and cloud/: it is the
only place that imports both. Everything it writes lives under OUT; OUT/cloud is the worker's
store, rebuilt on each run so counters restart at 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokencast.demo_link import LinkSpecError, open_link
from tokencast.samples import DemoImage, ImageInputError, folder_images, sample_images

log = logging.getLogger("tokencast.demo")

DEVICE_ID = 1
TAG_LEN = 8
DEFAULT_BUDGET_BPP = 0.074
DEFAULT_MTU = 222  # one LoRa packet at SF8/125 kHz
DEFAULT_TOKENIZER = 3
CHANNELS = ("none", "awgn", "rayleigh", "erasure")


class UsageError(Exception):
    """Bad command line; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _positive(kind: type, name: str):  # argparse type factory: one clear message per bad value
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tokencast demo", description="run edge and cloud end to end on sample images")
    p.add_argument("--images", type=Path, help="folder of images (default: bundled scikit-image samples)")
    p.add_argument("--video", type=Path, help="a video file instead: its frames as one camera's stream, key and "
                                              "delta frames (wire v2, tokenizer 3)")
    p.add_argument("--frames", type=_positive(int, "--frames"), default=30,
                   help="--video: frames to send (default 30)")
    p.add_argument("--step", type=_positive(int, "--step"), default=1,
                   help="--video: take every step-th frame (default 1)")
    p.add_argument("--gop", type=_positive(int, "--gop"), default=10,
                   help="--video: a key frame at least every this many frames (default 10)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--budget-bpp", type=_positive(float, "--budget-bpp"), default=DEFAULT_BUDGET_BPP,
                   help=f"packet budget in bits per pixel (default {DEFAULT_BUDGET_BPP})")
    p.add_argument("--link", default="loopback", help="loopback (default), serial, or mqtt://HOST:PORT")
    p.add_argument("--channel", choices=CHANNELS, default="none", help="channel model for fragment losses")
    p.add_argument("--snr", type=float, default=10.0, help="channel SNR (Es/N0) in dB (default 10)")
    p.add_argument("--mtu", type=_positive(int, "--mtu"), default=DEFAULT_MTU,
                   help=f"largest fragment in bytes (default {DEFAULT_MTU})")
    p.add_argument("--limit", type=_positive(int, "--limit"), help="use at most N images")
    p.add_argument("--tokenizer", type=int, choices=(1, 3), default=DEFAULT_TOKENIZER,
                   help=f"3: two layers, a coarse layer everywhere + fine tokens where they matter (wire v2); "
                        f"1: fine tokens only (wire v1) (default {DEFAULT_TOKENIZER})")
    p.add_argument("--random-init", action="store_true", help="untrained models (tests; pictures are noise)")
    p.add_argument("--seed", type=int, default=0, help="channel seed (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device for the cloud")
    return p


@dataclass
class Outputs:
    root: Path
    packets: Path = field(init=False)
    keys: Path = field(init=False)
    recon: Path = field(init=False)
    sides: Path = field(init=False)
    cloud: Path = field(init=False)

    def __post_init__(self) -> None:
        self.packets, self.keys = self.root / "packets", self.root / "keys"
        self.recon, self.sides, self.cloud = self.root / "reconstructions", self.root / "side_by_side", self.root / "cloud"

    def prepare(self) -> None:
        """Create OUT; clear what a previous run of the demo left in its own subfolders."""
        shutil.rmtree(self.cloud, ignore_errors=True)
        for folder, pattern in ((self.packets, "*.bin"), (self.recon, "*.png"), (self.sides, "*.png")):
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(pattern):
                stale.unlink()
        self.keys.mkdir(parents=True, exist_ok=True)

    def write_key(self, device_id: int) -> tuple[Path, bytes]:
        key = os.urandom(16)
        path = self.keys / f"{device_id}.key"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return path, key


def load_images(args: argparse.Namespace) -> list[DemoImage]:
    if args.video is not None:
        if args.images is not None or args.tokenizer != 3:
            raise UsageError("--video takes no --images and needs --tokenizer 3 (delta frames are wire v2)")
        from tokencast.video import video_frames

        return video_frames(args.video, args.frames, args.step)
    if args.images is not None:
        return folder_images(args.images, args.limit)
    return sample_images(args.limit)


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict], failed: list[dict] | None = None) -> dict[str, Any]:
    """Totals and means. Quality means are over the frames the cloud received (a lost frame has no
    picture to score); ``lost`` names the others so that no mean hides them."""
    keys = ("width", "height", "bytes", "bpp", "kept_ratio", "lost_ratio", "psnr", "ms_ssim", "fragments_sent",
            "fragments_lost", "encode_ms", "edge_ms", "restore_ms")
    return {"images": len(rows), "received": sum(r["received"] for r in rows),
            "lost": [r["name"] for r in rows if not r["received"]],
            "key_frames": sum(r.get("frame_type") == "key" for r in rows),
            "delta_frames": sum(r.get("frame_type") == "delta" for r in rows),
            "degraded": [r["name"] for r in rows if r.get("degraded")],
            "failed": [f["name"] for f in failed or []],
            "quality_over": "received frames",
            "total_bytes": sum(r["bytes"] for r in rows),
            "fragments_sent": sum(r["fragments_sent"] for r in rows),
            "fragments_lost": sum(r["fragments_lost"] for r in rows),
            "mean": {k: _mean(rows, k) for k in keys}}


def _image_errors() -> tuple[type[BaseException], ...]:
    """What fails one picture and not the run: skipped, logged, recorded under ``failed``."""
    from edge.sampler import BudgetTooSmall

    return (ImageInputError, BudgetTooSmall)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    images = load_images(args)  # before any model loads: a bad folder fails in a second
    out = Outputs(args.out)
    out.prepare()
    key_file, key = out.write_key(DEVICE_ID)
    rows: list[dict] = []
    failed: list[dict] = []
    report = {"device_id": DEVICE_ID, "key_file": str(key_file), "link": args.link, "channel": args.channel,
              "snr_db": None if args.channel == "none" else args.snr, "mtu": args.mtu,
              "budget_bpp": args.budget_bpp, "random_init": args.random_init,
              "video": None if args.video is None else str(args.video), "images": rows, "failed": failed}
    try:
        with open_link(args.link, mtu=args.mtu, device_id=DEVICE_ID) as link, Session(args, out, key) as session:
            log.info("%d images, budget %.3f bpp, link %s, channel %s%s, mtu %d", len(images), args.budget_bpp,
                     link.name, args.channel, "" if args.channel == "none" else f" at {args.snr:g} dB", args.mtu)
            per_image = _image_errors()
            # log lines (a skipped image) print above the bar, not glued to it
            with tqdm(images, desc="demo", unit="image") as bar, logging_redirect_tqdm():
                for i, im in enumerate(bar):
                    try:
                        rows.append(session.send(i + 1, im, link))
                    except per_image as exc:  # one picture fails; the others still run
                        log.error("%s: skipped: %s", im.name, exc)
                        failed.append({"name": im.name, "path": None if im.path is None else str(im.path),
                                       "error": type(exc).__name__, "message": str(exc)})
    finally:  # whatever was done is written, also when a link or a model fails half-way
        report["summary"] = summarize(rows, failed)
        (out.root / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    summary = report["summary"]
    m = summary["mean"]
    print(f"tokencast demo: {len(rows)} images -> {out.root}/ (report.json, reconstructions/, side_by_side/, packets/)")
    if rows:
        print(f"  mean {m['bytes']:.0f} B, {m['bpp']:.4f} bpp, kept {100 * m['kept_ratio']:.1f}%, "
              f"PSNR {_fmt(m['psnr'], '.2f')} dB, MS-SSIM {_fmt(m['ms_ssim'], '.4f')} over {summary['received']} "
              f"received; fragments lost {summary['fragments_lost']}/{summary['fragments_sent']}")
    if args.video is not None:
        print(f"  {summary['key_frames']} key and {summary['delta_frames']} delta frames; "
              f"{len(summary['degraded'])} degraded (restored without their reference)")
    if summary["lost"]:
        print(f"  {len(summary['lost'])} of {len(rows)} frames lost (no fragment reached the cloud; not in the "
              f"means): {', '.join(summary['lost'])}")
    if failed:
        print(f"  {len(failed)} of {len(images)} images skipped (see report.json \"failed\"): "
              f"{', '.join(f['name'] for f in failed)}")
    if rows:
        print(f"  inspect a packet: tokencast packet inspect {out.packets / rows[0]['name']}.bin --key-file {key_file}")
        return 0
    print(f"tokencast demo: nothing sent: {len(failed)} of {len(images)} images skipped (reasons above and in "
          f"{out.root / 'report.json'})", file=sys.stderr)
    return 2


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


class Session:
    """The live parts of one demo run: edge pipeline and packer, channel, cloud worker and store."""

    def __init__(self, args: argparse.Namespace, out: Outputs, key: bytes) -> None:
        import torch

        from cloud.config import CloudConfig
        from cloud.store import make_store
        from cloud.worker import Worker
        from edge.packer import LinkPacker
        from edge.pipeline import EdgePipeline, PacketConfig, PipelineConfig
        from edge.recoverability import RecoverabilityConfig
        from edge.sampler import BudgetConfig
        from link.channel import ChannelConfig, make_channel
        from link.security import KeyStore, Sealer
        from models.codec import TokenCodec
        from models.codec2 import TokenCodec2
        from models.registry import files_for
        from tokencast.encoder_export import default_cache_dir, ensure_encoder

        self.args, self.out = args, out
        tid = args.tokenizer
        files = files_for(tid)
        torch.manual_seed(0)  # random-init weights are the same on every run
        codec_cls = TokenCodec2 if tid == 3 else TokenCodec
        codec: Any = codec_cls.load(tid, device=args.device, random_init=args.random_init)
        fast = files.path("fast_encoder_onnx") if files.fast_encoder_onnx else None
        if fast is not None and fast.is_file() and not args.random_init:
            encoder = fast  # the camera's default: the light distilled encoder
        else:
            encoder = ensure_encoder(codec.tokenizer, files.path("encoder_onnx"), default_cache_dir(),
                                     use_shipped=not args.random_init)
        scorer = None if args.random_init else files.path("scorer_onnx")
        self.pipeline = EdgePipeline.from_config(PipelineConfig(
            encoder=encoder, tokenizer_id=tid, budget=BudgetConfig("bpp", args.budget_bpp),
            packet=PacketConfig(mtu=args.mtu, tag_len=TAG_LEN), recoverability=RecoverabilityConfig(scorer=scorer),
        ))  # fmt: skip
        try:
            cfg = CloudConfig(source="none", worker_id="demo")
            cfg.security.keys_dir, cfg.security.tag_len = out.keys, TAG_LEN
            cfg.store.path, cfg.store.image_dir = out.cloud / "tokencast.db", out.cloud / "frames"
            cfg.metrics.enabled = cfg.dashboard.enabled = False
            self.store = make_store(cfg.store)
            cfg.model.tokenizer_ids = [tid]
            self.worker = Worker(cfg, self.store, {tid: codec}, keys=KeyStore({DEVICE_ID: key}))
        except BaseException:
            self.pipeline.close()
            raise
        self.packer = LinkPacker(DEVICE_ID, args.mtu, Sealer(key, DEVICE_ID, tag_len=TAG_LEN))
        self.selector: Any = self.pipeline
        if getattr(args, "video", None) is not None:  # one camera's stream: key and delta frames
            from edge.reference import TemporalConfig
            from edge.temporal import TemporalSelector

            self.selector = TemporalSelector(self.pipeline, TemporalConfig(enabled=True, key_interval=args.gop))
        self.channel = make_channel(ChannelConfig(type=args.channel, snr_db=args.snr, seed=args.seed))

    def send(self, counter: int, image: DemoImage, link: Any) -> dict[str, Any]:
        """One picture through edge, channel, link and cloud; its report row."""
        from link.framing import join_frames

        rgb, name = image.rgb, image.name
        height, width = rgb.shape[:2]
        selection = self.selector.select(rgb)
        fragments = list(self.packer(selection, counter, int(time.time() * 1000)).fragments)
        if hasattr(self.selector, "queued"):
            self.selector.queued(selection, counter)
        (self.out.packets / f"{name}.bin").write_bytes(join_frames(fragments))
        lost = self.channel.lost(fragments)
        arrived = link.transfer([f for f, gone in zip(fragments, lost, strict=True) if not gone])
        for payload, ack in arrived:
            self.worker.submit(payload, ack)
        stored = {r.counter: r for r in self.worker.drain()}
        record = stored.get(counter)
        lost_grid = lost_positions(fragments, lost, selection.grid_h, selection.grid_w)
        recon = self._reconstruction(counter, name, record is not None)
        if recon is not None:
            # When the fragment carrying the image size is lost the cloud decodes the whole grid
            # (a multiple of 8 px); the sender knows the true size, so compare on that.
            recon = recon[:height, :width]
        row: dict[str, Any] = {
            "name": name, "width": width, "height": height, "bytes": sum(map(len, fragments)),
            "bpp": sum(map(len, fragments)) * 8 / (width * height),
            "budget_bytes": int(selection.limit), "kept_ratio": selection.kept_fraction,
            "lost_ratio": float(lost_grid.mean()), "psnr": None, "ms_ssim": None, "ms_ssim_method": None,
            "fragments_sent": len(fragments), "fragments_lost": int(lost.sum()),
            "fragments_delivered": len(arrived), "received": record is not None,
            "encode_ms": selection.timings.get("encode", 0.0), "edge_ms": sum(selection.timings.values()),
            "restore_ms": None if record is None else record.restore_ms,
            "packet": str(self.out.packets / f"{name}.bin"),
            "frame_type": "delta" if getattr(selection, "frame_type", 0) else "key",
            "ref_counter": getattr(selection, "ref_counter", None),
            "degraded": bool(record.degraded) if record is not None else None,
        }
        if recon is not None:
            from tokencast.quality import ms_ssim, psnr

            row["psnr"] = psnr(rgb, recon)
            row["ms_ssim"], row["ms_ssim_method"] = ms_ssim(rgb, recon)
            if math.isfinite(row["psnr"]):
                self.store.set_psnr(DEVICE_ID, counter, row["psnr"])
            else:
                row["psnr"] = None  # identical pictures: JSON has no infinity
            row["reconstruction"] = str(self.out.recon / f"{name}.png")
        else:
            log.warning("%s: every fragment was lost; the cloud never saw this frame", name)
        row["side_by_side"] = str(self.out.sides / f"{name}.png")
        kept_received = selection.kept & ~lost_grid
        from tokencast.figures import side_by_side

        side_by_side(rgb, kept_received, lost_grid, recon).save(row["side_by_side"])
        return row

    def _reconstruction(self, counter: int, name: str, stored: bool) -> np.ndarray | None:
        from PIL import Image

        paths = self.store.frame_paths(DEVICE_ID, counter) if stored else None
        if paths is None:
            return None
        shutil.copyfile(paths.image, self.out.recon / f"{name}.png")
        with Image.open(paths.image) as im:
            return np.asarray(im.convert("RGB"))

    def close(self) -> None:
        try:
            self.pipeline.close()
        finally:
            self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lost_positions(fragments: list[bytes], lost: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """(grid_h, grid_w) bool: fine positions carried by fragments the channel dropped (a repeated
    coarse fragment, or a coarse one, costs no fine position)."""
    from link.header import parse_header
    from link.header2 import LAYER_FINE, parse_header2

    flat = np.zeros(grid_h * grid_w, dtype=bool)
    for frag, gone in zip(fragments, lost, strict=True):
        if gone:
            if frag[:1] == b"\x02":
                h2 = parse_header2(frag)
                if h2.layer == LAYER_FINE:
                    flat[h2.slice_start : h2.slice_end] = True
                continue
            h = parse_header(frag)
            flat[h.slice_start : h.slice_start + h.slice_len] = True
    return flat.reshape(grid_h, grid_w)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can cause or fix (bad input, missing weights, no broker): one line, exit 2."""
    from edge.runtime.registry import BackendError
    from link.config import ConfigError
    from link.errors import LinkError
    from models.registry import ModelNotFound

    return (UsageError, ImageInputError, LinkSpecError, ModelNotFound, LinkError, BackendError, ConfigError, OSError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"tokencast demo: {exc} (see tokencast demo --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tokencast").setLevel(logging.INFO)
    try:
        expected = _expected_errors()
    except ImportError as exc:
        print(f"tokencast demo: {exc}; install tokencast[cloud]", file=sys.stderr)
        return 2
    try:
        return run(args)
    except expected as exc:
        hint = "; pass --random-init to run without trained weights" if type(exc).__name__ == "ModelNotFound" else ""
        print(f"tokencast demo: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
