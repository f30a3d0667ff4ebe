"""Junk flood: does a bounded quarantine keep the store's disk in check while good frames still land?

    python -m benchmarks.quarantine_flood --junk 1000 --junk-bytes 1000000 --out runs/quarantine_flood.json

Everything real but the codec: a Mosquitto on 127.0.0.1 (no size limit, the worst case: the
shipped broker config caps packets at 16 KB), ``tokencast cloud serve`` in its own process on
the SQLite store with the ``[store.quarantine]`` bounds given here (default: the shipped
defaults), and a publisher that sends ``--junk`` random messages of ``--junk-bytes`` on a
device's uplink topic, with one sealed good frame of device 1 after every ``--every`` junk
messages. Restore is disabled (``load_test.NullCodec``): the run measures delivery and disk,
not pictures.

Sampled every 0.2 s: the bytes on disk under the store folder (database, WAL, PNGs). Reported:
junk sent (messages, bytes), what the quarantine holds and its lifetime truncated/evicted
counts, the disk maximum, good frames sent and stored, and whether the worker survived. Writes
one JSON object (``--out``) and prints it; exit 0 when every good frame was stored and the disk
stayed under ``--disk-limit-bytes``, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.load_test import (
    LOOPBACK,
    LocalBroker,
    WorkerProcess,
    device_key,
    make_frame,
    worker_toml,
    write_keys,
)
from link.packet import pack
from link.security import Sealer

GOOD_DEVICE, JUNK_DEVICE = 1, 2


def disk_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # a WAL or a temp PNG gone between listing and stat
                pass
    return total


class DiskSampler:
    def __init__(self, folder: Path, every_s: float = 0.2) -> None:
        self.folder, self.every, self.max = folder, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max = max(self.max, disk_bytes(self.folder))
            self._stop.wait(self.every)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.max = max(self.max, disk_bytes(self.folder))


def quarantine_toml(args: argparse.Namespace) -> str:
    return (f"\n[store.quarantine]\nmax_entry_bytes = {args.max_entry_bytes}\n"
            f"max_total_bytes = {args.max_total_bytes}\nmax_entries = {args.max_entries}\n")


def read_store(workdir: Path) -> tuple[int, dict[str, int]]:
    """(good frames stored, quarantine usage) read from the worker's database."""
    from cloud.store.sqlite import SqliteStore

    with SqliteStore(workdir / "store" / "tokencast.db", workdir / "store" / "frames") as store:
        u = store.quarantine_usage()
        return store.count_frames(GOOD_DEVICE), {"entries": u.entries, "bytes": u.bytes, "truncated": u.truncated,
                                                 "evicted": u.evicted}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    write_keys(workdir / "keys", [GOOD_DEVICE])
    broker = LocalBroker(workdir)
    broker.start()
    toml = worker_toml(workdir, broker.port, name="flood")
    toml.write_text(toml.read_text() + quarantine_toml(args))
    worker = WorkerProcess(workdir, toml, name="flood", codec="null")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood-publisher")
    sealer = Sealer(device_key(GOOD_DEVICE), GOOD_DEVICE)
    sent_good = junk_bytes = 0
    t0 = time.monotonic()
    try:
        worker.wait_consuming()
        client.connect(LOOPBACK, broker.port)
        client.loop_start()
        with DiskSampler(workdir / "store") as disk:
            for i in range(args.junk):
                junk = os.urandom(args.junk_bytes)
                client.publish(f"tokencast/{JUNK_DEVICE}/up", junk, qos=1).wait_for_publish(30)
                junk_bytes += len(junk)
                if (i + 1) % args.every == 0:
                    sent_good += 1
                    frame = make_frame(GOOD_DEVICE, sent_good, int(time.time() * 1000))
                    for frag in pack(frame, mtu=51, sealer=sealer):
                        client.publish(f"tokencast/{GOOD_DEVICE}/up", frag, qos=1).wait_for_publish(30)
            publish_s = time.monotonic() - t0
            deadline = time.monotonic() + args.settle_s
            stored, usage = read_store(workdir)
            while time.monotonic() < deadline and worker.alive() and (
                    stored < sent_good or usage["entries"] + usage["evicted"] < args.junk):
                time.sleep(0.5)
                stored, usage = read_store(workdir)
        alive = worker.alive()
    finally:
        client.loop_stop()
        client.disconnect()
        worker.stop()
        broker.stop()
    return {
        "junk": {"messages": args.junk, "bytes_each": args.junk_bytes, "bytes_total": junk_bytes},
        "policy": {"max_entry_bytes": args.max_entry_bytes, "max_total_bytes": args.max_total_bytes,
                   "max_entries": args.max_entries},
        "quarantine": usage, "quarantined_total": usage["entries"] + usage["evicted"],
        "store_disk_max_bytes": disk.max, "disk_limit_bytes": args.disk_limit_bytes,
        "good_frames": {"sent": sent_good, "stored": stored}, "worker_alive": alive,
        "publish_s": round(publish_s, 2), "elapsed_s": round(time.monotonic() - t0, 2),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quarantine_flood", description=__doc__.splitlines()[0])
    p.add_argument("--junk", type=int, default=1000, help="junk messages (default 1000)")
    p.add_argument("--junk-bytes", type=int, default=1_000_000, help="bytes per junk message (default 1 MB)")
    p.add_argument("--every", type=int, default=50, help="a good frame after every N junk messages (default 50)")
    p.add_argument("--max-entry-bytes", type=int, default=4096, help="[store.quarantine] (default: shipped)")
    p.add_argument("--max-total-bytes", type=int, default=16 * 1024 * 1024, help="[store.quarantine]")
    p.add_argument("--max-entries", type=int, default=10_000, help="[store.quarantine]")
    p.add_argument("--disk-limit-bytes", type=int, default=64 * 1024 * 1024,
                   help="pass/fail line for the store folder's size (default 64 MiB)")
    p.add_argument("--settle-s", type=float, default=120.0, help="wait for the worker after publishing")
    p.add_argument("--out", type=Path, default=Path("runs/quarantine_flood.json"))
    p.add_argument("--workdir", type=Path, default=None, help="keep the broker and store here (default: temp)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.junk, args.junk_bytes, args.every) < 1:
        print("quarantine_flood: --junk, --junk-bytes and --every must be >= 1", file=sys.stderr)
        return 2
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="quarantine-flood-") as tmp:
            result = run(args, Path(tmp))
    good = result["good_frames"]
    result["ok"] = bool(good["sent"] == good["stored"] and result["worker_alive"]  # type: ignore[index]
                        and result["quarantined_total"] == args.junk
                        and result["store_disk_max_bytes"] <= args.disk_limit_bytes)  # type: ignore[operator]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
