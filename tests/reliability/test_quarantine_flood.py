"""100 junk messages of 1 MB through a real Mosquitto into ``tokencast cloud serve``: the store's
disk stays bounded by the quarantine policy and every good frame interleaved with them is stored.

The full 1,000 x 1 MB run is ``python -m benchmarks.quarantine_flood`` (results in
benchmarks/results/quarantine_flood*.json); this is its CI-sized run with a quota tight enough
that eviction happens.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import quarantine_flood

pytestmark = pytest.mark.broker


def test_junk_flood_is_bounded_and_good_frames_land(tmp_path):
    out = tmp_path / "flood.json"
    rc = quarantine_flood.main(["--junk", "100", "--every", "10", "--max-entry-bytes", "65536",
                                "--max-total-bytes", "500000", "--max-entries", "50",
                                "--disk-limit-bytes", str(8 * 2**20), "--out", str(out),
                                "--workdir", str(tmp_path / "work")])
    r = json.loads(out.read_text())
    assert rc == 0 and r["ok"], r
    assert r["junk"]["bytes_total"] == 100_000_000
    assert r["good_frames"] == {"sent": 10, "stored": 10} and r["worker_alive"]
    q = r["quarantine"]
    assert q["entries"] + q["evicted"] == 100 and q["truncated"] == 100 and q["evicted"] > 0
    assert q["bytes"] <= 500_000 and q["entries"] <= 50
    assert r["store_disk_max_bytes"] < 8 * 2**20  # 100 MB offered
