"""Edge latency, memory, energy per frame and the LoRa link budget, measured on the device itself.

    python benchmarks/latency_power.py --images DIR --out DIR [--backend onnxruntime|tensorrt]
        [--precision fp32 fp16 int8] [--seconds 30] [--bpp 0.074]

Runs the real ``EdgePipeline`` (encoder through the chosen runtime, the detector -- the
``detect`` stage: the default YOLOX-Nano with its mask refinement --, recoverability, sampler)
plus ``pack`` on the images in a loop for ``--seconds`` per precision, and reports p50
and p95 per stage, frames/s, peak RSS, and energy per frame from the first readable power
source: Jetson INA3221 rails (hwmon), Raspberry Pi 5 PMIC (``vcgencmd pmic_read_adc``), Intel
RAPL (``/sys/class/powercap/intel-rapl:0/energy_uj``). Energy per frame is the integrated power
over the run minus the idle power over the same time, divided by the frames; an idle period of
``--idle-seconds`` is measured first. The encoder and scorer of each precision are the files
``export/build_engines.py`` recorded in ``--engines DIR/manifest.json`` (default ``engines/``,
its default output; the TensorRT engine with ``--backend tensorrt``); without a manifest, fp32
runs the shipped encoder. The detector of that precision comes from the same manifest when it
passed its box-agreement threshold there, else the FP32 one (a note says so).
``--frame-size WxH`` resizes every image first (e.g. 768x512, or 1920x1080 to see the cost of
tiling). ``--encoder`` with ``{precision}`` names the files instead;
``--random-init`` writes a tiny random ONNX encoder (tests; its timings mean nothing).
Without ``--images`` the scikit-image sample photos are used where scikit-image is installed. The link table gives bytes and LoRa time on air per frame for SF7-SF12 at
min(MTU, the SF's payload limit) and frames per hour under the duty cycle.
This file must not import torch: it runs on the edge (a test checks).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge.pipeline import DEFAULT_ENCODER, EdgePipeline, PipelineConfig
from edge.recoverability import DEFAULT_SCORER
from edge.runtime import RuntimeConfig
from edge.sampler import BudgetConfig
from edge.segmenter import SegmenterConfig
from link.entropy import default_prior
from link.frame import Frame
from link.lora import RadioProfile
from link.packet import pack, plan
from link.packet2 import clear_plan_cache
from link.security import Sealer

PROG = "latency_power"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
STAGES = ("encode", "detect", "score", "select", "pack")
V1_ENCODER = DEFAULT_ENCODER.with_name("tc-vq-f8-k1024.encoder.onnx")  # tokenizer 1, wire v1

STAGE_NAMES = {"segment": "detect"}  # the pipeline's segment timing is the detector + its masks


# ---- power sources: each returns a reader () -> watts (or joules counter for RAPL), or None ----

def ina3221_reader() -> tuple[str, object] | None:
    """Jetson: sum of V x I over the INA3221 hwmon channels (mV x mA -> W)."""
    for hw in sorted(Path("/sys/class/hwmon").glob("hwmon*")):
        try:
            if "ina3221" not in (hw / "name").read_text():
                continue
        except OSError:
            continue
        chans = [(hw / f"in{i}_input", hw / f"curr{i}_input") for i in range(1, 4)]
        chans = [(v, c) for v, c in chans if v.is_file() and c.is_file()]
        if chans:
            def read(chans: list = chans) -> float:
                return sum(float(v.read_text()) * float(c.read_text()) for v, c in chans) / 1e6
            try:
                read()
                return f"ina3221 hwmon {hw}", read
            except (OSError, ValueError):
                continue
    return None


def parse_pmic(text: str) -> float:
    """Watts from ``vcgencmd pmic_read_adc``: each rail's current x its voltage, summed."""
    amps, volts = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or "=" not in parts[-1]:
            continue
        name, value = parts[0], parts[-1].split("=")[1]
        if value.endswith("A"):
            amps[name.removesuffix("_A")] = float(value[:-1])
        elif value.endswith("V"):
            volts[name.removesuffix("_V")] = float(value[:-1])
    return float(sum(a * volts[k] for k, a in amps.items() if k in volts))


