"""FP32 -> INT8 QDQ ONNX with ONNX Runtime static quantization, in the form TensorRT consumes.

QDQ format (TensorRT's explicit quantization reads QuantizeLinear/DequantizeLinear pairs),
symmetric activations and weights (TensorRT requires zero points of 0), per-channel weights.
``quant_pre_process`` runs first (shape inference + basic fusions), and the exclusion list is
computed on its output, because that is the graph whose node names ``quantize_static`` sees.

Why the rest is shaped so (measured on the trained f8/k1024 tokenizer, 4 photos at 480x640):

* Q/DQ only on the inputs and weights of Convs, none on their outputs nor on SiLU/Add: TensorRT's
  own placement advice (it fuses bias, SiLU and the residual Add into the convolution). Every
  extra Q/DQ is one more rounding: all ops quantized 78 %, Conv in+out 83 %, Conv inputs only
  (with the calibration below) 92 % token agreement.
* Percentile calibration (99.999th): a handful of activation outliers (2-3x the 99.9th
  percentile) otherwise stretch each scale; Conv in+out 83 % -> 88 %. Entropy gave MinMax's
  result. Histograms are deterministic: a rebuild gives the same bytes.
* Excluded: everything after the last Conv on the way to the outputs (the encoder's
  normalise/similarity/ArgMax, a YOLO-seg head's box/score decoding), and for code-picking graphs
  that last Conv too: the encoder's 1x1 projection to the 8-d code has almost no FLOPs, and
  since its output is l2-normalised any error in it is directly an error in the code direction.
* Sensitivity fallback for code-picking graphs. The trained codebook is dense: the median gap
  between the best and second-best cosine is 0.008 and 10 % of cells are within 0.001, so one
  quantized conv alone costs 1-6 % of the tokens. Those losses add as the root of the sum of
  squares (the direction errors are independent noise), so convs are quantized cheapest-first
  while that predicted loss stays inside the budget, then the result is verified, dropping the
  most costly conv until it holds. The rest stay float, and the count goes in the manifest.

Two placements, one per runtime (``target``). The one above is TensorRT's. On ONNX Runtime's CPU
provider it is slower than FP32 (encoder 355 vs 306 ms, YOLOX 36 vs 18 ms, one thread on an x86
core with VNNI, timed side by side on a shared machine): with no Q after a Conv, ORT cannot fuse DQ -> Conv -> Q into QLinearConv, so it
dequantizes every activation and weight and runs the float Conv anyway, plus the Q/DQ work.
``target="cpu"`` therefore quantizes every op's inputs and outputs (Conv, SiLU's Sigmoid and
Mul, Add, ...; for code-picking graphs the Convs' only, so that the conv-by-conv fallback
governs every rounding) so each Conv becomes one QLinearConv, with uint8 asymmetric activations (ORT's
fast U8S8 kernels; signed-signed activations were 2x slower again) and int8 symmetric
per-channel weights: encoder 124 ms (all ops) / 137 ms (convs only) vs 306 ms FP32 at the same
calibration, before the sensitivity fallback restores agreement (the shipped encoder then keeps
0.972 token agreement at 444 vs 540 ms; benchmarks/results/README.md).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .graph import name_nodes, tail_nodes

log = logging.getLogger(__name__)

QUANT_OPTIONS = {
    "ActivationSymmetric": True,  # zero point 0: TensorRT rejects asymmetric activation scales
    "WeightSymmetric": True,
    "CalibPercentile": 99.999,
    "OpTypesToExcludeOutputQuantization": ["Conv"],
}
QUANTIZED_OPS = ("Conv",)
CPU_OPTIONS = {"WeightSymmetric": True, "CalibPercentile": 99.999}
TARGETS = ("tensorrt", "cpu")

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class CodeTarget:
    """Keep enough convs float that integer ``output`` (and each of ``also``) matches the FP32
    graph on ``minimum`` of its cells; the worst of them decides."""

    output: str
    minimum: float
    also: tuple[str, ...] = ()

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output, *self.also)


class ListReader:
    """A CalibrationDataReader over a fixed list of feeds (plain class: ORT duck-types it)."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def get_next(self) -> Feed | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def excluded_nodes(model: onnx.ModelProto, exclude_outputs: Sequence[str], *, last_conv: bool = False) -> list[str]:
    """The post-conv tail of ``exclude_outputs``; with ``last_conv`` the conv(s) it starts from too."""
    return tail_nodes(model, exclude_outputs, include_stop=last_conv) if exclude_outputs else []


def quantizable(model: onnx.ModelProto, excluded: Sequence[str]) -> list[str]:
    skip = set(excluded)
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name not in skip]


