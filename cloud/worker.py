"""The decoder worker: fragments in, restored frames in the store out, at least once, stored once.

Two stages joined by the store, so they can run in different threads or different processes:

* **ingest** (``submit`` / ``ingest``): each fragment is parsed, authenticated and decoded at once
  (bad input is quarantined with the link's typed ``reason``, acknowledged, and the worker moves
  on); a fragment of a frame already stored is a duplicate (acknowledged, dropped, counted);
  the rest are *staged* durably in one store transaction, and only then acknowledged.
* **batch** (``process``): frames that are ready (all slices staged, or older than the
  reassembly timeout, missing slices then marked lost) are claimed under a lease, assembled,
  restored together up to ``max_batch`` frames or ``max_wait_ms``, decoded and stored.

Why stage instead of holding each MQTT message until its frame is stored: a shared
subscription hands the fragments of one frame to *different* workers (Mosquitto round-robins
per message), so no single worker could reassemble it. The store is the rendezvous; a
fragment's message is acknowledged once the fragment is on disk, which keeps the guarantee
(nothing acknowledged is lost: a killed worker's staged frames are claimed by another worker
when their lease runs out; its unacknowledged messages are redelivered when it reconnects with
its persistent session) and keeps the broker's in-flight window free.

Idempotency wins over the replay window: a redelivered fragment of a stored frame is a
duplicate, not a replay; the window only rejects counters that were never stored.
If the store is full or locked, deliveries are held unacknowledged and retried with backoff;
the ingest loop stops pulling new messages meanwhile, so the broker keeps them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cloud.config import CloudConfig
from cloud.downlink import ControlSender
from cloud.metrics import Metrics
from cloud.references import can_be_reference, is_delta, reference_of, resolve
from cloud.restoring import Codec, restore_batch
from cloud.store import FrameRecord, StagedFragment, Store, StoreError, make_store
from link.entropy import PriorCode
from link.errors import LimitExceeded, LinkError, MalformedPacket, ReplayRejected, UnknownTokenizer
from link.frame import SCALES, ReceivedFrame
from link.framing import join_frames
from link.header import parse_header
from link.header2 import parse_header2
from link.packet import open_fragment
from link.reassembly import coverage_size, layer_of, unpack
from link.security import KeyStore, Opener, ReplayWindow
from link.tokenizers import get_tokenizer, load_prior

log = logging.getLogger(__name__)

STAGED, DUPLICATE, REJECTED, HELD = "staged", "duplicate", "rejected", "held"
MAX_HELD = 10_000  # deliveries kept in memory while the store is down (direct feeding only)
INGEST_CHUNK = 256  # deliveries staged per store transaction
RETRY_MIN_S, RETRY_MAX_S = 0.2, 10.0
SUMMARY_EVERY_S = 30.0


class MessageSource(Protocol):
    """An MQTT consumer (``link.transports.mqtt.MqttConsumer``) or anything that yields messages."""

    def recv_message(self, timeout: float | None = None) -> object | None: ...


@dataclass
class _Message:
    payload: bytes
    ack: Callable[[], None] | None = None
    device_id: int | None = None


class TransportSource:
    """Adapts a plain ``link`` transport (loopback, serial) to ``recv_message``; nothing to ack."""

    def __init__(self, transport: object) -> None:
        self.transport = transport

    def recv_message(self, timeout: float | None = None) -> _Message | None:
        data = self.transport.recv(timeout)  # type: ignore[attr-defined]
        return None if data is None else _Message(data)


@dataclass
class Delivery:
    payload: bytes
    ack: Callable[[], None] | None = None
    received_at: float = 0.0
    topic_device: int | None = None  # device id named by the MQTT topic, cross-checked with the header


@dataclass
class WorkerStats:
    fragments: int = 0
    staged: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    stored_partial: int = 0
    batches: int = 0
    busy_s: float = 0.0  # restore + decode + store time
    degraded: int = 0  # delta frames restored without their reference (cloud.references)
    deferred: int = 0  # delta frames put back to wait for their reference


def load_priors(tokenizer_ids: list[int], directory: object) -> dict[int, PriorCode]:
    priors = {}
    for tid in tokenizer_ids:
        spec = get_tokenizer(tid)
        counts = load_prior(spec, directory)  # type: ignore[arg-type]
        if counts is not None:
            priors[tid] = PriorCode.from_counts(spec, counts)
    return priors


def load_codecs(cfg: CloudConfig) -> dict[int, Codec]:
    """Load one codec per configured tokenizer id (torch imported here, not at module load):
    ``TokenCodec`` for one-layer tokenizers, ``TokenCodec2`` for two-layer ones (wire v2)."""
    from models.codec import TokenCodec
    from models.codec2 import TokenCodec2
    from models.restore import RestoreConfig

    r = cfg.restore
    rc = RestoreConfig(steps=r.steps, temperature=r.temperature, latents=r.latents)
    rc2 = RestoreConfig(steps=r.v2_steps, overlap=r.v2_overlap, temperature=r.temperature, latents=r.latents)
    out: dict[int, Codec] = {}
    for tid in cfg.model.tokenizer_ids:
        layered = get_tokenizer(tid).layered
        cls = TokenCodec2 if layered else TokenCodec
        out[tid] = cls.load(tid, device=cfg.model.device, random_init=cfg.model.random_init,
                            restore=rc2 if layered else rc)
    return out


class _Duplicate(Exception):
    def __init__(self, device_id: int) -> None:
        self.device_id = device_id


class Worker:
    def __init__(self, cfg: CloudConfig, store: Store, codecs: Mapping[int, Codec], *,
                 metrics: Metrics | None = None, keys: KeyStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.store, self.codecs = cfg, store, dict(codecs)
        self.metrics = metrics or Metrics()
        sec = cfg.security
        self.opener = Opener(keys or KeyStore(directory=sec.keys_dir), tag_len=sec.tag_len,
                             allow_unsealed=sec.allow_unsealed)
        self.priors = load_priors(list(self.codecs), sec.prior_dir)
        self.replay = ReplayWindow(sec.replay_window)
        self.owner = cfg.effective_worker_id()
        self.clock = clock
        self.stats = WorkerStats()
        self.downlink: ControlSender | None = None  # ACKs and key requests to cameras (set by cloud.cli)
        self._held: deque[Delivery] = deque()
        self._lock = threading.Lock()  # one ingest at a time: held deliveries keep their order
        self._retry_at, self._retry_s = 0.0, RETRY_MIN_S
        self._summary = (time.monotonic(), 0)

    # -- ingest ----------------------------------------------------------------------------------------
    def submit(self, payload: bytes, ack: Callable[[], None] | None = None) -> str:
        """Feed one fragment directly (gateway, demo); returns staged / duplicate / rejected / held."""
        return self.ingest([Delivery(bytes(payload), ack)])[0]

    def ingest(self, deliveries: list[Delivery]) -> list[str]:
        """Stage a batch of deliveries; each is acknowledged once its outcome is durable."""
        now = self.clock()
        for d in deliveries:
            self.metrics.fragments.inc()
            self.metrics.fragment_bytes.inc(len(d.payload))
            self.stats.fragments += 1
            d.received_at = d.received_at or now
        with self._lock:
            held, self._held = list(self._held), deque()
            batch = held + deliveries
            outcomes: list[str] = []
            for i in range(0, len(batch), INGEST_CHUNK):
                outcomes += self._ingest_chunk(batch[i : i + INGEST_CHUNK])
            self.metrics.held.set(len(self._held))
            return outcomes[len(held):]

    def _check(self, d: Delivery) -> StagedFragment:
        """Authenticate and decode; _Duplicate for a stored frame; LinkError for bad input."""
        frag = open_fragment(d.payload, self.opener, priors=self.priors)
        h = frag.header
        if d.topic_device is not None and d.topic_device != h.device_id:
            raise MalformedPacket(f"topic names device {d.topic_device}, fragment header device {h.device_id}")
        if h.tokenizer_id not in self.codecs:
            raise UnknownTokenizer(f"tokenizer id {h.tokenizer_id} has no model in this worker; "
                                   f"loaded: {sorted(self.codecs)}")
        # a frame may be coded at 1/2 or 1/4 size under a tiny budget (link.frame.frame_scale)
        factor = get_tokenizer(h.tokenizer_id).factor * SCALES[-1]
        if h.info and (h.width > h.grid_w * factor or h.height > h.grid_h * factor):  # type: ignore[operator]
            # the edge pads the picture up to whole tokens, so the image is never larger than its
            # grid; a claim of 65535x65535 would make the decoder allocate tens of gigabytes
            raise LimitExceeded(f"device {h.device_id} counter {h.counter}: image {h.width}x{h.height} is larger "
                                f"than its {h.grid_h}x{h.grid_w} grid decodes to "
                                f"({h.grid_w * factor}x{h.grid_h * factor})")
        try:
            self.replay.check(h.device_id, h.counter)
        except ReplayRejected:
            if self.store.has_frame(h.device_id, h.counter):
                raise _Duplicate(h.device_id) from None  # a redelivery of a stored frame, not a replay
            raise
        return StagedFragment(h.device_id, h.counter, h.slice_start, h.slice_len, coverage_size(frag),
                              d.payload, d.received_at or self.clock(), layer=layer_of(frag))

    def _ingest_chunk(self, chunk: list[Delivery]) -> list[str]:
        outcomes: list[str | None] = [None] * len(chunk)
        staged: list[tuple[int, StagedFragment]] = []
        dup_devices: dict[int, int] = {}
        try:
            for i, d in enumerate(chunk):
                try:
                    staged.append((i, self._check(d)))
                except _Duplicate as dup:
                    outcomes[i] = DUPLICATE
                    dup_devices[dup.device_id] = dup_devices.get(dup.device_id, 0) + 1
                    self._ack(d)
                except LinkError as exc:
                    self._quarantine(d, exc)
                    outcomes[i] = REJECTED
                    self._ack(d)
            if staged:
                for (i, sf), new in zip(staged, self.store.stage([sf for _, sf in staged]), strict=True):
                    outcomes[i] = STAGED if new else DUPLICATE
                    if not new:
                        dup_devices[sf.device_id] = dup_devices.get(sf.device_id, 0) + 1
                    self._ack(chunk[i])
        except StoreError as exc:
            waiting = [d for d, o in zip(chunk, outcomes, strict=True) if o is None]
            self._hold(waiting, exc)
            return [o or HELD for o in outcomes]
        self._retry_s = RETRY_MIN_S
        n_dup = sum(dup_devices.values())
        self.stats.staged += sum(o == STAGED for o in outcomes)
        self.stats.duplicates += n_dup
        self.metrics.duplicates.inc(n_dup)
        if dup_devices:
            try:
                self.store.count_duplicates(dup_devices)
            except StoreError as exc:  # statistics only: not worth holding a delivery for
                log.warning("could not record duplicate counts: %s", exc)
        return [o or HELD for o in outcomes]

    @staticmethod
    def _ack(d: Delivery) -> None:
        if d.ack is not None:
            d.ack()

    def _quarantine(self, d: Delivery, exc: LinkError) -> None:
        device = counter = None
        try:
            h = parse_header2(d.payload) if d.payload[:1] == b"\x02" else parse_header(d.payload)
            device, counter = h.device_id, h.counter
        except LinkError:
            pass
        self.store.quarantine(exc.reason, device, d.payload, str(exc), counter=counter, now=d.received_at)
        self._count_reject(exc.reason)
        log.warning("rejected fragment (%s) from device %s: %s", exc.reason, device, exc)

    def _count_reject(self, reason: str) -> None:
        self.metrics.rejects.labels(reason=reason).inc()
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        try:
            usage = self.store.quarantine_usage()
        except StoreError as exc:  # statistics only
            log.warning("could not read the quarantine's usage: %s", exc)
            return
        self.metrics.quarantine_entries.set(usage.entries)
        self.metrics.quarantine_bytes.set(usage.bytes)
        self.metrics.quarantine_truncated.set(usage.truncated)
        self.metrics.quarantine_evicted.set(usage.evicted)

    def _hold(self, deliveries: list[Delivery], exc: StoreError) -> None:
        self.metrics.store_errors.labels(reason=exc.reason).inc()
        self._held.extend(deliveries)
        while len(self._held) > MAX_HELD:  # only direct feeding gets here; MQTT stops pulling first
            dropped = self._held.popleft()
            log.error("held-message buffer full: dropping an unacknowledged delivery (%d bytes)", len(dropped.payload))
        self._retry_at = self.clock() + self._retry_s
        log.error("store failed (%s: %s); holding %d deliveries unacknowledged, retry in %.1f s",
                  exc.reason, exc, len(self._held), self._retry_s)
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)

    @property
    def held(self) -> int:
        return len(self._held)

    def retry_held(self, force: bool = False) -> bool:
        """Retry held deliveries if their backoff has passed; True when none are held afterwards."""
        if self._held and (force or self.clock() >= self._retry_at):
            self.ingest([])
        return not self._held

    # -- batch ------------------------------------------------------------------------------------------
    def process(self, now: float | None = None, *, force: bool = False) -> list[FrameRecord]:
        """Claim up to ``max_batch`` ready frames, restore, decode and store them; the new records.

        ``force`` treats every pending frame as ready (shutdown, demo): partial frames are
        restored with their missing slices marked lost.
        """
        return self._process(now, force)[1]

    def _process(self, now: float | None, force: bool) -> tuple[int, list[FrameRecord]]:
        now = self.clock() if now is None else now
        timeout = 0.0 if force else self.cfg.reassembly.timeout_s
        claims = self.store.claim(now, timeout_s=timeout, owner=self.owner, lease_s=self.cfg.reassembly.lease_s,
                                  limit=self.cfg.batch.max_batch)
        if not claims:
            return 0, []
        frames: list[ReceivedFrame] = []
        for c in claims:
            try:
                rf = unpack(c.fragments, self.opener, priors=self.priors)
                rf.first_seen = c.first_seen
                frames.append(rf)
            except LinkError as exc:  # e.g. overlapping slices only visible once assembled
                self.store.quarantine(exc.reason, c.device_id, join_frames(c.fragments), str(exc),
                                      counter=c.counter, drop_staged=c.key)
                self._count_reject(exc.reason)
                log.warning("rejected frame %s (%s): %s", c.key, exc.reason, exc)
        # Key frames first: a delta frame in the same batch as its reference then finds it stored.
        keys = [f for f in frames if not is_delta(f)]
        deltas = self._defer([f for f in frames if is_delta(f)], keys, now, force)
        stored: list[FrameRecord] = []
        restore_s = store_s = 0.0
        for i, group in enumerate((keys, deltas)):
            if not group:
                continue
            later = [(f.device_id, f.counter) for g in (keys, deltas)[i:] for f in g]
            try:
                inputs, why = self._resolve(group)
                t0 = time.perf_counter()
                restored = restore_batch(group, self.codecs, seed=self.cfg.restore.seed, worker=self.owner,
                                         clock=self.clock, inputs=inputs)
            except Exception:
                self.store.release(later, self.owner)
                raise
            t1 = time.perf_counter()
            for j, (r, rf, reason) in enumerate(zip(restored, group, why, strict=True)):
                r.record.degraded = reason is not None
                try:
                    new = self.store.put_frame(r.record, r.image_png, r.mask_png)
                    if new and can_be_reference(rf):
                        self.store.put_reference(reference_of(rf, r.tokens, r.record.stored_at))
                except StoreError as exc:
                    self.metrics.store_errors.labels(reason=exc.reason).inc()
                    try:
                        self.store.release([x.record.key for x in restored[j:]] + later[len(group):], self.owner)
                    except StoreError:
                        pass  # their leases run out instead
                    raise
                if new:
                    stored.append(r.record)
                    self._accepted(r.record)
                    if self.downlink is not None:
                        self.downlink.frame_stored(rf, reason is not None)
                else:
                    self.stats.duplicates += 1
                    self.metrics.duplicates.inc()
            restore_s += t1 - t0
            store_s += time.perf_counter() - t1
        self._log_batch(stored, len(claims), restore_s, store_s)
        return len(claims), stored

    def _defer(self, deltas: list[ReceivedFrame], keys: list[ReceivedFrame], now: float,
               force: bool) -> list[ReceivedFrame]:
        """Delta frames whose reference may still come: it is neither stored nor in this batch, and
        the delta is younger than the reassembly timeout (a key frame that lost a fragment waits
        that long, while the deltas after it may complete sooner). They keep their claim, so they
        come back when its lease runs out, and are restored then, degraded if the reference never
        came. ``force`` (drain, shutdown) restores them now."""
        if force:
            return deltas
        batch = {(f.device_id, f.counter) for f in keys}
        out = []
        for f in deltas:
            ref = (f.device_id, f.ref_counter)
            young = now - f.first_seen < self.cfg.reassembly.timeout_s
            if (young and ref not in batch and f.ref_counter is not None
                    and self.store.get_reference(*ref) is None and not self.store.has_frame(*ref)):
                self.stats.deferred += 1
                log.info("device %d frame %d waits for its reference %d (claim kept for %.0f s)", f.device_id,
                         f.counter, f.ref_counter, self.cfg.reassembly.lease_s)
                continue
            out.append(f)
        return out

    def _resolve(self, frames: list[ReceivedFrame]) -> tuple[list[ReceivedFrame], list[str | None]]:
        """Delta frames resolved against their stored references (``cloud.references``); key
        frames as they are. The second list says why a frame is degraded (None: it is not)."""
        inputs: list[ReceivedFrame] = []
        why: list[str | None] = []
        for rf in frames:
            ref = None
            if is_delta(rf) and rf.ref_counter is not None:
                ref = self.store.get_reference(rf.device_id, rf.ref_counter)
            f, reason = resolve(rf, ref)
            inputs.append(f)
            why.append(reason)
            if reason is not None:
                self.stats.degraded += 1
                self.metrics.degraded.inc()
        return inputs, why

    def _accepted(self, rec: FrameRecord) -> None:
        try:
            self.replay.accept(rec.device_id, rec.counter)
        except ReplayRejected:
            pass  # another path stored it first; the store already decided
        self.stats.stored += 1
        self.stats.stored_partial += not rec.complete
        self.metrics.frames.labels(complete=str(rec.complete).lower()).inc()
        self.metrics.frame_bytes.inc(rec.wire_bytes)
        self.metrics.latency.observe(max(0.0, rec.stored_at - rec.received_at))

    def _log_batch(self, stored: list[FrameRecord], claimed: int, restore_s: float, store_s: float) -> None:
        self.stats.batches += 1
        self.stats.busy_s += restore_s + store_s
        self.metrics.restore_seconds.observe(restore_s)
        self.metrics.batch_size.observe(claimed)
        if not stored:
            return
        lat = sorted(r.stored_at - r.received_at for r in stored)
        log.info("batch: stored %d/%d frames from %d devices; restore+decode %.0f ms, store %.0f ms, "
                 "%.1f frames/s; latency p50 %.2f s max %.2f s",
                 len(stored), claimed, len({r.device_id for r in stored}), restore_s * 1000, store_s * 1000,
                 len(stored) / max(restore_s + store_s, 1e-9), lat[len(lat) // 2], lat[-1])

    def drain(self, max_batches: int = 1_000_000) -> list[FrameRecord]:
        """Store everything pending now (partial frames included); for the demo and shutdown."""
        self.retry_held(force=True)
        out: list[FrameRecord] = []
        for _ in range(max_batches):
            claimed, got = self._process(None, True)
            if not claimed:
                break
            out += got
        return out

    # -- loops --------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, source: MessageSource | None = None) -> None:
        """Batch loop in a thread; the ingest loop (if ``source``) here, until ``stop`` is set."""
        batcher = threading.Thread(target=self.batch_loop, args=(stop,), name="tokencast-batch", daemon=True)
        batcher.start()
        try:
            if source is not None:
                self.ingest_loop(source, stop)
            else:
                stop.wait()
        finally:
            stop.set()
            batcher.join()

    def ingest_loop(self, source: MessageSource, stop: threading.Event) -> None:
        poll = self.cfg.batch.poll_ms / 1000
        while not stop.is_set():
            if self._held:  # store down: let the broker keep the rest until it recovers
                if not self.retry_held():
                    stop.wait(min(0.1, max(0.0, self._retry_at - self.clock())))
                continue
            msg = source.recv_message(timeout=poll)
            if msg is None:
                continue
            msgs = [msg]
            while len(msgs) < INGEST_CHUNK:
                more = source.recv_message(timeout=0)
                if more is None:
                    break
                msgs.append(more)
            self.ingest([Delivery(m.payload, m.ack, 0.0, getattr(m, "device_id", None))  # type: ignore[attr-defined]
                         for m in msgs])

    def drain_source(self, source: MessageSource, *, idle_s: float = 1.0, max_s: float = 30.0) -> tuple[int, bool]:
        """Stage and acknowledge whatever ``source`` still delivers until it is quiet for ``idle_s``.

        Used after ``unsubscribe``: the broker stops adding to this session but still sends what
        it had queued for it. Returns (deliveries taken, whether it went quiet); it stops early,
        not quiet, at ``max_s`` or while the store fails (the rest stays with the broker).
        """
        taken, deadline = 0, time.monotonic() + max_s
        while time.monotonic() < deadline:
            if self._held and not self.retry_held(force=True):
                return taken, False
            msg = source.recv_message(timeout=idle_s)
            if msg is None:
                return taken, True
            msgs = [msg]
            while len(msgs) < INGEST_CHUNK and (more := source.recv_message(timeout=0)) is not None:
                msgs.append(more)
            self.ingest([Delivery(m.payload, m.ack, 0.0, getattr(m, "device_id", None))  # type: ignore[attr-defined]
                         for m in msgs])
            taken += len(msgs)
        return taken, False

    def leave(self, source: object, *, max_s: float = 30.0) -> bool:
        """Leave the shared group for good without stranding anything (scale-down, adoption).

        Unsubscribe, stage what the broker still sends, then end the session at the broker
        (expiry 0) so it stops collecting a share of the stream. If the store fails meanwhile
        the session is kept (closed normally): the broker keeps the unacknowledged messages
        for whoever resumes or adopts it. True when the session was ended.
        """
        unsubscribed = source.unsubscribe()  # type: ignore[attr-defined]
        taken, quiet = self.drain_source(source, max_s=max_s)  # type: ignore[arg-type]
        # end the session only when nothing can be left in it: ending it drops what it still holds
        end = unsubscribed and quiet and not self._held
        source.close(end_session=end)  # type: ignore[attr-defined]
        log.info("left the shared group as %s: %d late deliveries staged, session %s",
                 getattr(getattr(source, "cfg", None), "client_id", "?"), taken,
                 "ended" if end else "kept (store failing, still delivering, or unsubscribe unconfirmed)")
        return end

    def batch_loop(self, stop: threading.Event) -> None:
        poll = self.cfg.batch.poll_ms / 1000
        max_wait = self.cfg.batch.max_wait_ms / 1000
        backoff = RETRY_MIN_S
        while not stop.is_set():
            try:
                now = self.clock()
                n, oldest = self.store.ready(now, self.cfg.reassembly.timeout_s)
                self.metrics.queue_depth.set(self.store.pending_frames())
                self._maybe_summary()
                if n and oldest is not None and (n >= self.cfg.batch.max_batch or now - oldest >= max_wait):
                    self._process(now, False)
                    backoff = RETRY_MIN_S
                    continue
                wait = poll if not n or oldest is None else min(poll, max(0.001, oldest + max_wait - now))
                stop.wait(wait)
            except StoreError as exc:
                log.error("store failed in the batch loop (%s: %s); retrying in %.1f s", exc.reason, exc, backoff)
                stop.wait(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)
            except Exception:
                log.exception("restore batch failed; its frames were released for a retry")
                stop.wait(1.0)

    def _maybe_summary(self) -> None:
        t, n = self._summary
        now = time.monotonic()
        if now - t >= SUMMARY_EVERY_S:
            s = self.stats
            log.info("worker %s: %d frames stored (%.2f frames/s over the last %.0f s), %d partial, "
                     "%d duplicates, rejected %s, %d batches", self.owner, s.stored, (s.stored - n) / (now - t),
                     now - t, s.stored_partial, s.duplicates, s.rejected or "none", s.batches)
            self._summary = (now, s.stored)


def build_worker(cfg: CloudConfig, *, store: Store | None = None, codecs: Mapping[int, Codec] | None = None,
                 metrics: Metrics | None = None) -> Worker:
    """A worker from config: opens the store and loads the models unless given."""
    return Worker(cfg, store if store is not None else make_store(cfg.store),
                  codecs if codecs is not None else load_codecs(cfg), metrics=metrics)