def pmic_reader() -> tuple[str, object] | None:
    def read() -> float:
        out = subprocess.run(["vcgencmd", "pmic_read_adc"], capture_output=True, text=True, timeout=2, check=True)
        return parse_pmic(out.stdout)

    try:
        return ("vcgencmd pmic_read_adc", read) if read() > 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def rapl_reader() -> tuple[str, object] | None:
    try:
        int(RAPL.read_text())
        wrap = int((RAPL.parent / "max_energy_range_uj").read_text())
    except (OSError, ValueError):
        return None
    return f"intel-rapl:0 {RAPL}", (lambda: int(RAPL.read_text()), wrap)


class PowerMeter:
    """Energy over an interval: a RAPL counter difference, or sampled watts integrated (trapezoid)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval = interval_s
        self.source, self._read = "none", None
        for probe in (ina3221_reader, pmic_reader, rapl_reader):
            found = probe()
            if found:
                self.source, self._read = found
                break
        self._stop = threading.Event()
        self._samples: list[tuple[float, float]] = []
        self._thread: threading.Thread | None = None
        self._start_counter = 0

    @property
    def available(self) -> bool:
        return self._read is not None

    def start(self) -> None:
        if isinstance(self._read, tuple):
            self._start_counter = self._read[0]()
            return
        if self._read is None:
            return
        self._samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._samples.append((time.monotonic(), float(self._read())))  # type: ignore[misc,operator]
            except (OSError, ValueError, subprocess.SubprocessError):
                pass

    def stop(self) -> float:
        """Joules since ``start`` (NaN without a source)."""
        if isinstance(self._read, tuple):
            read, wrap = self._read
            return ((read() - self._start_counter) % wrap) / 1e6
        if self._thread is None:
            return float("nan")
        self._stop.set()
        self._thread.join()
        s = np.array(self._samples)
        return float(np.trapezoid(s[:, 1], s[:, 0])) if len(s) > 1 else float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def write_stub_encoder(path: Path, factor: int = 8, codes: int = 1024, seed: int = 0) -> Path:
    """A random ONNX 'encoder' (average-pool 8x8, 1x1 conv, argmax) for tests without weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(seed).normal(size=(codes, 3, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[factor, factor], strides=[factor, factor]),
        helper.make_node("Conv", ["pooled", "w"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["indices"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "stub_encoder", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, None, None])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))} if ms else \
        {"p50_ms": float("nan"), "p95_ms": float("nan")}


def link_budget(frames: list[Frame], mtu: int, tag_len: int, duty_cycle: float) -> list[dict]:
    """Per SF: mean bytes and time on air per frame at min(mtu, SF limit), frames per hour."""
    rows = []
    for sf in range(7, 13):
        radio = RadioProfile.for_sf(sf, duty_cycle=duty_cycle)
        m = min(mtu, radio.mtu)
        sizes, toas, nfrag = [], [], []
        for f in frames:
            p = plan(f, mtu=m, tag_len=tag_len, prior=default_prior(f.tokenizer_id))
            sizes.append(sum(s.size for s in p))
            toas.append(sum(radio.time_on_air_s(s.size) for s in p))
            nfrag.append(len(p))
        toa = float(np.mean(toas)) if toas else float("nan")
        rows.append({"sf": sf, "mtu": m, "bytes_per_frame": float(np.mean(sizes)) if sizes else float("nan"),
                     "fragments_per_frame": float(np.mean(nfrag)) if nfrag else float("nan"),
                     "time_on_air_s": toa, "duty_cycle": duty_cycle,
                     "frames_per_hour": duty_cycle * 3600.0 / toa if toa and math.isfinite(toa) else float("nan")})
    return rows


