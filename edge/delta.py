"""Delta-frame selection: which fine tokens to send against a reference, and what they cost.

Pure numpy over the link's exact planner, like ``edge.sampler``. A delta frame keeps

1. the tokens of detected objects (semantic score > 0), highest score first: what the picture
   is for, whether or not it moved;
2. then every token whose code vector moved more than the threshold from the reference's,
   farthest first,

and cuts that order where the packet hits the budget. Nothing else is sent: the cloud takes the
reference's token wherever the delta is silent, so no lattice is needed (the reference is the
context). The cost is the fine layer of a delta frame alone (no coarse layer, a 4-byte
reference counter per fragment).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from link.frame import FRAME_DELTA, Frame

from .pipeline import PacketConfig
from .sampler import SizeFn, _prefix_fit, _settle_exact, _taken


def delta_order(moved: np.ndarray, distance: np.ndarray, semantic: np.ndarray,
                sent: np.ndarray | None = None) -> np.ndarray:
    """Flat positions to keep, in order: object tokens by score, then moved tokens by distance.

    ``sent`` (the reference key frame's kept map) drops the object tokens that neither moved nor
    need sending: the cloud already holds their exact token from the key frame. Ties go to the
    lower row-major position; unmoved background is not in the order at all."""
    sem, mov, dist = semantic.ravel(), moved.ravel(), distance.ravel()
    flat = np.arange(sem.size)
    wanted = sem > 0
    if sent is not None:
        wanted &= mov | ~np.asarray(sent, bool).ravel()
    objects = flat[wanted]
    objects = objects[np.lexsort((objects, -dist[objects], -sem[objects]))]
    rest = flat[mov & (sem <= 0)]
    rest = rest[np.lexsort((rest, -dist[rest]))]
    return np.concatenate([objects, rest]).astype(np.int64)


def delta_cost_fn(width: int, height: int, unit: str, tokenizer_id: int, packet: PacketConfig,
                  grid: tuple[int, int], min_packets: int = 1) -> SizeFn:
    """Exact cost of a delta frame's fragments (bytes, or seconds on air at ``packet.radio``),
    with the copies ``edge.packer.fill_copies`` adds up to ``min_packets``; carries ``.estimate``
    in bytes for the search, as ``edge.pipeline.layered_cost_fn`` does."""
    from link.header2 import LAYER_FINE
    from link.packet2 import default_models, estimate_layer, plan_layer

    models = default_models(tokenizer_id)

    def frame(kept: np.ndarray, indices: np.ndarray) -> Frame:
        # counter and reference are placeholders: their values do not change any size
        return Frame(0, 1, 0, width, height, tokenizer_id, grid[0], grid[1], kept, indices,
                     frame_type=FRAME_DELTA, ref_counter=0)

    per: Callable[[int], float] = float
    if unit == "seconds":
        if packet.mtu > packet.radio.mtu:
            raise ValueError(f"packet.mtu {packet.mtu} exceeds the radio profile's mtu {packet.radio.mtu}")
        per = packet.radio.time_on_air_s

    class Cost:
        def __call__(self, kept: np.ndarray, indices: np.ndarray) -> float:
            plans = plan_layer(frame(kept, indices), LAYER_FINE, mtu=packet.mtu, tag_len=packet.tag_len, models=models)
            sizes = sorted(p.size for p in plans)
            sizes += [sizes[i % len(sizes)] for i in range(max(0, min_packets - len(sizes)))] if sizes else []
            return float(sum(per(s) for s in sizes))

    cost = Cost()
    if unit != "seconds":
        def estimate(k: np.ndarray, i: np.ndarray) -> float:
            est = estimate_layer(frame(k, i), LAYER_FINE, mtu=packet.mtu, tag_len=packet.tag_len, models=models)
            n = max(1, -(-int(est) // packet.mtu))  # about: fragments, and copies of the last (smallest) one
            return est + max(0, min_packets - n) * (est - (n - 1) * packet.mtu)

        cost.estimate = estimate  # type: ignore[attr-defined]
    return cost


def fit_order(order: np.ndarray, tokens: np.ndarray, size_fn: SizeFn, limit: float) -> tuple[np.ndarray, float]:
    """The longest prefix of ``order`` whose cost is within ``limit``: (kept mask, cost).

    BudgetTooSmall when even an empty delta frame does not fit."""
    estimate: SizeFn | None = getattr(size_fn, "estimate", None)
    sub = order  # the search runs over the candidates only; positions outside them stay unsent
    k, size = _prefix_fit(sub, tokens, estimate or size_fn, limit)
    if estimate is not None:
        k, size = _settle_exact(sub, tokens, size_fn, estimate, limit, k)
    return _taken(sub[:k], tokens.shape), float(size)
