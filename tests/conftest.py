"""Shared fixtures: a small golden frame and key, hypothesis profiles, and a real Mosquitto broker."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Fuzz tests are deterministic (derandomize) and sized for CI; TOKENCAST_FUZZ_SCALE=10 digs deeper.
settings.register_profile(
    "tokencast", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("tokencast")

GOLDEN_KEY = bytes(range(16))
GOLDEN_DEVICE = 0x01020304


@pytest.fixture
def golden_frame():
    from link.frame import Frame

    kept = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    return Frame(device_id=GOLDEN_DEVICE, counter=5, capture_ms=1_700_000_000_000, width=32, height=16,
                 tokenizer_id=1, grid_h=2, grid_w=4, kept=kept, indices=np.array([1, 2, 1023, 512]))


@pytest.fixture
def golden_key() -> bytes:
    return GOLDEN_KEY


def make_frame(seed: int = 0, *, grid=(64, 96), keep=0.33, device_id=7, counter=1, clustered=False):
    """A frame like the edge sends: 64x96 grid, a third kept (random or one blob)."""
    from link.frame import Frame

    rng = np.random.default_rng(seed)
    gh, gw = grid
    if clustered:
        yy, xx = np.mgrid[:gh, :gw]
        kept = ((yy - gh / 2) / gh) ** 2 + ((xx - gw / 2) / gw) ** 2 < keep / 3.14
    else:
        kept = rng.random(grid) < keep
    return Frame.from_index_grid(rng.integers(0, 1024, size=grid), kept, device_id=device_id, counter=counter,
                                 capture_ms=1_700_000_000_000 + seed, width=gw * 8, height=gh * 8, tokenizer_id=1)


@pytest.fixture
def frame_factory():
    return make_frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A Mosquitto on a loopback port with on-disk persistence, restartable on the same port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            # run as the invoking user: mosquitto started as root would drop to "mosquitto",
            # which cannot write the persistence file into pytest's private tmp dir
            f"user {getpass.getuser()}\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto binary not installed")
    broker = Broker(binary, tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One real PostgreSQL server for the session (Debian's package) on a free loopback port and a
    private socket folder; each test takes its own database from it (``pg_url``)."""
    from benchmarks.local_postgres import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        pytest.importorskip("psycopg", reason="psycopg 3 not installed (pip install -e '.[cloud]')")
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh empty database on the session's PostgreSQL server."""
    return postgres_server.create_database()  # type: ignore[attr-defined]
