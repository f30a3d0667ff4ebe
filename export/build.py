"""One model through the ladder: FP32 ONNX -> FP16 / INT8 -> validation -> (TensorRT) -> entry.

``build_model`` returns the model's manifest record. Each precision is reused untouched when its
cache key (source weights sha256 + options) and file hash match the previous manifest, so a
re-run with the same inputs does no export, no quantization and no measurement.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

from . import calib, detector, fp16, int8, manifest, segmenter, tensorrt_build, validate
from .errors import ExportError
from .graph import opset, shapes
from .onnx_export import GRAPHS, export_onnx
from .sources import CODE_PICKERS, KIND, Source

log = logging.getLogger(__name__)

EDGE_ONLY_INT8 = "int8 is built for edge models; GPU workers run the fp16 engine"


@dataclass
class Options:
    out: Path
    precisions: Sequence[str]
    input_size: tuple[int, int]
    opset: int = 17
    dynamic: bool = True
    latency_runs: int = 5
    calib_dir: Path | None = None
    tensorrt: str | None = None  # TensorRT version when engines are wanted and it imports
    int8_target: str = "cpu"  # Q/DQ placement: "cpu" (ONNX Runtime) or "tensorrt" (see int8.py)
    say: Callable[[str], None] = field(default=print)


@dataclass
class Subject:
    """What is being exported: a torch source we trained, the user's segmenter ONNX, or the shipped detector."""

    name: str
    sha256: str
    source: Source | None = None
    seg: segmenter.SegmenterGraph | None = None
    det: detector.DetectorGraph | None = None
    size: tuple[int, int] = (0, 0)
    path: str | None = None


def feeds_for(subject: Subject, images: Sequence[calib.CalibImage]) -> list[validate.Feed]:
    if subject.seg is not None:
        return [{subject.seg.input_name: calib.to_batch(im)} for im in images]
    if subject.det is not None:
        return [{subject.det.input_name: detector.to_feed(im.pixels)} for im in images]
    src = subject.source
    if src is None:
        raise ValueError(f"{subject.name}: neither a torch source nor a segmenter graph")
    if src.name in (*CODE_PICKERS, "scorer"):
        return [{"image": calib.to_batch(im)} for im in images]
    if src.name == "decoder":
        toks = validate.torch_tokens(src, [calib.to_batch(im) for im in images])
        return [{"indices": t} for t in toks]
    return validate.maskgit_feeds(src)


def _export(subject: Subject, precision: str, path: Path, opts: Options,
            feeds: Sequence[validate.Feed]) -> list[str]:
    """Write ``path``; returns the node names kept in float (block/exclusion list)."""
    fp32_path = opts.out / f"{subject.name}.fp32.onnx"
    if precision == "fp32":
        if subject.seg is not None:
            onnx.save(subject.seg.model, str(path))
        elif subject.det is not None:
            onnx.save(subject.det.model, str(path))
        elif subject.source is not None:
            export_onnx(subject.source, path, subject.size, opset=opts.opset, dynamic=opts.dynamic)
        return []
    code_picking = subject.name in CODE_PICKERS
    outputs = list(GRAPHS[subject.name].outputs) if code_picking else []
    if precision == "fp16":
        model, kept = fp16.to_fp16(onnx.load(str(fp32_path)), float32_tails=code_picking)
        onnx.save(model, str(path))
        return kept
    tails = outputs if code_picking else ["output0"] if subject.seg is not None else []
    if subject.det is not None:
        tails = [o.name for o in subject.det.model.graph.output]
    target = None
    if code_picking:  # every integer output (fine ids, coarse levels) held to the agreement minimum
        target = int8.CodeTarget(outputs[0], validate.THRESHOLDS[(subject.name, "int8")][1], tuple(outputs[1:]))
    return int8.to_int8(fp32_path, path, feeds, exclude_tails_of=tails, code_target=target, target=opts.int8_target)


def _accuracy(subject: Subject, path: Path, opts: Options, feeds: Sequence[validate.Feed]) -> dict[str, float]:
    run = validate.ort_runner(path)
    if subject.seg is not None:
        return segmenter.mask_iou(validate.ort_runner(opts.out / f"{subject.name}.fp32.onnx"), run, feeds)
    if subject.det is not None:
        return detector.box_agreement(validate.ort_runner(opts.out / f"{subject.name}.fp32.onnx"), run, feeds)
    if subject.source is None:
        raise ValueError(f"{subject.name}: no reference to validate against")
    return validate.accuracy(subject.source, run, feeds)


