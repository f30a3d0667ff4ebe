"""The camera's side of the downlink: control messages from the cloud move its reference keeper.

The MQTT transport hands every payload of ``<prefix>/<device_id>/ctl`` to ``ControlReceiver.handle``
on its network thread. ``link.control.ControlOpener`` authenticates it with the device's key and
rejects replays; then

* **KEY_REQUEST** about frame N: the next frame is a key frame (``ReferenceKeeper.request_key``),
  unless a key frame newer than N was sent already (the request is stale: that key frame is on
  its way; if it too is lost, the cloud asks again about a later frame);
* **ACK** of frame N with both layers complete: frame N becomes the reference when the keeper
  waits for acknowledgements (``use_ack``) and N is a key frame it sent and has not superseded.

A bad message (truncated, forged, another device's, replayed) is logged on one line with its
typed reason and counted; nothing here raises into the transport, so the service runs on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from link.control import ACK, ACK_COMPLETE, KEY_REQUEST, ControlMessage, ControlOpener
from link.errors import LinkError

from .reference import ReferenceKeeper

log = logging.getLogger(__name__)


@dataclass
class DownlinkStats:
    accepted: dict[str, int] = field(default_factory=dict)  # message type -> accepted
    rejected: dict[str, int] = field(default_factory=dict)  # LinkError.reason -> count
    stale: int = 0  # key requests already answered by a newer key frame, acks that moved nothing


class ControlReceiver:
    def __init__(self, opener: ControlOpener, keeper: ReferenceKeeper, *, use_ack: bool) -> None:
        self.opener, self.keeper, self.use_ack = opener, keeper, use_ack
        self.stats = DownlinkStats()
        self._lock = threading.Lock()

    def handle(self, data: bytes) -> ControlMessage | None:
        """Act on one control message; the message, or None when it was rejected."""
        try:
            msg = self.opener.open(data)
        except LinkError as exc:
            with self._lock:
                self.stats.rejected[exc.reason] = self.stats.rejected.get(exc.reason, 0) + 1
            log.warning("control message rejected (%s, %d bytes): %s", exc.reason, len(data), exc)
            return None
        except Exception:  # a bug must not take the transport's thread down
            log.exception("control message handling failed")
            return None
        with self._lock:
            self.stats.accepted[msg.name] = self.stats.accepted.get(msg.name, 0) + 1
        if msg.type == KEY_REQUEST:
            self._key_request(msg)
        elif msg.type == ACK:
            self._ack(msg)
        return msg

    def _key_request(self, msg: ControlMessage) -> None:
        last = self.keeper.last_key_counter()
        if last is not None and last > msg.counter:
            self._stale(f"{msg.describe()}: key frame {last} was sent since; not repeated")
            return
        log.info("cloud sent a %s: the next frame is a key frame", msg.describe())
        self.keeper.request_key()

    def _ack(self, msg: ControlMessage) -> None:
        if not self.use_ack:
            log.debug("%s: this camera does not wait for acknowledgements (temporal.use_ack off)", msg.describe())
            return
        if msg.detail != ACK_COMPLETE:
            self._stale(f"{msg.describe()}: not both layers complete, not a reference")
            return
        if self.keeper.acknowledge(msg.counter):
            log.info("cloud sent an %s: it is the reference now", msg.describe())
        else:
            with self._lock:
                self.stats.stale += 1

    def _stale(self, message: str) -> None:
        with self._lock:
            self.stats.stale += 1
        log.info("%s", message)