def measure(pipe: EdgePipeline, images: list[np.ndarray], seconds: float, budget: BudgetConfig | None,
            mtu: int, meter: PowerMeter, min_frames: int = 3) -> tuple[dict, list[Frame]]:
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    totals: list[float] = []
    frames: list[Frame] = []
    sealer = Sealer(bytes(16), 1)
    meter.start()
    t0 = time.monotonic()
    n = 0
    while n < min_frames or time.monotonic() - t0 < seconds:
        im = images[n % len(images)]
        clear_plan_cache()  # the images repeat; a camera's next picture is not one it planned before
        t = time.perf_counter()
        sel = pipe.select(im, budget)
        frame = Frame(1, n, 0, sel.width, sel.height, sel.tokenizer_id, sel.grid_h, sel.grid_w, sel.kept, sel.indices,
                      coarse=sel.coarse, dc=sel.dc)
        tp = time.perf_counter()
        pack(frame, mtu=mtu, sealer=sealer, prior=default_prior(frame.tokenizer_id))
        end = time.perf_counter()
        for k, v in sel.timings.items():
            times.setdefault(STAGE_NAMES.get(k, k), []).append(v)
        times["pack"].append((end - tp) * 1000.0)
        totals.append((end - t) * 1000.0)
        frames.append(frame)
        n += 1
    wall = time.monotonic() - t0
    joules = meter.stop()
    return {"stages": {k: percentiles(v) for k, v in times.items()}, "total_p50_ms": percentiles(totals)["p50_ms"],
            "total_p95_ms": percentiles(totals)["p95_ms"], "frames": n, "wall_s": wall, "fps": n / wall,
            "energy_j": joules}, frames


