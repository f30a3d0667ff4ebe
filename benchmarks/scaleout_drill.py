"""Scale-out drill: several worker processes, one PostgreSQL, one Mosquitto, shared subscriptions.

    python -m benchmarks.scaleout_drill --out runs/scaleout/drill.json                 # the drill
    python -m benchmarks.scaleout_drill --throughput --out runs/scaleout/throughput.json

Everything is real and on 127.0.0.1: a PostgreSQL server (``benchmarks.local_postgres``), a
Mosquitto broker with persistence, ``tokencast cloud serve`` processes (random-init codec, 64x64
pictures = an 8x8 token grid, LoRa-sized fragments, so the shared subscription splits most
frames between workers), and cameras that are the edge's real sending half (outbox + sender +
MQTT publisher, one connection each). Timeline over ``--seconds`` (fractions of it):

* 0: workers w1, w2, w3 up, cameras capturing at ``--rate`` frames/s each;
* 0.15: w1 SIGKILLed, restarted at 0.25 (a new process: new default client id, so its old
  session is adopted by a live worker);
* 0.40: the broker restarted (SIGTERM, same port, persistence on);
* 0.55: w2 SIGKILLed and never restarted (its session is adopted);
* 0.70: w3 scaled down with SIGTERM (it leaves the group and ends its session);
* 1.0: cameras stop; wait until every frame is stored or ``--drain-timeout``.

Reported: frames sent / stored / stored twice / lost / stored partial (a frame is *degraded*
when it was sent whole but stored with slices missing), duplicate deliveries the store
dropped, per-worker counts, sessions adopted, sessions left in the registry. ``--no-fix``
runs the same timeline with the fixes off (no leave on SIGTERM, no adoption, cameras take a
"no matching subscribers" PUBACK as delivered); ``--no-leave``, ``--no-adopt``, ``--no-retry``
turn off one each, and ``--session-expiry`` tries a short session expiry instead, to show what
each one is for.

``--throughput``: a burst of ``--burst`` frames through 1 worker, then through 3, each on a
fresh database; frames/s from the first capture to the last frame stored.

Writes one JSON object (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.load_test import LOOPBACK, Camera, LocalBroker, WorkerProcess, write_keys

IMAGE = 64


def drill_toml(workdir: Path, name: str, port: int, store: str, *, timeout_s: float = 30.0, lease_s: float = 15.0,
               adopt_after_s: float = 8.0, leave_s: float = 20.0, steps: int = 1, max_batch: int = 16,
               client_id: str = "", session_expiry_s: int = 7 * 24 * 3600) -> Path:
    """A worker config: shared group, the given store (a URL, or a SQLite path), default client id."""
    store_table = (f'url = "{store}"' if "://" in store else f'path = "{store}"')
    path = workdir / f"{name}.toml"
    path.write_text(f"""
