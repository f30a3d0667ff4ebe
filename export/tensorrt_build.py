"""TensorRT 10 engines from the exported ONNX files, plus the pure parts that need no TensorRT.

Pure (tested everywhere): optimisation-profile shapes from ``--input-size``, builder flag
selection per precision, and the equivalent ``trtexec`` command line. ``build_engine`` imports
``tensorrt`` inside, so this module imports on any machine.

Profiles (min / opt / max), documented defaults: images from 64x64 (one 8x8 token tile per
side) through the input size (opt) to 1088x1920 (1080p padded to a multiple of 8), or the input
size when that is larger; token grids are the same divided by 8; MaskGIT windows are 16x16 with
a batch of 1 / 8 / 32. FP16 builds mark the float32 block list (codebook similarity, ArgMax) as
float layers; INT8 builds read the QDQ graph (explicit quantization) with FP16 as fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIN_HW = (64, 64)
MAX_HW = (1088, 1920)
MASKGIT_BATCH = (1, 8, 32)
WORKSPACE_BYTES = 1 << 30
TIMING_CACHE = "timing.cache"

Shape = tuple[int, ...]


class TensorRTUnavailable(RuntimeError):
    """``import tensorrt`` failed on this machine."""


@dataclass(frozen=True)
class Profile:
    name: str
    min: Shape
    opt: Shape
    max: Shape


def profiles(model: str, input_size: tuple[int, int], input_name: str | None = None,
             fixed_shape: Shape | None = None) -> list[Profile]:
    """Optimisation profile per input; ``fixed_shape`` (a static graph) gives min = opt = max."""
    h, w = input_size
    mh, mw = max(MAX_HW[0], h), max(MAX_HW[1], w)
    if fixed_shape is not None:
        return [Profile(input_name or "images", fixed_shape, fixed_shape, fixed_shape)]
    if model in ("encoder", "encoder2", "encoder2fast", "scorer"):
        return [Profile("image", (1, 3, *MIN_HW), (1, 3, h, w), (1, 3, mh, mw))]
    if model == "segmenter":
        return [Profile(input_name or "images", (1, 3, *MIN_HW), (1, 3, h, w), (1, 3, mh, mw))]
    if model == "decoder":
        return [Profile("indices", (1, MIN_HW[0] // 8, MIN_HW[1] // 8), (1, h // 8, w // 8), (1, mh // 8, mw // 8))]
    if model == "maskgit":
        b0, b1, b2 = MASKGIT_BATCH
        return [Profile("ids", (b0, 16, 16), (b1, 16, 16), (b2, 16, 16))]
    raise ValueError(f"unknown model {model!r}; valid: encoder, scorer, segmenter, decoder, maskgit")


def builder_flags(precision: str) -> list[str]:
    """``trt.BuilderFlag`` member names for a precision (INT8 keeps FP16 for unquantized layers)."""
    # PREFER_PRECISION_CONSTRAINTS: honour the float32 layers we mark, unless no kernel exists.
    flags = {"fp32": [], "fp16": ["FP16", "PREFER_PRECISION_CONSTRAINTS"], "int8": ["INT8", "FP16"]}
    if precision not in flags:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(flags)}")
    return list(flags[precision])


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(onnx_file: str, engine_file: str, precision: str, profs: list[Profile],
                    timing_cache: str = f"engines/{TIMING_CACHE}") -> str:
    """The ``trtexec`` line building the same engine (for hw/README.md and for humans)."""
    parts = ["trtexec", f"--onnx={onnx_file}", f"--saveEngine={engine_file}"]
    if precision == "fp16":
        parts.append("--fp16")
    elif precision == "int8":
        parts += ["--int8", "--fp16"]
    if profs and profs[0].min != profs[0].max:
        for key, attr in (("minShapes", "min"), ("optShapes", "opt"), ("maxShapes", "max")):
            parts.append(f"--{key}=" + ",".join(f"{p.name}:{_dims(getattr(p, attr))}" for p in profs))
    parts += [f"--memPoolSize=workspace:{WORKSPACE_BYTES >> 20}M", f"--timingCacheFile={timing_cache}"]
    return " ".join(parts)


def available() -> str | None:
    """TensorRT's version, or None when it cannot be imported."""
    try:
        import tensorrt as trt
    except Exception:  # ImportError, or a broken CUDA install raising OSError at import
        return None
    return str(trt.__version__)


def build_engine(onnx_path: Path, engine_path: Path, precision: str, profs: list[Profile], *,
                 timing_cache: Path, float32_layers: Sequence[str] = (), workspace: int = WORKSPACE_BYTES) -> Path:
    """Parse ``onnx_path``, build with the precision's flags and profiles, write ``engine_path``."""
    try:
        import tensorrt as trt
    except Exception as exc:
        raise TensorRTUnavailable(f"TensorRT not available: {exc}") from exc

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    for flag in builder_flags(precision):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if precision == "fp16" and float32_layers:
        keep = set(float32_layers)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in keep:
                layer.precision = trt.float32
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for p in profs:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {engine_path.name} (see the log above)")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path