def _clean(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


class EngineNotBuilt(LookupError):
    """A precision asked for has no file: not in the manifest, or the manifest is missing."""


def engine_files(engines: Path, precision: str, backend: str, encoder_name: str = "encoder2") -> tuple[Path, Path | None]:
    """(encoder, scorer or None) of ``precision`` as build_engines.py recorded them in ``engines``.
    For tokenizer v2 the light ``encoder2fast`` (the edge default) is preferred when it was built.

    fp32 without a manifest is the shipped encoder and scorer, so a camera with no engines built
    still measures something real."""
    manifest = engines / "manifest.json"
    try:
        models = json.loads(manifest.read_text()).get("models", {})
    except (OSError, ValueError):
        if precision == "fp32":
            default = V1_ENCODER if encoder_name == "encoder" else DEFAULT_ENCODER
            return default, DEFAULT_SCORER if DEFAULT_SCORER.is_file() else None
        raise EngineNotBuilt(f"{precision}: no {manifest}; build it with "
                             f"python export/build_engines.py --out {engines}") from None
    if encoder_name == "encoder2" and "encoder2fast" in models:
        encoder_name = "encoder2fast"  # the camera's default encoder, when it was built
    found: dict[str, Path | None] = {}
    for name in (encoder_name, "scorer"):
        entry = models.get(name, {}).get("engines", {}).get(precision, {})
        if backend == "tensorrt":
            entry = entry.get("tensorrt") or {}
        ok = entry.get("file") and entry.get("status", "ok") != "failed" and (engines / entry["file"]).is_file()
        found[name] = engines / entry["file"] if ok else None
    encoder = found[encoder_name]
    if encoder is None:
        raise EngineNotBuilt(f"{precision}: {manifest} has no usable {backend} encoder file for {precision}; "
                             f"rebuild with python export/build_engines.py --out {engines} --precision {precision}"
                             + (" --tensorrt" if backend == "tensorrt" else ""))
    return encoder, found["scorer"]


def detector_file(engines: Path, precision: str, backend: str) -> tuple[Path, str] | None:
    """(file, sha256) of the detector ``precision`` in the manifest if it passed its threshold, else None."""
    try:
        models = json.loads((engines / "manifest.json").read_text()).get("models", {})
    except (OSError, ValueError):
        return None
    entry = models.get("detector", {}).get("engines", {}).get(precision, {})
    if entry.get("status") != "ok":
        return None
    if backend == "tensorrt":
        entry = entry.get("tensorrt") or {}
    path = engines / entry["file"] if entry.get("file") else None
    return (path, entry["sha256"]) if path is not None and path.is_file() and entry.get("sha256") else None


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect of ``size`` (W, H), then resize to it."""
    w, h = size
    ih, iw = image.shape[:2]
    scale = min(ih / h, iw / w)
    ch, cw = int(round(h * scale)), int(round(w * scale))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    crop = Image.fromarray(np.ascontiguousarray(image[top : top + ch, left : left + cw]))
    return np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC))


def load_images(folder: Path | None, limit: int) -> tuple[list[np.ndarray], list[str]]:
    """The images to loop over, and one note per file that could not be read (skipped)."""
    notes: list[str] = []
    if folder is None:
        try:
            from skimage import data
        except ImportError:
            raise EngineNotBuilt("no --images given and scikit-image (the default samples) is not installed") \
                from None
        arrays = [np.asarray(getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
        return [a[..., :3] if a.ndim == 3 else np.stack([a] * 3, -1) for a in arrays][: limit or None], notes
    if not folder.is_dir():
        raise EngineNotBuilt(f"--images {folder} is not a directory")
    out = []
    for p in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)[: limit or None]:
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB")))
        except (OSError, ValueError) as exc:
            notes.append(f"{p}: skipped, cannot read image ({exc})")
    return out, notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=None, help="folder of images (default: scikit-image samples)")
    p.add_argument("--out", type=Path, default=Path("latency_out"), help="output folder (default latency_out)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"])
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "fp16", "int8"])
    p.add_argument("--engines", type=Path, default=Path("engines"),
                   help="build_engines.py output with manifest.json (default engines/)")
    p.add_argument("--encoder", default=None,
                   help="ONNX file instead of the manifest's; '{precision}' is substituted")
    p.add_argument("--segmenter", default=SegmenterConfig.backend, help="segmenter backend (default %(default)s)")
    p.add_argument("--tiling", default=None, choices=["auto", "always", "never"], help="detector tiling")
    p.add_argument("--frame-size", default=None, help="resize every image to WxH first, e.g. 768x512")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--bpp", type=float, default=None, help="budget (default: the pipeline config's bytes)")
    p.add_argument("--mtu", type=int, default=222)
    p.add_argument("--duty-cycle", type=float, default=0.01)
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="2 s per precision, 0.5 s idle")
    p.add_argument("--random-init", action="store_true", help="a random stub encoder (tests; one-layer, tokenizer 1)")
    p.add_argument("--tokenizer", type=int, choices=(1, 3), default=3,
                   help="3: the two-layer encoder (encoder2, wire v2, default); 1: the one-layer encoder (wire v1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seconds, idle = (2.0, 0.5) if args.quick else (args.seconds, args.idle_seconds)
    try:
        images, notes = load_images(args.images, args.limit)
    except EngineNotBuilt as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.frame_size:
        try:
            fw, fh = (int(v) for v in args.frame_size.lower().split("x"))
        except ValueError:
            print(f"{PROG}: --frame-size {args.frame_size!r}: expected WxH, e.g. 768x512", file=sys.stderr)
            return 2
        images = [resize_to(im, (fw, fh)) for im in images]
    for note in notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    if not images:
        print(f"{PROG}: no readable images in {args.images}", file=sys.stderr)
        return 2
    meter = PowerMeter()
    idle_w = float("nan")
    if meter.available:
        meter.start()
        time.sleep(idle)
        idle_w = meter.stop() / idle
    else:
        notes.append("no power source readable (no INA3221 hwmon, vcgencmd pmic_read_adc or readable RAPL "
                     "counter): energy is null.")
    budget = BudgetConfig("bpp", args.bpp) if args.bpp else None
    runs: list[dict] = []
    frames: list[Frame] = []
    for precision in args.precision:
        scorer: Path | None = DEFAULT_SCORER
        tid = 1 if args.random_init else args.tokenizer
        if args.random_init:
            encoder = write_stub_encoder(args.out / "stub_encoder.onnx")
            notes.append("--random-init: a random stub ONNX encoder; latencies are not the tokenizer's.")
        elif args.encoder is not None:
            encoder = Path(args.encoder.replace("{precision}", precision))
            if precision != "fp32" and "{precision}" not in args.encoder:
                notes.append(f"{precision}: skipped, --encoder has no {{precision}} placeholder")
                continue
            if not encoder.is_file():
                notes.append(f"{precision}: skipped, no encoder file {encoder}")
                continue
        else:
            try:
                encoder, scorer = engine_files(args.engines, precision, args.backend,
                                               "encoder2" if tid == 3 else "encoder")
            except EngineNotBuilt as exc:
                notes.append(f"{exc}")
                continue
        config = PipelineConfig(encoder=encoder, encoder_runtime=RuntimeConfig(backend=args.backend), tokenizer_id=tid)
        config.recoverability.scorer = scorer
        if scorer is not None and args.backend == "tensorrt":
            config.recoverability.runtime = RuntimeConfig(backend="tensorrt")
        config.segmenter.backend = args.segmenter
        if args.tiling:
            config.segmenter.tiling = args.tiling
        detector = None
        if args.segmenter == "yolox" and not args.random_init and args.encoder is None:
            detector = detector_file(args.engines, precision, args.backend)
            if detector is not None:
                config.segmenter.model, config.segmenter.model_sha256 = detector
                if args.backend == "tensorrt":
                    config.segmenter.runtime = RuntimeConfig(backend="tensorrt")
            elif precision != "fp32":
                notes.append(f"detector {precision}: none in {args.engines} that passed its threshold; "
                             "the shipped fp32 detector runs")
        config.packet.mtu = args.mtu
        try:
            pipe = EdgePipeline.from_config(config)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot load is reported, not fatal
            notes.append(f"{precision}: pipeline did not load ({type(exc).__name__}: {exc})")
            continue
        with pipe:
            pipe.select(images[0], budget)  # warm-up outside the timing
            run, got = measure(pipe, images, seconds, budget, args.mtu, meter)
        e = run.pop("energy_j")
        run["energy_per_frame_mj"] = (e - idle_w * run["wall_s"]) / run["frames"] * 1000.0 if meter.available else None
        runs.append({"precision": precision, "backend": args.backend, "encoder": str(encoder),
                     "scorer": None if scorer is None else str(scorer),
                     "detector": str(detector[0]) if detector else args.segmenter} | run)
        frames = frames or got
    skipped = [n for n in notes if n.startswith(tuple(f"{p}:" for p in args.precision))]
    if not runs:
        print(f"{PROG}: nothing ran: {'; '.join(skipped or notes)}", file=sys.stderr)
        return 2
    for note in skipped:
        print(f"{PROG}: skipped {note}", file=sys.stderr)
    first = runs[0]
    result = {k: first[k] for k in ("stages", "total_p50_ms", "total_p95_ms", "fps", "energy_per_frame_mj")}
    result |= {"peak_rss_mb": peak_rss_mb(), "power_source": meter.source, "idle_power_w": idle_w,
               "precision": first["precision"], "backend": args.backend, "runs": runs,
               "link_budget": link_budget(frames, args.mtu, 8, args.duty_cycle), "images": len(images),
               "frame_size": [int(images[0].shape[1]), int(images[0].shape[0])] if args.frame_size else None,
               "random_init": args.random_init, "notes": notes, "torch_loaded": "torch" in sys.modules}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(_clean(result), indent=2) + "\n")
    print(f"total p50 {first['total_p50_ms']:.1f} ms, {first['fps']:.2f} frames/s, power: {meter.source}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