source = "mqtt"
worker_id = "{name}"
[broker]
host = "{LOOPBACK}"
port = {port}
client_id = "{client_id}"
group = "drill"
heartbeat_s = 1.0
adopt_after_s = {adopt_after_s}
leave_timeout_s = {leave_s}
session_expiry_s = {session_expiry_s}
[security]
keys_dir = "{workdir / 'keys'}"
[store]
{store_table}
image_dir = "{workdir / 'frames'}"
pool_size = 3
[batch]
max_batch = {max_batch}
max_wait_ms = 50
[restore]
steps = {steps}
[model]
device = "cpu"
random_init = true
[reassembly]
timeout_s = {timeout_s}
lease_s = {lease_s}
[metrics]
enabled = false
[dashboard]
enabled = false
""")
    return path


class Services:
    """PostgreSQL (unless SQLite) + Mosquitto + keys in one temporary folder."""

    def __init__(self, args: argparse.Namespace, devices: list[int]) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="tokencast-drill-"))
        write_keys(self.workdir / "keys", devices)
        self.pg = None
        if args.store == "postgresql":
            from benchmarks.local_postgres import LocalPostgres

            self.pg = LocalPostgres().start()
        self.broker = LocalBroker(self.workdir)
        self.broker.start()
        self.n_db = 0

    def fresh_store(self) -> str:
        self.n_db += 1
        if self.pg is not None:
            return self.pg.create_database(f"drill{self.n_db}")
        return str(self.workdir / f"drill{self.n_db}.db")

    def open_store(self, store: str):
        from cloud.config import StoreConfig
        from cloud.store import make_store

        cfg = StoreConfig(url=store, image_dir=self.workdir / "frames") if "://" in store else \
            StoreConfig(path=Path(store), image_dir=self.workdir / "frames")
        return make_store(cfg)

    def close(self, keep: bool) -> None:
        self.broker.stop()
        if self.pg is not None:
            self.pg.cleanup()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _stop_all(workers: list[WorkerProcess]) -> list[str]:
    """SIGTERM every worker; one still running after 45 s dumps its stacks (SIGUSR1) and is killed."""
    for w in workers:
        if w.alive():
            w.proc.send_signal(signal.SIGTERM)
    hung = []
    deadline = time.monotonic() + 45
    for w in workers:
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            hung.append(w.log.stem)
            w.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            w.proc.kill()
            w.proc.wait()
    if hung:
        print(f"workers that did not stop on SIGTERM within 45 s (stacks in their logs): {hung}", flush=True)
    return hung


def drill(args: argparse.Namespace) -> dict[str, object]:
    devices = list(range(1, args.cameras + 1))
    svc = Services(args, devices)
    if args.no_fix:
        args.no_leave = args.no_adopt = args.no_retry = True
    fixes = [name for name, off in (("leave", args.no_leave), ("adopt", args.no_adopt), ("retry", args.no_retry))
             if not off]
    workers: list[WorkerProcess] = []
    cams: list[Camera] = []
    events: list[dict[str, object]] = []
    store = None
    t0 = time.monotonic()

    def event(what: str) -> None:
        events.append({"t": round(time.monotonic() - t0, 1), "event": what})
        print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)

    try:
        url = svc.fresh_store()

        def start(name: str) -> WorkerProcess:
            toml = drill_toml(svc.workdir, name, svc.broker.port, url, adopt_after_s=0 if args.no_adopt else args.adopt_after,
                              leave_s=0 if args.no_leave else 20.0, timeout_s=args.reassembly_timeout, steps=args.steps,
                              session_expiry_s=args.session_expiry)
            w = WorkerProcess(svc.workdir, toml, name=name, codec=args.codec)
            workers.append(w)
            return w

        first = [start(n) for n in ("w1", "w2", "w3")]
        for w in first:
            w.wait_consuming()
        store = svc.open_store(url)
        cams = [Camera(d, svc.broker.port, svc.workdir, outbox_frames=100_000, require_subscriber=not args.no_retry)
                for d in devices]
        for c in cams:
            c.start()
        t0 = time.monotonic()
        event("cameras on")
        for c in cams:
            c.rate = args.rate
        w1, w2, w3 = first
        plan = [(0.15, "SIGKILL w1", lambda: (w1.proc.send_signal(signal.SIGKILL), w1.proc.wait())),
                (0.25, "restart w1 as a new process (w1b)", lambda: start("w1b")),
                (0.40, "broker restart", lambda: (svc.broker.stop(), svc.broker.start())),
                (0.55, "SIGKILL w2 (never restarted)", lambda: (w2.proc.send_signal(signal.SIGKILL), w2.proc.wait())),
                (0.70, "SIGTERM w3 (scale down)", lambda: w3.stop(60))]
        for frac, what, action in plan:
            while time.monotonic() - t0 < frac * args.seconds:
                time.sleep(0.1)
            event(what)
            action()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(0.2)
        for c in cams:
            c.rate = 0.0
        event("cameras stop capturing")
        sent_n = sum(len(c.stats.enqueued) for c in cams)
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            if store.count_frames() >= sent_n and store.pending_frames() == 0 and \
                    not sum(c.outbox.stats().frames for c in cams):
                break
            time.sleep(1.0)
        time.sleep(2.0)  # anything arriving now would be a second store
        event("drained" if store.count_frames() >= sent_n else "drain timeout")
        for c in cams:
            c.close(drain_s=2)
        frames = store.list_frames(limit=10_000_000)
        keys = [f.key for f in frames]
        sent = {(c.device_id, n) for c in cams for n, _ in c.stats.enqueued}
        evicted = {(c.device_id, n) for c in cams for n in c.stats.evicted}
        logs = {w.log.stem: w.log.read_text() for w in workers}
        adopted = sorted({m for text in logs.values() for m in re.findall(r"MQTT session (\S+) of worker", text)})
        leaves = [m for text in logs.values() for m in re.findall(r"left the shared group as .*", text)]
        left = sum(m.endswith("session ended") for m in leaves)
        with_pid = {f.worker for f in frames}
        result: dict[str, object] = {
            "fixes_on": fixes, "session_expiry_s": args.session_expiry, "store": args.store, "cameras": args.cameras,
            "seconds": args.seconds, "rate_per_camera": args.rate, "image": IMAGE, "codec": args.codec,
            "restore_steps": args.steps, "reassembly_timeout_s": args.reassembly_timeout, "cpu_count": os.cpu_count(),
            "events": events,
            "sent": len(sent), "evicted_by_outbox": len(evicted), "stored": len(keys), "stored_unique": len(set(keys)),
            "stored_twice": len(keys) - len(set(keys)), "lost": len(sent - evicted - set(keys)),
            "stored_never_sent": len(set(keys) - sent),
            "stored_partial": sum(not f.complete for f in frames),
            "fragments_missing_in_stored": sum(f.fragments_total - f.fragments_received for f in frames),
            "duplicate_deliveries_dropped": sum(d.duplicates for d in store.list_devices()),
            "stored_by_worker": {w: sum(f.worker == w for f in frames) for w in sorted(with_pid)},
            "sessions_adopted": adopted, "sessions_ended_by_leave": left, "leaves": leaves,
            "sessions_left_in_registry": len(_sessions(store)),
            "end_pending": store.pending_frames(),
            "rejects": store.quarantine_counts(),
            "workers_alive_at_end": sorted(w.log.stem for w in workers if w.alive()),
        }
        return result
    finally:
        for c in cams:
            if not c.stop.is_set():
                c.stop.set()
                c.sender.close()
        _stop_all(workers)
        if store is not None:
            store.close()
        svc.close(args.keep)


def _sessions(store) -> list[object]:
    """Registrations left in the store (a clean end leaves only the live workers')."""
    return list(store._read("SELECT client_id FROM sessions"))


def throughput(args: argparse.Namespace) -> dict[str, object]:
    devices = list(range(1, args.cameras + 1))
    svc = Services(args, devices)
    runs = []
    try:
        for n_workers in (1, 3):
            url = svc.fresh_store()
            workers = [WorkerProcess(svc.workdir, drill_toml(svc.workdir, f"t{n_workers}-{i}", svc.broker.port, url,
                                                             steps=args.steps, timeout_s=60.0),
                                     name=f"t{n_workers}-{i}", codec=args.codec) for i in range(n_workers)]
            store = cams = None
            try:
                for w in workers:
                    w.wait_consuming()
                store = svc.open_store(url)
                (svc.workdir / f"run{n_workers}").mkdir(exist_ok=True)
                cams = [Camera(d, svc.broker.port, svc.workdir / f"run{n_workers}", outbox_frames=100_000)
                        for d in devices]
                for c in cams:
                    c.start()
                t0 = time.monotonic()
                per_cam = args.burst // len(cams)
                threads = [threading.Thread(target=lambda c=c, n=per_cam: [c.capture() for _ in range(n)]) for c in cams]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                want = sum(len(c.stats.enqueued) for c in cams)
                deadline = t0 + args.drain_timeout
                while store.count_frames() < want and time.monotonic() < deadline:
                    time.sleep(0.1)
                dt = time.monotonic() - t0
                frames = store.list_frames(limit=10_000_000)
                runs.append({"workers": n_workers, "frames": want, "stored": len(frames), "seconds": round(dt, 1),
                             "frames_per_s": round(len(frames) / dt, 2),
                             "stored_partial": sum(not f.complete for f in frames),
                             "by_worker": {w.log.stem: sum(f.worker == w.log.stem for f in frames) for w in workers}})
                print(json.dumps(runs[-1]), flush=True)
            finally:
                for c in cams or []:
                    c.close(drain_s=1)
                hung = _stop_all(workers)
                if runs and runs[-1]["workers"] == n_workers:
                    runs[-1]["did_not_stop"] = hung
                if store is not None:
                    store.close()
    finally:
        svc.close(args.keep)
    one, three = runs[0]["frames_per_s"], runs[1]["frames_per_s"]
    return {"mode": "throughput", "store": args.store, "cameras": args.cameras, "burst": args.burst, "image": IMAGE,
            "codec": args.codec, "restore_steps": args.steps, "cpu_count": os.cpu_count(), "runs": runs,
            "speedup_3_vs_1": round(three / one, 2) if one else None}  # type: ignore[operator]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="tokencast scale-out drill on 127.0.0.1 (see the module docstring)")
    p.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=0.5, help="frames/s per camera")
    p.add_argument("--codec", choices=("random", "null"), default="random")
    p.add_argument("--steps", type=int, default=1, help="restore steps of the random-init codec")
    p.add_argument("--reassembly-timeout", type=float, default=30.0)
    p.add_argument("--adopt-after", type=float, default=8.0, help="broker.adopt_after_s of the workers")
    p.add_argument("--drain-timeout", type=float, default=240.0)
    p.add_argument("--no-fix", action="store_true", help="the same timeline with leave, adoption and the "
                                                         "no-subscriber retry off")
    p.add_argument("--no-leave", action="store_true", help="SIGTERM closes the connection, the session stays")
    p.add_argument("--no-adopt", action="store_true", help="dead workers' sessions are not adopted")
    p.add_argument("--no-retry", action="store_true", help="cameras take a 'no matching subscribers' PUBACK "
                                                           "as delivered")
    p.add_argument("--session-expiry", type=int, default=7 * 24 * 3600,
                   help="the workers' MQTT session expiry (s): a short one is the other candidate fix")
    p.add_argument("--throughput", action="store_true", help="burst through 1 worker, then 3")
    p.add_argument("--burst", type=int, default=600)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = throughput(args) if args.throughput else drill(args)
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    if args.throughput:
        return 0
    ok = result["lost"] == 0 and result["stored_twice"] == 0 and result["stored_partial"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
