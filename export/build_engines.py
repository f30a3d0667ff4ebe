"""Build the edge and cloud inference files: ONNX FP32/FP16/INT8, optional TensorRT, a manifest.

    python export/build_engines.py --out engines/ [--models encoder encoder2 encoder2fast scorer detector segmenter decoder
        maskgit] [--precision fp32 fp16 int8] [--calib-images DIR] [--segmenter-onnx FILE] [--detector-onnx FILE]
        [--tensorrt] [--int8-target cpu|tensorrt]
        [--opset N] [--input-size HxW] [--random-init] [--install-defaults]

Exit status: 0 built (files below their accuracy threshold are flagged in the manifest, not
failed), 2 bad input (corrupt or foreign ONNX, missing weights that were asked for, bad size),
1 anything else. The work is in the sibling modules; this file is argument handling and order.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Only light imports at module level: --help and a missing `export` extra must not need onnx or
# torch (run() imports the builders, main() turns an ImportError into an install hint).
from export.errors import ExportError, InputSizeError  # noqa: E402
from models.checkpoints import CHECKPOINT_DIR  # noqa: E402
from models.registry import ModelNotFound, files_for  # noqa: E402

DEFAULT_OPSET = 17  # export.onnx_export.DEFAULT_OPSET (a test keeps the two equal)
INSTALL_HINT = "install the export extra: pip install -e '.[export]'"

# encoder2: tokenizer v2's (id 3) full edge encoder; encoder2fast: the light one distilled from it
MODELS = ("encoder", "encoder2", "encoder2fast", "scorer", "detector", "segmenter", "decoder", "maskgit")
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_INPUT_SIZE = "480x640"  # VGA, the edge's usual capture size; also the TensorRT opt shape
FACTOR = 8
NO_SEGMENTER = ("segmenter: no --segmenter-onnx given; tokencast ships no segmenter. Export your own "
                "YOLOv8/11-seg with `yolo export model=yolo11n-seg.pt format=onnx` and pass the .onnx")


def parse_size(text: str) -> tuple[int, int]:
    """'480x640' -> (480, 640); both multiples of the tokenizer's factor 8."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputSizeError(f"--input-size {text!r}: expected HxW, e.g. {DEFAULT_INPUT_SIZE}") from None
    if h <= 0 or w <= 0 or h % FACTOR or w % FACTOR:
        raise InputSizeError(f"--input-size {text!r}: both sides must be positive multiples of {FACTOR}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build_engines", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("engines"), help="output directory (default engines/)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=None, help="default: all")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--calib-images", type=Path, default=None,
                   help="directory of calibration photos (default: scikit-image's sample photos)")
    p.add_argument("--segmenter-onnx", type=Path, default=None, help="your YOLOv8/11-seg ONNX export")
    p.add_argument("--detector-onnx", type=Path, default=None,
                   help="a YOLOX head export (default: the shipped YOLOX-Nano, edge/segmenter/models/)")
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines where TensorRT exists")
    p.add_argument("--int8-target", choices=["cpu", "tensorrt"], default=None,
                   help="INT8 Q/DQ placement: ONNX Runtime CPU kernels or TensorRT "
                        "(default: tensorrt with --tensorrt, else cpu; see export/int8.py)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--input-size", default=DEFAULT_INPUT_SIZE,
                   help="HxW for calibration, validation and the TensorRT opt shape (default %(default)s)")
    p.add_argument("--fixed-shape", action="store_true", help="export static shapes at --input-size")
    p.add_argument("--random-init", action="store_true", help="seeded random weights instead of checkpoints")
    p.add_argument("--tokenizer-id", type=int, default=1)
    p.add_argument("--latency-runs", type=int, default=5)
    p.add_argument("--install-defaults", action="store_true",
                   help="copy the FP32 encoder and scorer ONNX to where the edge loads them by default")
    p.add_argument("--install-dir", type=Path, default=CHECKPOINT_DIR, help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> dict:
    """Build everything asked for; returns the manifest (also written to OUT/manifest.json).

    A model whose export fails (a bug or an unsupported op, not bad input) is recorded in the
    manifest as ``failed`` with the reason, and the others are still built."""
    from export import build, calib, detector, manifest, segmenter, tensorrt_build
    from export.sources import load_source

    size = parse_size(args.input_size)
    if args.install_defaults and args.random_init and args.install_dir == CHECKPOINT_DIR:
        raise ExportError("--install-defaults with --random-init would overwrite the shipped defaults "
                          "with random weights; drop one of them")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    trt_version = None
    if args.tensorrt:
        trt_version = tensorrt_build.available()
        if trt_version is None:
            print("TensorRT not available: skipped")
    opts = build.Options(out=out, precisions=args.precision, input_size=size, opset=args.opset,
                         dynamic=not args.fixed_shape, latency_runs=args.latency_runs,
                         calib_dir=args.calib_images, tensorrt=trt_version,
                         int8_target=args.int8_target or ("tensorrt" if args.tensorrt else "cpu"))
    path = out / "manifest.json"
    data = manifest.load(path)
    images = calib.load_images(args.calib_images, size)
    data.update({"input_size": list(size), "opset": args.opset,
                 "calibration": {"source": str(args.calib_images) if args.calib_images else "skimage.data",
                                 "images": [{"name": im.name, "sha256": im.sha256} for im in images]},
                 "tensorrt": {"available": trt_version is not None, "version": trt_version}})
    explicit = args.models is not None
    for name in args.models or MODELS:
        previous = data["models"].get(name)
        if name in ("encoder2", "encoder2fast") and (size[0] % 16 or size[1] % 16):
            if explicit:
                raise InputSizeError(f"--input-size {args.input_size}: {name} needs multiples of 16")
            print(f"{name}: skipped, --input-size {args.input_size} is not a multiple of 16")
            continue
        if name == "detector":  # the same calibration images, letterbox-free at the detector's square input
            det_path = args.detector_onnx or detector.default_path()
            det = detector.check(det_path, args.opset)
            det_size = (det.input_hw[0] or 416, det.input_hw[1] or 416)
            subject = build.Subject(name, manifest.sha256_file(det_path), det=det, size=det_size, path=str(det_path))
            data["models"][name] = build.build_model(subject, opts, calib.load_images(args.calib_images, det_size),
                                                     previous)
            manifest.save(path, data)
            continue
        if name == "segmenter":
            if args.segmenter_onnx is None:
                print(NO_SEGMENTER)
                data["models"].pop(name, None)
                continue
            seg = segmenter.check(args.segmenter_onnx)
            seg_size = (seg.input_hw[0] or size[0], seg.input_hw[1] or size[1])
            subject = build.Subject(name, manifest.sha256_file(args.segmenter_onnx), seg=seg, size=seg_size,
                                    path=str(args.segmenter_onnx))
            seg_images = images if seg_size == size else calib.load_images(args.calib_images, seg_size)
            data["models"][name] = build.build_model(subject, opts, seg_images, previous)
            continue
        try:
            src = load_source(name, random_init=args.random_init, tokenizer_id=args.tokenizer_id)
        except ModelNotFound as exc:
            if explicit:
                raise
            print(f"{name}: skipped, {exc}")
            continue
        subject = build.Subject(name, src.sha256, source=src, size=size, path=src.path)
        data["models"][name] = build.build_model(subject, opts, images, previous)
        manifest.save(path, data)  # keep finished models even if a later one fails
    manifest.save(path, data)
    if args.install_defaults:
        files = files_for(args.tokenizer_id)
        for name, target in (("encoder", files.encoder_onnx), ("scorer", files.scorer_onnx)):
            if name not in data["models"]:
                raise ExportError(f"--install-defaults needs the {name} built; add it to --models")
            print(f"installed {build.install(out, name, args.install_dir / target)}")
        if "encoder2" in (args.models or ()):  # tokenizer v2's edge encoders, when asked for by name
            print(f"installed {build.install(out, 'encoder2', args.install_dir / files_for(3).encoder_onnx)}")
        if "encoder2fast" in (args.models or ()):
            print(f"installed {build.install(out, 'encoder2fast', args.install_dir / files_for(3).fast_encoder_onnx)}")
    return data


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from export import manifest, tensorrt_build
    except ImportError as exc:
        print(f"error: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        data = run(args)
    except (ExportError, ModelNotFound) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except tensorrt_build.TensorRTUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"error: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    print(manifest.table(data))
    failed = manifest.failures(data)
    for line in failed:
        print(f"error: {line} (recorded in {args.out / 'manifest.json'})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
