"""Key and delta frames over the edge pipeline: what the service calls when temporal coding is on.

``TemporalSelector.select(image)`` returns a selection the packer turns into a wire v2 frame:

* a **key frame** (``EdgePipeline.select``: coarse layer + fine tokens under the budget times
  ``key_budget_ratio``: the I-frame every delta of its GOP builds on) when the
  ``ReferenceKeeper`` wants one (no reference yet, schedule, age, a request from the cloud) or
  when the scene changed (more than ``scene_change`` of the tokens moved);
* otherwise a **delta frame** against the reference (``edge.delta``): object tokens and moved
  tokens only, no coarse layer;
* with an event trigger (``event_classes``), nothing (None) unless a configured class is in view
  or the scene changed, except an empty delta frame every ``heartbeat_s`` so the cloud knows
  the camera lives.

The service calls ``queued(selection, counter)`` once the frame is in the outbox: only then does a
key frame become the reference, under the counter the outbox gave it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from link.frame import FRAME_DELTA, FRAME_KEY

from .codebook import code_distance, load_codebook
from .complexity import pad_to_multiple
from .delta import delta_cost_fn, delta_order, fit_order
from .importance import semantic_scores
from .pipeline import EdgePipeline, Selection, shrink
from .reference import Reference, ReferenceKeeper, TemporalConfig
from .sampler import BudgetConfig, BudgetTooSmall, SizeFn, budget_limit

log = logging.getLogger(__name__)


class TemporalUnsupported(ValueError):
    """Temporal coding was asked of a one-layer tokenizer (delta frames are wire v2 only)."""


@dataclass(eq=False)
class TemporalSelection(Selection):
    """A selection with its frame type: key (coded alone) or delta (against ``ref_counter``)."""

    frame_type: int = FRAME_KEY
    ref_counter: int | None = None
    reason: str = ""  # why this type: "schedule", "scene change", "moved", "event", "heartbeat", ...
    moved_fraction: float = 0.0  # share of tokens that moved from the reference (delta frames)
    min_packets: int = 1  # the packer adds copies of the smallest fragments up to this many (delta frames)


class TemporalSelector:
    def __init__(self, pipeline: EdgePipeline, config: TemporalConfig, *, keeper: ReferenceKeeper | None = None,
                 codebook: np.ndarray | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not pipeline.spec.layered:
            raise TemporalUnsupported(f"temporal coding needs a two-layer tokenizer (wire v2); "
                                      f"{pipeline.spec.name} has one layer")
        self.pipeline, self.config, self.clock = pipeline, config, clock
        self.keeper = keeper or ReferenceKeeper(config, clock)
        self.codebook = codebook if codebook is not None else load_codebook(config.codebook,
                                                                            pipeline.spec.codebook_size)
        self._last_sent = -float("inf")

    def close(self) -> None:
        self.pipeline.close()

    def select(self, image: np.ndarray, budget: BudgetConfig | None = None) -> TemporalSelection | None:
        """The frame to send for ``image``, or None (event trigger: nothing happening)."""
        reason = self.keeper.key_reason()
        ref = self.keeper.reference
        if reason is None and ref is not None:
            out = self._delta(image, ref, budget)
            if not isinstance(out, str):
                return out
            reason = out
        sel = self.pipeline.select(image, self.key_budget(budget))
        log.debug("key frame (%s)", reason)
        return TemporalSelection(**vars(sel), frame_type=FRAME_KEY, reason=reason or "key")

    def key_budget(self, budget: BudgetConfig | None) -> BudgetConfig:
        """The budget of a key frame: the frame budget times ``key_budget_ratio``."""
        budget = budget or self.pipeline.config.budget
        ratio = self.config.key_budget_ratio
        return budget if ratio == 1.0 else dataclasses.replace(budget, value=budget.value * ratio)

    def queued(self, selection: object, counter: int) -> None:
        """``selection`` is in the outbox under ``counter``."""
        if not isinstance(selection, TemporalSelection):
            return
        self._last_sent = self.clock()
        if selection.frame_type == FRAME_DELTA:
            self.keeper.delta_sent()
        elif selection.coarse is not None and selection.tokens is not None:
            self.keeper.key_sent(counter, selection.tokens, selection.coarse, scale=selection.scale,
                                 width=selection.width, height=selection.height, sent=selection.kept)

    def _delta(self, image: np.ndarray, ref: Reference,
               budget: BudgetConfig | None) -> TemporalSelection | str | None:
        """A delta selection, None (event trigger: nothing to send), or why a key frame is needed."""
        pipe, cfg = self.pipeline, self.config
        height, width = image.shape[:2]
        if (width, height) != (ref.width, ref.height):
            return "size changed"
        t0 = time.perf_counter()
        small = image if ref.scale == 1 else shrink(image, ref.scale)
        h, w = small.shape[:2]
        f = pipe.config.factor
        tokens, _ = pipe.encode_layers(pad_to_multiple(small, pipe.spec.coarse_factor))
        gh, gw = -(-h // f), -(-w // f)
        tokens = tokens[:gh, :gw]
        if tokens.shape != ref.tokens.shape:
            return "grid changed"
        t1 = time.perf_counter()
        distance = code_distance(self.codebook, tokens, ref.tokens)
        moved = distance > cfg.threshold
        moved_fraction = float(moved.mean())
        if moved_fraction >= cfg.scene_change:
            return "scene change"
        instances = pipe.segmenter.segment(image)
        t2 = time.perf_counter()
        reason = "moved"
        if cfg.event_classes:
            seen = sorted({i.class_name for i in instances} & set(cfg.event_classes))
            if seen:
                reason = "event " + ",".join(seen)
            elif self.clock() - self._last_sent >= cfg.heartbeat_s:
                reason, moved, instances = "heartbeat", np.zeros_like(moved), []
            else:
                return None
        semantic = np.zeros(tokens.shape)
        if cfg.semantic and instances:
            semantic = semantic_scores(instances, gh, gw, f * ref.scale, pipe.config.importance)
        if reason == "heartbeat":
            semantic = np.zeros(tokens.shape)
        budget = budget or pipe.config.budget
        limit = budget_limit(budget, width, height)
        unit = "seconds" if budget.unit == "seconds" else "bytes"
        copies = cfg.delta_min_packets
        cost = delta_cost_fn(width, height, unit, pipe.config.tokenizer_id, pipe.config.packet, (gh, gw), copies)
        order = delta_order(moved, distance, semantic, ref.sent)
        try:
            kept, spent = fit_order_with_copies(order, tokens, cost, limit, lambda: delta_cost_fn(
                width, height, unit, pipe.config.tokenizer_id, pipe.config.packet, (gh, gw)))
        except BudgetTooSmall as exc:
            raise BudgetTooSmall.for_budget(budget, width, height, exc.empty_size) from None
        size = int(spent) if unit == "bytes" else int(delta_cost_fn(
            width, height, "bytes", pipe.config.tokenizer_id, pipe.config.packet, (gh, gw), copies)(kept, tokens[kept]))
        t3 = time.perf_counter()
        timings = {"encode": (t1 - t0) * 1e3, "segment": (t2 - t1) * 1e3, "select": (t3 - t2) * 1e3}
        return TemporalSelection(
            kept=kept, indices=tokens[kept], grid_h=gh, grid_w=gw, width=width, height=height,
            tokenizer_id=pipe.config.tokenizer_id, timings=timings, size_bytes=size, cost=spent, limit=limit,
            unit=unit, n_semantic=int(np.count_nonzero(kept & (semantic > 0))), instances=list(instances),
            coarse=None, scale=ref.scale, tokens=tokens, frame_type=FRAME_DELTA, ref_counter=ref.counter,
            reason=reason, moved_fraction=moved_fraction, min_packets=copies,
        )  # fmt: skip


def fit_order_with_copies(order: np.ndarray, tokens: np.ndarray, cost: SizeFn, limit: float,
                          plain: Callable[[], SizeFn]) -> tuple[np.ndarray, float]:
    """``fit_order`` under a cost that adds copies to short frames. That cost is not monotone
    (a frame that grows from two fragments to three drops its copy), so first the fit without
    copies: when it already has the packets it needs (its copies cost nothing) it is the answer;
    otherwise the short frame is fitted with its copies."""
    kept, _ = fit_order(order, tokens, plain(), limit)
    spent = cost(kept, tokens[kept])
    if spent <= limit:
        return kept, spent
    return fit_order(order, tokens, cost, limit)
