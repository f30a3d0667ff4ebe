"""The workers' MQTT sessions, kept honest through the shared store.

Why this exists: a worker on a shared subscription holds a *persistent* session (so a restart
gets its unacknowledged messages back). If the worker dies and never returns, the broker keeps
that session in the group and keeps queueing its share of the stream there (Mosquitto 2.0 does
not skip offline members), so fragments pile up where nobody reads them and frames are stored
with half their slices. The fix measured in ``benchmarks/scaleout_drill.py``:

* **Clean stop** (SIGTERM, scale-down): unsubscribe, stage and acknowledge what still arrives,
  then DISCONNECT with session expiry 0 (``Worker.leave``), and forget the registration.
* **Death**: every worker heartbeats its client id in the store. A registration whose heartbeat
  is older than ``adopt_after_s`` belongs to a dead worker; one live worker adopts it (the
  store hands it to exactly one), connects under that client id without subscribing, and runs
  the same clean stop on it: the parked fragments are staged, the session ends, the group
  shrinks. If the dead worker comes back meanwhile it simply takes its session back.
* **Clash**: two live processes with one client id take the session from each other about
  once a second. The registry sees a fresh heartbeat from another live process at start-up and
  refuses to start (``ClientIdClash``); default client ids carry the pid, so they never clash.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from cloud.store import SessionRecord, Store, StoreError
from link.errors import TransportError
from link.transports.config import MqttConfig

log = logging.getLogger(__name__)


class ClientIdClash(RuntimeError):
    """Another live worker holds this MQTT client id; the message names it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SessionKeeper:
    """Registers this worker's client id, heartbeats it, and hands stale ones to ``adopt``."""

    def __init__(self, store: Store, client_id: str, owner: str, *, heartbeat_s: float = 2.0,
                 adopt_after_s: float = 20.0, adopt: Callable[[SessionRecord], bool] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.client_id, self.owner = store, client_id, owner
        self.heartbeat_s, self.adopt_after_s, self.adopt = heartbeat_s, adopt_after_s, adopt
        self.clock = clock
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.adopted: list[str] = []
        self._thread: threading.Thread | None = None

    def _record(self, now: float) -> SessionRecord:
        return SessionRecord(self.client_id, self.owner, self.host, self.pid, now)

    def register(self) -> None:
        """Claim the client id in the store; ``ClientIdClash`` if another live worker holds it."""
        now = self.clock()
        held = self.store.get_session(self.client_id)
        if held is not None and held.owner != self.owner and not held.adopted \
                and held.heartbeat >= now - self.adopt_after_s:
            same_host = held.host == self.host
            if not same_host or _pid_alive(held.pid):
                raise ClientIdClash(
                    f"MQTT client id {self.client_id!r} is held by worker {held.owner} (host {held.host}, pid "
                    f"{held.pid}, heartbeat {now - held.heartbeat:.1f} s ago); two workers with one client id take "
                    f"the session from each other. Give each worker its own broker.client_id or leave it empty "
                    f"(default: tokencast-cloud-<host>-<pid>)")
            log.info("client id %s: previous holder pid %d on this host is gone; taking over its session",
                     self.client_id, held.pid)
        self.store.put_session(self._record(now))

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="tokencast-sessions", daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                self.tick()
            except StoreError as exc:
                log.warning("session heartbeat failed (%s); retrying", exc)
            except Exception:  # an adoption that failed: logged, the next tick tries again
                log.exception("adopting a session failed")

    def tick(self) -> None:
        now = self.clock()
        if not self.store.heartbeat_session(self.client_id, self.owner, now):
            # adopted while our heartbeat stalled (store outage): we are alive, so take it back
            log.warning("client id %s was taken over in the registry; registering again", self.client_id)
            self.store.put_session(self._record(now))
        if self.adopt is None or self.adopt_after_s <= 0:
            return
        dead = self.store.adopt_stale_session(self.owner + "/adopter", self.host, self.pid, now, self.adopt_after_s)
        if dead is not None:
            log.warning("MQTT session %s of worker %s (host %s) silent for %.0f s: adopting it to drain and end it",
                        dead.client_id, dead.owner, dead.host, now - dead.heartbeat)
            if self.adopt(dead):
                self.adopted.append(dead.client_id)
                self.store.forget_session(dead.client_id, self.owner + "/adopter")
            # else: the row keeps the adoption time as its heartbeat; it goes stale again and is retried

    def release(self) -> None:
        """Forget our registration (after the session was ended at the broker)."""
        try:
            self.store.forget_session(self.client_id, self.owner)
        except StoreError as exc:
            log.warning("could not drop the session registration of %s: %s", self.client_id, exc)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def mqtt_adopter(worker: object, mqtt: MqttConfig, *, max_s: float = 30.0) -> Callable[[SessionRecord], bool]:
    """``adopt`` for ``SessionKeeper``: resume the dead session under its client id, then ``worker.leave`` it."""

    def adopt(dead: SessionRecord) -> bool:
        from link.transports.mqtt import MqttConsumer

        try:
            consumer = MqttConsumer(dataclasses.replace(mqtt, client_id=dead.client_id), subscribe=False,
                                    reconnect=False)
        except TransportError as exc:
            log.warning("cannot adopt session %s now: %s", dead.client_id, exc)
            return False
        ended: bool = worker.leave(consumer, max_s=max_s)  # type: ignore[attr-defined]
        return ended

    return adopt