def choose_quantized(costs: dict[str, float], budget: float) -> list[str]:
    """Cheapest-first convs whose root-sum-square disagreement stays within ``budget``."""
    chosen: list[str] = []
    total = 0.0
    for name in sorted(costs, key=lambda n: (costs[n], n)):
        if math.sqrt(total + costs[name] ** 2) > budget:
            break
        chosen.append(name)
        total += costs[name] ** 2
    return chosen


def agreement(path: Path, feeds: Sequence[Feed], output: str | Sequence[str], reference: Sequence) -> float:
    """Fraction of cells of integer ``output`` equal to ``reference``, over all feeds; for several
    outputs (``reference`` then holds a tuple per feed), the lowest of their agreements."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    if isinstance(output, str):
        return float(np.mean([np.mean(session.run([output], f)[0] == r) for f, r in zip(feeds, reference, strict=True)]))
    got = [session.run(list(output), f) for f in feeds]
    return min(float(np.mean([np.mean(g[i] == r[i]) for g, r in zip(got, reference, strict=True)]))
               for i in range(len(output)))


class _Quantizer:
    """``quantize_static`` on one pre-processed graph; calibration runs once and is cached."""

    def __init__(self, pre: Path, feeds: Sequence[Feed], cache: Path, target: str = "tensorrt",
                 convs_only: bool = False) -> None:
        if target not in TARGETS:
            raise ValueError(f"int8 target {target!r}; valid: {', '.join(TARGETS)}")
        self.pre, self.feeds, self.cache, self.target = pre, feeds, cache, target
        self.convs_only = convs_only

    def __call__(self, out_path: Path, excluded: Sequence[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        cpu = self.target == "cpu"
        quantize_static(
            str(self.pre), str(out_path), ListReader(self.feeds),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8 if cpu else QuantType.QInt8,
            weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.Percentile,
            nodes_to_exclude=list(excluded),
            op_types_to_quantize=None if cpu and not self.convs_only else list(QUANTIZED_OPS),
            extra_options=dict(CPU_OPTIONS if cpu else QUANT_OPTIONS), calibration_cache_path=str(self.cache),
        )


def sensitive_convs(quantize: _Quantizer, model: onnx.ModelProto, excluded: list[str], target: CodeTarget,
                    reference: Sequence[np.ndarray], tmp: Path) -> list[str]:
    """Convs to keep float so that ``target`` holds (see the module docstring)."""
    convs = quantizable(model, excluded)
    trial = tmp / "trial.onnx"

    def score(quantized: Sequence[str]) -> float:
        quantize(trial, excluded + [c for c in convs if c not in quantized])
        return agreement(trial, quantize.feeds, target.outputs if target.also else target.output, reference)

    costs = {c: 1.0 - score([c]) for c in convs}
    chosen = choose_quantized(costs, 1.0 - target.minimum)
    while chosen and (got := score(chosen)) < target.minimum:
        log.info("int8: %d convs quantized give %.4f < %.4f; dropping %s", len(chosen), got, target.minimum,
                 chosen[-1])
        chosen.pop()
    kept = [c for c in convs if c not in chosen]
    if kept:
        log.warning("int8: %d of %d convs kept float to hold %s agreement >= %.3f: %s", len(kept), len(convs),
                    "/".join(target.outputs), target.minimum, ", ".join(kept))
    return kept


def to_int8(fp32_path: Path, out_path: Path, feeds: Sequence[Feed], *, exclude_tails_of: Sequence[str] = (),
            code_target: CodeTarget | None = None, target: str = "tensorrt") -> list[str]:
    """Quantize ``fp32_path`` into ``out_path`` for ``target`` ("tensorrt" or "cpu", see the module
    docstring); returns the node names left in float.

    ``code_target`` marks a code-picking graph: its last conv stays float and so does any conv
    the sensitivity fallback finds it cannot afford.
    """
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="tc-int8-") as tmp_dir:
        tmp = Path(tmp_dir)
        pre, named = tmp / "pre.onnx", tmp / "named.onnx"
        onnx.save(name_nodes(onnx.load(str(fp32_path))), str(named))
        quant_pre_process(str(named), str(pre), skip_symbolic_shape=False)
        model = name_nodes(onnx.load(str(pre)))
        onnx.save(model, str(pre))
        excluded = excluded_nodes(model, exclude_tails_of, last_conv=code_target is not None)
        # A code-picking graph's fallback keeps convs float one by one; a quantized SiLU or Add beside
        # a float conv would still round, so there only the convs (inputs and outputs) are quantized.
        quantize = _Quantizer(pre, feeds, tmp / "ranges.json", target, convs_only=code_target is not None)
        if code_target is not None:
            session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
            if code_target.also:
                reference = [session.run(list(code_target.outputs), f) for f in feeds]
            else:
                reference = [session.run([code_target.output], f)[0] for f in feeds]
            excluded += sensitive_convs(quantize, model, excluded, code_target, reference, tmp)
        quantize(out_path, excluded)
    return excluded
