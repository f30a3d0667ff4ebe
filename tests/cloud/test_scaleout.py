"""Scale-out, short versions of the scripts in CI: real PostgreSQL, real Mosquitto, worker processes.

``benchmarks/scaleout_drill.py`` (3 workers, one SIGKILLed and restarted, one SIGKILLed for good,
one scaled down with SIGTERM, the broker restarted) with 4 cameras for 24 s and restore disabled,
and ``benchmarks/worker_starts.py`` (workers released at one instant on a store nobody opened
yet) with 6 workers x 2 rounds per backend. The full runs (20 cameras x 60 s with the
random-init model; 20 starts x 10 rounds) are the scripts' defaults; figures in RELIABILITY.md.
"""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import scaleout_drill, worker_starts
from benchmarks.local_postgres import PostgresUnavailable, find_bindir

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_servers(mosquitto):  # mosquitto: skips with its reason when the broker is absent
    pytest.importorskip("psycopg", reason="psycopg 3 not installed (pip install -e '.[cloud]')")
    try:
        find_bindir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) not found")


def test_short_drill_loses_nothing_stores_nothing_twice_and_leaves_no_orphan_session(tmp_path):
    out = tmp_path / "drill.json"
    rc = scaleout_drill.main(["--codec", "null", "--cameras", "4", "--seconds", "24", "--rate", "2",
                              "--adopt-after", "5", "--drain-timeout", "90", "--out", str(out)])
    r = json.loads(out.read_text())
    print(f"\nscale-out drill (short): {json.dumps({k: v for k, v in r.items() if k != 'events'})}")
    assert rc == 0
    assert r["sent"] >= 150 and r["evicted_by_outbox"] == 0
    assert r["stored"] == r["stored_unique"] == r["sent"] and r["lost"] == 0 and r["stored_twice"] == 0
    assert r["stored_partial"] == 0 and r["fragments_missing_in_stored"] == 0  # no frame degraded
    assert len(r["sessions_adopted"]) == 2  # w1's old session and w2's, both dead
    assert r["sessions_ended_by_leave"] == 3  # w3's own leave plus the two adoptions
    assert r["sessions_left_in_registry"] == 1 and r["workers_alive_at_end"] == ["w1b"]
    assert set(r["stored_by_worker"]) >= {"w1b", "w3"} and r["end_pending"] == 0 and r["rejects"] == {}


def test_simultaneous_worker_starts_on_one_sqlite_file_and_one_postgres_database(tmp_path):
    out = tmp_path / "starts.json"
    rc = worker_starts.main(["--store", "both", "--workers", "6", "--rounds", "2", "--out", str(out)])
    r = json.loads(out.read_text())
    for kind in ("sqlite", "postgresql"):
        assert r[kind]["starts"] == 12 and r[kind]["failed_starts"] == 0, r[kind]
        assert all(x["locked_errors"] == 0 and x["sessions_left"] == 0 for x in r[kind]["rounds"])
    assert rc == 0
