"""A throwaway PostgreSQL server on 127.0.0.1 for tests and drills (Debian's ``postgresql`` package).

``initdb`` into a private folder, ``postgres`` on a free loopback port with its Unix socket in
that folder (never the system's /var/run/postgresql), trust authentication because only this
machine's loopback can reach it, ``fsync`` left on so a drill measures a real commit. PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres`` system user the
package creates, in a folder under /tmp that user can enter. Stopped with ``pg_ctl stop -m fast``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (or no user to run them as); the message says which."""


def find_bindir() -> Path:
    """Folder holding ``initdb``, ``pg_ctl`` and ``postgres``: Debian keeps them off PATH."""
    found = shutil.which("initdb")
    if found and Path(found).resolve().parent.joinpath("pg_ctl").exists():
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                            reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                              "install Debian's postgresql package (scripts/apt-deps.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL cluster for the life of this object: ``start()``, ``create_database()``, ``stop()``."""

    def __init__(self, workdir: Path | None = None) -> None:
        """``workdir``: where the cluster lives (ignored under root, which needs a folder in /tmp)."""
        self.bindir = find_bindir()
        self._prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user to run the "
                                          "server as (PostgreSQL refuses root)") from None
            self._prefix = ["runuser", "-u", "postgres", "--"]
        if owner is not None or workdir is None:
            # under root the folder must be one the postgres user can enter: pytest's tmp is 0700 root
            self.root = Path(tempfile.mkdtemp(prefix="tokencast-pg-", dir="/tmp" if owner is not None else None))
        else:
            self.root = Path(workdir)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            for p in (self.root, self.socket_dir):
                os.chown(p, owner.pw_uid, owner.pw_gid)
            os.chmod(self.root, 0o700)
        self.port = _free_port()
        self.user = "postgres" if owner is not None else pwd.getpwuid(os.geteuid()).pw_name
        self._started = False
        self._dbs = 0

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._prefix, *args], capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> LocalPostgres:
        if not self.data.exists():
            r = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                          "-E", "UTF8", "--no-instructions")
            if r.returncode:
                raise RuntimeError(f"initdb failed: {r.stderr[-2000:]}")
        opts = (f"-c listen_addresses={LOOPBACK} -c port={self.port} -c unix_socket_directories={self.socket_dir} "
                f"-c max_connections=200 -c shared_buffers=32MB")
        r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                      "-o", opts, "-w", "-t", "60", "start")
        if r.returncode:
            log = (self.root / "postgres.log").read_text() if (self.root / "postgres.log").exists() else ""
            raise RuntimeError(f"postgres did not start: {r.stderr[-1000:]} {log[-2000:]}")
        self._started = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if self._started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
            self._started = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._dbs += 1
        name = name or f"tokencast_{os.getpid()}_{self._dbs}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