def _entry(subject: Subject, precision: str, key: str, opts: Options,
           feeds: Sequence[validate.Feed]) -> dict[str, Any]:
    path = opts.out / f"{subject.name}.{precision}.onnx"
    float_nodes = _export(subject, precision, path, opts, feeds)
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    acc = _accuracy(subject, path, opts, feeds)
    v = validate.verdict(subject.name, precision, acc)
    return {
        "file": path.name, "sha256": manifest.sha256_file(path), "size_bytes": path.stat().st_size,
        "opset": opset(model), "inputs": shapes(i for i in model.graph.input if i.name not in inits),
        "outputs": shapes(model.graph.output), "accuracy": acc, "metric": v.metric, "threshold": v.threshold,
        "status": v.status, "latency_ms_median": validate.median_latency_ms(validate.ort_runner(path), feeds[0],
                                                                            opts.latency_runs),
        "latency_input": {k: list(a.shape) for k, a in feeds[0].items()},
        "float_nodes": len(float_nodes), "cache_key": key,
        **({"int8_target": opts.int8_target} if precision == "int8" else {}),
    }


def _tensorrt(subject: Subject, precision: str, entry: dict[str, Any], opts: Options, previous: dict | None,
              float32_layers: Sequence[str]) -> None:
    engine = opts.out / f"{subject.name}.{precision}.engine"
    old = (previous or {}).get("tensorrt") or {}
    if (old.get("version") == opts.tensorrt and old.get("onnx_sha256") == entry["sha256"] and engine.is_file()
            and manifest.sha256_file(engine) == old.get("sha256")):
        entry["tensorrt"] = old
        return
    fixed = None
    graph = subject.seg or subject.det
    if graph is not None and all(graph.input_hw):
        fixed = (1, 3, *subject.size)
    profs = tensorrt_build.profiles(subject.name, subject.size, next(iter(entry["inputs"])), fixed)
    # fp16 engines come from the fp32 graph with FP16 enabled and the block list pinned to float32
    onnx_file = opts.out / f"{subject.name}.{'fp32' if precision == 'fp16' else precision}.onnx"
    tensorrt_build.build_engine(onnx_file, engine, precision, profs, float32_layers=float32_layers,
                                timing_cache=opts.out / tensorrt_build.TIMING_CACHE)
    entry["tensorrt"] = {"version": opts.tensorrt, "file": engine.name, "sha256": manifest.sha256_file(engine),
                         "size_bytes": engine.stat().st_size, "onnx_sha256": entry["sha256"],
                         "profiles": [p.__dict__ for p in profs]}


def build_model(subject: Subject, opts: Options, images: Sequence[calib.CalibImage],
                previous: dict[str, Any] | None) -> dict[str, Any]:
    """Build every requested precision of one model; returns its manifest record."""
    kind = KIND[subject.name]
    old_engines = (previous or {}).get("engines", {})
    engines: dict[str, dict[str, Any]] = {}
    feeds: list[validate.Feed] | None = None
    options = {"model": subject.name, "opset": opts.opset, "input_size": list(subject.size),
               "dynamic": opts.dynamic, "calibration": [im.sha256 for im in images],
               "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "ort": onnxruntime.__version__}}
    # fp32 first: it is the reference file and the input of both reduced precisions
    for precision in ["fp32", *[p for p in opts.precisions if p != "fp32"]]:
        if precision == "int8" and kind == "cloud":
            engines[precision] = {"status": "skipped", "reason": EDGE_ONLY_INT8}
            continue
        extra = {"int8_target": opts.int8_target} if precision == "int8" else {}
        key = manifest.cache_key(subject.sha256, precision=precision, **options, **extra)
        if manifest.reusable(old_engines.get(precision), key, opts.out):
            engines[precision] = old_engines[precision]
            opts.say(f"{subject.name} {precision}: cached ({engines[precision]['file']})")
        elif precision != "fp32" and engines["fp32"].get("status") == "failed":
            engines[precision] = {"status": "failed", "reason": "needs the fp32 file, which failed"}
            continue
        else:
            opts.say(f"{subject.name} {precision}: building")
            try:
                if feeds is None:
                    feeds = feeds_for(subject, images)
                engines[precision] = _entry(subject, precision, key, opts, feeds)
            except ExportError:
                raise  # bad input: the CLI's one line and exit 2
            except Exception as exc:  # noqa: BLE001 - recorded, reported, and the other models still build
                engines[precision] = {"status": "failed", "reason": failure_reason(exc)}
                log.error("%s %s: failed: %s", subject.name, precision, engines[precision]["reason"])
                continue
        if opts.tensorrt and precision in opts.precisions:
            blocked = fp16.blocked_nodes(onnx.load(str(opts.out / f"{subject.name}.fp32.onnx")),
                                         subject.name in CODE_PICKERS) if precision == "fp16" else []
            _tensorrt(subject, precision, engines[precision], opts, old_engines.get(precision), blocked)
    return {"kind": kind, "source": {"path": subject.path, "sha256": subject.sha256,
                                     "random_init": subject.source is not None and subject.source.random_init},
            "recommended": manifest.recommend(kind, engines), "engines": engines}


def failure_reason(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception, short: exporter errors carry whole graphs in their text."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:limit]}{'...' if len(first) > limit else ''}"


def install(out: Path, name: str, target: Path) -> Path:
    """Copy ``<name>.fp32.onnx`` to where the edge loads it by default."""
    src = out / f"{name}.fp32.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(target)
    return target
