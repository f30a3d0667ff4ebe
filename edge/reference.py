"""Per-camera reference frame for delta coding (wire v2 frame types), and when to send a key frame.

A delta frame carries only fine tokens, against a *reference*: an earlier key frame, whose fine
tokens and coarse layer the cloud reuses wherever the delta sent nothing. The edge keeps the one
reference the cloud is known (or assumed) to hold:

* without a downlink, the last key frame that went into the outbox (assumed delivered; if it was
  lost the cloud restores the deltas without it and marks them degraded, and the next scheduled
  key frame heals the stream);
* with a downlink (``use_ack``), only a key frame the cloud acknowledged; until one is, every
  frame is a key frame, and a newer key frame not acknowledged within ``ack_timeout_s`` is sent
  again (the cloud ACKs only key frames that arrived whole: ``edge.downlink``).

Key frames come on a schedule (every ``key_interval`` frames, or ``key_max_age_s``), on scene
change (decided by ``edge.temporal`` from how many tokens moved), and on request
(``request_key``: the cloud asked over MQTT). Thread-safe: requests and acknowledgements arrive
on the transport's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .codebook import DEFAULT_CODEBOOK

log = logging.getLogger(__name__)

PENDING_KEYS = 8  # key frames awaiting an acknowledgement (use_ack)


@dataclass
class TemporalConfig:
    """``[pipeline.temporal]``: delta frames against a reference key frame (two-layer tokenizers)."""

    enabled: bool = False
    key_interval: int = 30  # a key frame at least every this many frames (1: every frame is a key frame)
    key_max_age_s: float = 0.0  # and when the reference is older than this (0: no age limit)
    # A key frame's budget is this many times the frame budget (an I-frame bigger than P-frames:
    # its tokens and coarse layer serve every delta frame of its GOP). 1: the same budget.
    key_budget_ratio: float = 1.0
    # A delta frame goes out as at least this many radio packets (copies of its smallest
    # fragments fill up, paid from its budget): the frame is lost only if all are. 1: no copies.
    delta_min_packets: int = 1
    threshold: float = 0.35  # a token moved when its code vector is this far from the reference's (unit codes: 0..2)
    scene_change: float = 0.5  # share of moved tokens above which a key frame is sent instead of a delta
    semantic: bool = True  # delta frames also carry the tokens of detected objects
    use_ack: bool = False  # code against the last key frame the cloud acknowledged (needs a downlink)
    ack_timeout_s: float = 60.0  # use_ack: a key frame not acknowledged this long is sent again (0: never)
    codebook: Path = DEFAULT_CODEBOOK
    # Event trigger: with classes set, a frame goes out only when the detector sees one of them or
    # the scene changed; otherwise a heartbeat (an empty delta frame) every heartbeat_s.
    event_classes: list[str] = field(default_factory=list)
    heartbeat_s: float = 300.0

    def __post_init__(self) -> None:
        if self.key_interval < 1:
            raise ValueError(f"temporal.key_interval must be >= 1, got {self.key_interval}")
        if self.key_max_age_s < 0 or self.heartbeat_s <= 0:
            raise ValueError("temporal.key_max_age_s must be >= 0 and temporal.heartbeat_s > 0")
        if self.ack_timeout_s < 0:
            raise ValueError(f"temporal.ack_timeout_s must be >= 0, got {self.ack_timeout_s}")
        if not 1.0 <= self.key_budget_ratio <= 100.0:
            raise ValueError(f"temporal.key_budget_ratio must be in [1, 100], got {self.key_budget_ratio}")
        if not 1 <= self.delta_min_packets <= 4:
            raise ValueError(f"temporal.delta_min_packets must be in [1, 4], got {self.delta_min_packets}")
        if not 0.0 < self.threshold <= 2.0:
            raise ValueError(f"temporal.threshold must be in (0, 2] (unit code distance), got {self.threshold}")
        if not 0.0 < self.scene_change <= 1.0:
            raise ValueError(f"temporal.scene_change must be in (0, 1], got {self.scene_change}")
        self.codebook = Path(self.codebook)


@dataclass(frozen=True)
class Reference:
    """What the cloud holds of a key frame, as the edge saw it."""

    counter: int
    tokens: np.ndarray  # (gh, gw) int64: the key frame's encoded fine tokens, every cell
    coarse: np.ndarray  # (C, hc, wc) int64: its coarse levels (always sent whole on key frames)
    scale: int  # the picture was coded at 1/scale size
    width: int
    height: int
    created: float  # monotonic seconds
    sent: np.ndarray | None = None  # (gh, gw) bool: the cells whose token the key frame sent (None: unknown)


class ReferenceKeeper:
    def __init__(self, config: TemporalConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self._lock = threading.Lock()
        self._ref: Reference | None = None
        self._pending: dict[int, Reference] = {}
        self._since_key = 0
        self._requested = False

    @property
    def reference(self) -> Reference | None:
        with self._lock:
            return self._ref

    def key_reason(self) -> str | None:
        """Why the next frame must be a key frame, or None when a delta may be sent."""
        with self._lock:
            if self._requested:
                return "requested"
            if self._ref is None:
                return "unacknowledged" if self.config.use_ack and self._pending else "no reference"
            if self._ack_overdue():
                return "ack timeout"
            if self._since_key + 1 >= self.config.key_interval:
                return "schedule"
            if self.config.key_max_age_s and self.clock() - self._ref.created >= self.config.key_max_age_s:
                return "age"
            return None

    def _ack_overdue(self) -> bool:
        """The newest key frame, sent after the reference, waited ``ack_timeout_s`` in vain (lock held)."""
        if not (self.config.use_ack and self.config.ack_timeout_s and self._pending):
            return False
        newest = self._pending[max(self._pending)]
        return self.clock() - newest.created >= self.config.ack_timeout_s

    def last_key_counter(self) -> int | None:
        """The counter of the newest key frame sent (acknowledged or not); None before the first."""
        with self._lock:
            return max([*self._pending, *([self._ref.counter] if self._ref is not None else [])], default=None)

    def request_key(self) -> None:
        """The cloud asked for a key frame (lost reference, a new viewer): the next frame is one."""
        with self._lock:
            self._requested = True
        log.info("key frame requested")

    def key_sent(self, counter: int, tokens: np.ndarray, coarse: np.ndarray, *, scale: int, width: int,
                 height: int, sent: np.ndarray | None = None) -> None:
        """A key frame went into the outbox under ``counter`` (``sent``: its kept map)."""
        ref = Reference(counter, np.array(tokens, np.int64), np.array(coarse, np.int64), scale, width, height,
                        self.clock(), None if sent is None else np.array(sent, bool))
        with self._lock:
            self._requested = False
            self._since_key = 0
            if not self.config.use_ack:
                self._ref = ref
                return
            self._pending[counter] = ref
            while len(self._pending) > PENDING_KEYS:
                self._pending.pop(min(self._pending))

    def delta_sent(self) -> None:
        with self._lock:
            self._since_key += 1

    def acknowledge(self, counter: int) -> bool:
        """The cloud stored key frame ``counter`` (downlink); True when it becomes the reference.

        An acknowledgement older than the current reference, or of a counter this keeper never
        sent as a key frame, is ignored (logged): a stale or forged ack must not move it back."""
        with self._lock:
            ref = self._pending.get(counter)
            if ref is None or (self._ref is not None and counter <= self._ref.counter):
                log.warning("acknowledgement of key frame %d ignored (not pending or older than the reference)",
                            counter)
                return False
            self._ref = ref
            for c in [c for c in self._pending if c <= counter]:
                del self._pending[c]
            return True
