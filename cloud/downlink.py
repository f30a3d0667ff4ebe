"""What the worker tells a camera after it stored one of its frames: ACK or KEY_REQUEST.

Called by the worker once per frame it stored (``frame_stored``), for two-layer tokenizers
(wire v2, where key and delta frames exist):

* a key frame whose coarse layer and fine fragments all arrived (``ReceivedFrame.complete``) is
  now a reference in the store: **ACK** it, so a camera with ``use_ack`` codes against it;
* a key frame with fragments missing: **KEY_REQUEST** (reason "incomplete key frame");
* a delta frame stored degraded because its reference was missing or did not fit:
  **KEY_REQUEST** (reason "missing reference").

Key requests are rate-limited per device (``key_request_interval_s``): the deltas queued behind
a lost reference all degrade, and one key frame heals them all. Publishing goes through
``publish(device_id, bytes)`` (``MqttConsumer.send_down``); a failure is logged and counted,
never raised into the batch loop: the camera's schedule, its ack timeout or the next degraded
frame tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cloud.config import DownlinkConfig
from cloud.references import is_delta
from link.control import (
    REASON_INCOMPLETE_KEY,
    REASON_MISSING_REFERENCE,
    REASONS,
    ControlMessage,
    ControlSealer,
    ack,
    key_request,
)
from link.errors import LinkError, UnknownTokenizer
from link.frame import ReceivedFrame
from link.tokenizers import get_tokenizer

log = logging.getLogger(__name__)

Publish = Callable[[int, bytes], None]


@dataclass
class DownlinkStats:
    sent: dict[str, int] = field(default_factory=dict)  # message type -> published
    rate_limited: int = 0  # key requests not sent: one went to the device less than the interval ago
    failed: int = 0  # sealing (no key) or publishing failed


class ControlSender:
    def __init__(self, cfg: DownlinkConfig, sealer: ControlSealer, publish: Publish, *,
                 clock: Callable[[], float] = time.monotonic, on_sent: Callable[[str], None] | None = None) -> None:
        self.cfg, self.sealer, self.publish, self.clock = cfg, sealer, publish, clock
        self.on_sent = on_sent  # metrics hook: called with the message type's name
        self.stats = DownlinkStats()
        self._last_request: dict[int, float] = {}
        self._lock = threading.Lock()

    def frame_stored(self, rf: ReceivedFrame, degraded: bool) -> None:
        """The worker stored ``rf`` (``degraded``: a delta restored without its reference)."""
        if not self.cfg.enabled:
            return
        try:
            layered = get_tokenizer(rf.tokenizer_id).layered
        except UnknownTokenizer:
            return
        if not layered:
            return
        if is_delta(rf):
            if degraded:
                self.request_key(rf.device_id, rf.counter, REASON_MISSING_REFERENCE)
        elif rf.complete and rf.coarse is not None:
            if self.cfg.acks:
                self._send(ack(rf.device_id, rf.counter))
        else:
            self.request_key(rf.device_id, rf.counter, REASON_INCOMPLETE_KEY)

    def request_key(self, device_id: int, counter: int, reason: int) -> bool:
        """Ask ``device_id`` for a key frame unless one was asked for within the interval."""
        if not self.cfg.key_requests:
            return False
        now = self.clock()
        with self._lock:
            last = self._last_request.get(device_id)
            if last is not None and now - last < self.cfg.key_request_interval_s:
                self.stats.rate_limited += 1
                log.info("device %d frame %d: key request (%s) not sent, one went out %.1f s ago", device_id, counter,
                         REASONS.get(reason, reason), now - last)
                return False
            self._last_request[device_id] = now
        return self._send(key_request(device_id, counter, reason))

    def _send(self, msg: ControlMessage) -> bool:
        try:
            data = self.sealer.seal(msg)
            self.publish(msg.device_id, data)
        except (LinkError, ValueError, OSError) as exc:  # no key for the device, transport refused
            self.stats.failed += 1
            log.warning("device %d: %s not sent: %s", msg.device_id, msg.describe(), exc)
            return False
        self.stats.sent[msg.name] = self.stats.sent.get(msg.name, 0) + 1
        if self.on_sent is not None:
            self.on_sent(msg.name)
        log.info("device %d: sent %s", msg.device_id, msg.describe())
        return True
