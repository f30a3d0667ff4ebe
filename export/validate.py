"""Accuracy and latency of an exported file against its float32 reference, and the pass/fail rule.

Each model has one headline metric, compared to a threshold per precision; a file that misses it
gets ``status = "below_threshold"`` and is never the recommended engine. References: the float32
torch model for what we train (encoder, scorer, decoder, MaskGIT), the user's own FP32 ONNX for
the segmenter. Latency is ONNX Runtime on this machine's CPU: a relative number between
precisions, not a prediction for a Jetson.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .sources import MASKGIT_WINDOW, Source, codebook_size

# (model, precision) -> (headline metric, minimum). Encoder values are issue 6's; the others are
# our defaults: FP16 should be indistinguishable, INT8 should keep the ranking / masks usable.
THRESHOLDS: dict[tuple[str, str], tuple[str, float]] = {
    ("encoder", "fp32"): ("token_agreement", 0.999),
    ("encoder", "fp16"): ("token_agreement", 0.995),
    ("encoder", "int8"): ("token_agreement", 0.97),
    # tokenizer v2's encoder: the lower of fine-id and coarse-level agreement, same minimums
    ("encoder2", "fp32"): ("token_agreement", 0.999),
    ("encoder2", "fp16"): ("token_agreement", 0.995),
    ("encoder2", "int8"): ("token_agreement", 0.97),
    ("encoder2fast", "fp32"): ("token_agreement", 0.999),
    ("encoder2fast", "fp16"): ("token_agreement", 0.995),
    ("encoder2fast", "int8"): ("token_agreement", 0.97),
    ("scorer", "fp32"): ("spearman", 0.999),
    ("scorer", "fp16"): ("spearman", 0.99),
    ("scorer", "int8"): ("spearman", 0.95),
    ("segmenter", "fp32"): ("mask_iou", 0.999),
    ("segmenter", "fp16"): ("mask_iou", 0.95),
    ("segmenter", "int8"): ("mask_iou", 0.85),
    ("detector", "fp32"): ("box_agreement", 0.999),
    ("detector", "fp16"): ("box_agreement", 0.95),
    ("detector", "int8"): ("box_agreement", 0.85),
    ("decoder", "fp32"): ("psnr_vs_fp32_db", 60.0),
    ("decoder", "fp16"): ("psnr_vs_fp32_db", 40.0),
    ("maskgit", "fp32"): ("top1_agreement", 0.999),
    ("maskgit", "fp16"): ("top1_agreement", 0.98),
}

Feed = dict[str, np.ndarray]
Runner = Callable[[Feed], list[np.ndarray]]


@dataclass(frozen=True)
class Verdict:
    metric: str
    value: float
    threshold: float

    @property
    def status(self) -> str:
        return "ok" if self.value >= self.threshold else "below_threshold"


def verdict(model: str, precision: str, accuracy: dict[str, float]) -> Verdict:
    metric, minimum = THRESHOLDS[(model, precision)]
    return Verdict(metric, float(accuracy[metric]), minimum)


def ort_runner(path: Path) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if ".fp16." in path.name:
        # ORT 1.31's CPU level-ALL (layout) passes segfault on the FP16 attention graph; FP16 files
        # are for GPUs anyway, so on the CPU they are measured with the extended passes only.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)


def median_latency_ms(run: Runner, feed: Feed, runs: int = 5) -> float:
    run(feed)  # warm-up: first run allocates and picks kernels
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(spearmanr(a, b).statistic)


def maskgit_feeds(source: Source, count: int = 4, mask_ratio: float = 0.5) -> list[Feed]:
    """Deterministic 16x16 windows, half the cells masked: what one restore step sees."""
    rng = np.random.default_rng(0)
    k = codebook_size(source)
    feeds = []
    for _ in range(count):
        ids = rng.integers(0, k, (1, MASKGIT_WINDOW, MASKGIT_WINDOW), dtype=np.int64)
        ids[rng.random(ids.shape) < mask_ratio] = k  # k is the mask id
        feeds.append({"ids": ids})
    return feeds


def torch_tokens(source: Source, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    tok = source.tokenizer
    if tok is None:
        raise ValueError(f"{source.name} has no tokenizer")
    with torch.no_grad():
        return [tok.encode(torch.from_numpy(x)).numpy() for x in images]


def accuracy(source: Source, run: Runner, feeds: Sequence[Feed]) -> dict[str, float]:
    """Headline and secondary metrics of ``run`` against the float32 torch model."""
    with torch.no_grad():
        ref = [[t.numpy() for t in _as_tuple(source.module(torch.from_numpy(next(iter(f.values())))))] for f in feeds]
    got = [run(f) for f in feeds]
    if source.name in ("encoder2", "encoder2fast"):
        return two_layer_accuracy(source, feeds, got, ref)
    if source.name == "encoder":
        tok = source.tokenizer
        if tok is None:
            raise ValueError("encoder source without its tokenizer")
        agree = float(np.mean([np.mean(g[0] == r[0]) for g, r in zip(got, ref, strict=True)]))
        deltas = []
        with torch.no_grad():
            for f, g, r in zip(feeds, got, ref, strict=True):
                img = f["image"]
                dec_g = tok.decode(torch.from_numpy(g[0].astype(np.int64))).numpy()
                dec_r = tok.decode(torch.from_numpy(r[0])).numpy()
                deltas.append(psnr(img, dec_g) - psnr(img, dec_r))
        return {"token_agreement": round(agree, 6), "psnr_delta_db": round(float(np.mean(deltas)), 4)}
    if source.name == "scorer":
        rho = float(np.mean([spearman(g[0], r[0]) for g, r in zip(got, ref, strict=True)]))
        err = float(np.max([np.abs(g[0] - r[0]).max() for g, r in zip(got, ref, strict=True)]))
        return {"spearman": round(rho, 6), "max_abs_error": round(err, 6)}
    if source.name == "decoder":
        db = float(np.mean([psnr(g[0], r[0]) for g, r in zip(got, ref, strict=True)]))
        return {"psnr_vs_fp32_db": round(db, 3)}
    # maskgit: agreement of the most likely code at masked cells, the restorer's greedy choice
    k = codebook_size(source)
    agree = []
    for f, g, r in zip(feeds, got, ref, strict=True):
        masked = f["ids"] == k
        agree.append(np.mean(g[0].argmax(-1)[masked] == r[0].argmax(-1)[masked]))
    return {"top1_agreement": round(float(np.mean(agree)), 6)}


def two_layer_accuracy(source: Source, feeds: Sequence[Feed], got: list, ref: list) -> dict[str, float]:
    """Tokenizer v2's encoder: fine-id and coarse-level agreement (the headline is the lower),
    and the PSNR change of decoding the file's output instead of torch's, all tokens known."""
    from models.tokenizer2 import TwoLayerTokenizer

    tok = source.tokenizer
    if not isinstance(tok, TwoLayerTokenizer):
        raise ValueError("encoder2 source without its two-layer tokenizer")
    fine = float(np.mean([np.mean(g[0] == r[0]) for g, r in zip(got, ref, strict=True)]))
    coarse = float(np.mean([np.mean(g[1] == r[1]) for g, r in zip(got, ref, strict=True)]))

    def decode(fine_ids: np.ndarray, levels: np.ndarray) -> np.ndarray:
        codes = tok.quantizer.lookup(torch.from_numpy(fine_ids.astype(np.int64)))
        values = tok.coarse_values(torch.from_numpy(levels.astype(np.int64)))
        return tok.decode_codes(codes, torch.ones_like(codes[:, :1]), values).numpy()

    with torch.no_grad():
        deltas = [psnr(f["image"], decode(*g)) - psnr(f["image"], decode(*r)) for f, g, r in zip(feeds, got, ref, strict=True)]
    return {"token_agreement": round(min(fine, coarse), 6), "fine_agreement": round(fine, 6),
            "coarse_agreement": round(coarse, 6), "psnr_delta_db": round(float(np.mean(deltas)), 4)}


def _as_tuple(x: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)
