"""Simultaneous worker starts: N ``tokencast cloud serve`` processes released at the same instant.

    python -m benchmarks.worker_starts --store both --workers 20 --rounds 10 --out runs/scaleout/starts.json

Each round takes a store nobody has opened yet (a new SQLite file; a new PostgreSQL database on
a local server), starts ``--workers`` worker processes that import everything first and then
wait for one shared start time, so they open the store (SQLite: WAL switch and schema;
PostgreSQL: migrations under the advisory lock), register their MQTT session and connect to
one Mosquitto within milliseconds of each other. A start counts as good when the worker logs
"consuming" and, after SIGTERM, leaves the group and exits 0. Restore is disabled in these
workers (``NullCodec``): the race is in the store and the broker, and twenty torch imports on a
small machine would only measure the CPU.

Loopback only; writes one JSON object (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.load_test import ROOT, write_keys
from benchmarks.scaleout_drill import Services, drill_toml

# imports first, then wait for the shared instant: the store open and the MQTT connect race, not the imports
LAUNCH = """
import sys, time
import cloud.cli, cloud.store.sqlite, cloud.store.postgres, cloud.sessions, link.transports.mqtt
from benchmarks.load_test import serve_null_worker
start_at = float(sys.argv[2])
while time.time() < start_at:
    time.sleep(0.001)
sys.exit(serve_null_worker(sys.argv[1]))
"""


def one_round(svc: Services, n: int, round_no: int, store_kind: str, timeout: float) -> dict[str, object]:
    store = svc.fresh_store()
    logs = [svc.workdir / f"{store_kind}-r{round_no}-w{i}.log" for i in range(n)]
    tomls = [drill_toml(svc.workdir, f"{store_kind}-r{round_no}-w{i}", svc.broker.port, store) for i in range(n)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start_at = time.time() + max(3.0, 0.6 * n)  # time for every interpreter to finish its imports
    procs = [subprocess.Popen([sys.executable, "-c", LAUNCH, str(t), repr(start_at)], cwd=ROOT, env=env,
                              stdout=log.open("wb"), stderr=subprocess.STDOUT) for t, log in zip(tomls, logs)]
    deadline = start_at + timeout
    up = [False] * n
    while time.time() < deadline and not all(up):
        for i, (p, log) in enumerate(zip(procs, logs)):
            if not up[i] and p.poll() is None and "consuming " in log.read_text():
                up[i] = True
        if all(p.poll() is not None or u for p, u in zip(procs, up)):
            break
        time.sleep(0.05)
    up_after = round(time.time() - start_at, 2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(60))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    texts = [log.read_text() for log in logs]
    failures = [{"worker": i, "rc": rc, "up": u, "tail": t[-600:]}
                for i, (rc, u, t) in enumerate(zip(codes, up, texts)) if rc != 0 or not u]
    opened = svc.open_store(store)
    try:
        sessions_left = len(opened._read("SELECT client_id FROM sessions"))  # type: ignore[attr-defined]
    finally:
        opened.close()
    return {"round": round_no, "workers": n, "up": sum(up), "all_up_after_s": up_after, "exit_codes": sorted(set(codes)),
            "failures": failures, "locked_errors": sum("database is locked" in t for t in texts),
            "sessions_left": sessions_left}


def run(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {"workers": args.workers, "rounds": args.rounds, "cpu_count": os.cpu_count()}
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    for kind in kinds:
        args.store = kind
        svc = Services(args, [1])
        write_keys(svc.workdir / "keys", [1])
        try:
            rounds = []
            for r in range(args.rounds):
                rounds.append(one_round(svc, args.workers, r, kind, args.timeout))
                print(json.dumps({k: v for k, v in rounds[-1].items() if k != "failures"}), flush=True)
            out[kind] = {"starts": args.workers * args.rounds,
                         "failed_starts": sum(len(r["failures"]) for r in rounds),  # type: ignore[arg-type]
                         "rounds": rounds}
        finally:
            svc.close(args.keep)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="simultaneous worker starts on one store (see the module docstring)")
    p.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--workers", type=int, default=20)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--timeout", type=float, default=90.0, help="seconds for every worker of a round to come up")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "rounds"} if isinstance(v, dict) else v)
                      for k, v in result.items()}))
    failed = sum(v["failed_starts"] for v in result.values() if isinstance(v, dict))  # type: ignore[index]
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
