"""``benchmarks/load_test.py`` in its short mode: 5 cameras, a few seconds per phase, loopback only.

Restore is disabled in the worker process (``--codec null``) so the run measures delivery and
queues in CI time; the full run (20 cameras, 60 s phases, random-init codec) is the script's
default and its figures are in RELIABILITY.md. Asserted: nothing lost, nothing stored twice,
the worker alive, the overload backlog bounded by what was offered beyond capacity and drained
to zero afterwards, each camera's outbox within its bound.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import load_test

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_short_load_run_loses_nothing_and_overload_backlog_is_bounded(tmp_path):
    out = tmp_path / "load.json"
    rc = load_test.main(["--cameras", "5", "--phase-seconds", "6", "--calibrate-frames", "200", "--codec", "null",
                         "--outbox-frames", "100", "--drain-timeout", "120", "--out", str(out)])
    result = json.loads(out.read_text())
    t = result["totals"]
    phases = {p["phase"]: p for p in result["phases"]}
    print(f"\nload (short): {json.dumps({k: v for k, v in result.items() if k != 'samples'})}")
    assert rc == 0
    assert result["host"] == "127.0.0.1"
    assert t["lost"] == 0 and t["stored_twice"] == 0 and t["worker_alive"]
    assert t["stored_never_sent"] == 0
    assert t["stored"] == t["sent"] - t["evicted_by_outbox_policy"] + t["evicted_partly_sent"]
    assert t["pngs"] == 2 * t["stored"]
    assert t["end_worker_pending"] == 0 and t["rejects"] == {}
    over = phases["overload"]
    offered = over["offered_fps"] * over["seconds"]
    assert over["max_worker_pending"] <= offered + phases["sustain"]["max_worker_pending"] + 50
    assert result["max_outbox_frames_per_camera"] <= result["outbox_max_frames"]
    assert phases["drain"]["end_worker_pending"] == 0
    assert {"p50", "p95", "max"} <= set(over["latency_capture_to_stored_s"])
    assert all(s["t"] >= 0 for s in result["samples"])
