"""Durable outbox between selection and the radio: sealed fragments wait here until sent.

Why SQLite in WAL mode: one file, atomic transactions, survives kill -9 and a power cut with
``synchronous=FULL``, and no server to babysit on a camera. The frame counter lives in the same
database and is incremented in the same transaction that stores the frame's fragments, and the
fragments are packed *inside* that transaction with the counter just allocated: so a frame is
either stored with its counter or neither happened, a restart never reuses a counter, and a
replay after a crash sends the very bytes that were sealed the first time. With a
``counter_file`` (the service always passes one) a high-water mark outside the database keeps
counters growing even when the database is lost (``edge.counter_mark``).

Fragments are deleted one by one, only after the transport confirmed each send (at-least-once:
a crash between a send and its delete resends the same bytes under the same counter, which the
cloud's reassembly deduplicates). The outbox is bounded by frame count and bytes; when full, the
``drop-oldest`` policy evicts the oldest frame, ``keep-semantic`` the frame with the least
semantic content (oldest first among equals). A full disk raises ``OutboxFull`` and rolls back,
leaving the database intact; the next enqueue after space returns succeeds.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value INTEGER)          -- 'schema', 'next_counter'
    frames(counter INTEGER PRIMARY KEY, capture_ms, semantic REAL, nbytes, enqueued_ms)
    fragments(counter, idx, data BLOB, PRIMARY KEY(counter, idx))
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .counter_mark import CounterMark, CounterMarkError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SQLITE_FULL = 13
Policy = Literal["drop-oldest", "keep-semantic"]
POLICIES: tuple[str, ...] = ("drop-oldest", "keep-semantic")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    counter INTEGER PRIMARY KEY,
    capture_ms INTEGER NOT NULL,
    semantic REAL NOT NULL,
    nbytes INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fragments (
    counter INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (counter, idx)
) WITHOUT ROWID;
"""


class OutboxError(Exception):
    """Base class of outbox failures."""


class StorageError(OutboxError):
    """The outbox database cannot be read or written (I/O error, corruption, permissions)."""


class OutboxFull(StorageError):
    """No space left for the outbox (disk full or the page limit reached); nothing was written."""


class FrameTooLarge(OutboxError):
    """One frame alone is larger than the outbox's ``max_bytes``."""


@dataclass(frozen=True)
class Packed:
    """What a packer returns for one counter: the sealed fragments and a semantic score."""

    fragments: Sequence[bytes]
    semantic: float = 0.0


@dataclass(frozen=True)
class Pending:
    """The oldest frame with fragments still to send."""

    counter: int
    capture_ms: int
    fragments: list[tuple[int, bytes]]  # (index, sealed bytes), in index order


@dataclass(frozen=True)
class Enqueued:
    counter: int
    nbytes: int
    evicted: list[int] = field(default_factory=list)  # counters dropped to make room


@dataclass(frozen=True)
class OutboxStats:
    frames: int
    nbytes: int
    next_counter: int


class Outbox:
    """A bounded, durable FIFO of sealed frames; safe to share between two threads."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_frames: int = 1000,
        max_bytes: int = 10_000_000,
        policy: Policy = "drop-oldest",
        first_counter: int = 1,
        counter_file: str | Path | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"outbox policy {policy!r} is not one of {', '.join(POLICIES)}")
        self.path = Path(path)
        self.max_frames, self.max_bytes, self.policy = max_frames, max_bytes, policy
        self._lock = threading.Lock()
        self._floor = 0  # lowest counter this process may still hand out
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and a
            # lost counter increment after its fragments went on air would reuse a nonce.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?), ('next_counter', ?)",
                (SCHEMA_VERSION, first_counter),
            )
            schema = self._meta("schema")
        except sqlite3.Error as exc:
            self._db.close()
            raise _storage_error(exc, f"cannot initialise outbox {self.path}") from exc
        if schema != SCHEMA_VERSION:
            self._db.close()
            raise StorageError(f"outbox {self.path} has schema {schema}, this code reads {SCHEMA_VERSION}")
        # the high-water mark outlives the database (edge/counter_mark.py): never start below it
        self._mark: CounterMark | None = None
        if counter_file is not None:
            try:
                self._mark = CounterMark(counter_file)
            except CounterMarkError as exc:
                self._db.close()
                raise StorageError(str(exc)) from exc
            stored = self._meta("next_counter")
            if self._mark.limit > stored:
                self._floor = self._mark.limit
                log.info("outbox: counters continue at %d (high-water mark %s; the database said %d)",
                         self._floor, counter_file, stored)

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    @property
    def next_counter(self) -> int:
        with self._lock:
            return max(self._meta("next_counter"), self._floor)

    def enqueue(self, build: Callable[[int], Packed], *, capture_ms: int) -> Enqueued:
        """Allocate a counter, call ``build(counter)`` and store its fragments, atomically.

        If ``build`` raises, or the disk is full, nothing is stored. The counter handed to
        ``build`` is still never handed out again by this process (the sealer may have used it);
        after a restart it may be, which is safe because nothing sealed under it left the process.
        Evicts frames per the policy when the bounds are exceeded.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _storage_error(exc, "cannot start an outbox transaction") from exc
            try:
                counter = max(self._meta("next_counter"), self._floor)
                self._floor = counter + 1
                if self._mark is not None:
                    self._mark.reserve(counter)  # on disk before the sealer uses the counter as a nonce
                packed = build(counter)
                if not packed.fragments:
                    raise ValueError(f"frame {counter} has no fragments; nothing to store")
                nbytes = sum(len(f) for f in packed.fragments)
                if nbytes > self.max_bytes:
                    raise FrameTooLarge(f"frame {counter} is {nbytes} bytes, outbox max_bytes is {self.max_bytes}")
                self._db.execute(
                    "INSERT INTO frames VALUES (?, ?, ?, ?, ?)",
                    (counter, capture_ms, float(packed.semantic), nbytes, int(time.time() * 1000)),
                )
                self._db.executemany(
                    "INSERT INTO fragments VALUES (?, ?, ?)",
                    [(counter, i, bytes(f)) for i, f in enumerate(packed.fragments)],
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_counter'", (counter + 1,))
                evicted = self._evict()
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc, "cannot store frame in outbox") from exc
                if isinstance(exc, CounterMarkError):
                    raise StorageError(str(exc)) from exc
                raise
        for victim, semantic in evicted:
            log.warning(
                "outbox full (max %d frames, %d bytes): dropped frame %d (semantic %.3f, policy %s)",
                self.max_frames, self.max_bytes, victim, semantic, self.policy,
            )
        return Enqueued(counter, nbytes, [v for v, _ in evicted])

    def _evict(self) -> list[tuple[int, float]]:
        order = "counter" if self.policy == "drop-oldest" else "semantic, counter"
        evicted: list[tuple[int, float]] = []
        while True:
            frames = self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
            nbytes = self._db.execute("SELECT COALESCE(SUM(length(data)), 0) FROM fragments").fetchone()[0]
            if frames <= self.max_frames and nbytes <= self.max_bytes:
                return evicted
            victim, semantic = self._db.execute(
                f"SELECT counter, semantic FROM frames ORDER BY {order} LIMIT 1"
            ).fetchone()
            self._delete_frame(victim)
            evicted.append((victim, semantic))

    def _delete_frame(self, counter: int) -> None:
        self._db.execute("DELETE FROM fragments WHERE counter = ?", (counter,))
        self._db.execute("DELETE FROM frames WHERE counter = ?", (counter,))

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. after SQLITE_FULL)

    def peek(self) -> Pending | None:
        """The oldest frame that still has fragments to send, or None when empty."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT counter, capture_ms FROM frames ORDER BY counter LIMIT 1"
                ).fetchone()
                if row is None:
                    return None
                frags = self._db.execute(
                    "SELECT idx, data FROM fragments WHERE counter = ? ORDER BY idx", (row[0],)
                ).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc, "cannot read outbox") from exc
        return Pending(int(row[0]), int(row[1]), [(int(i), bytes(d)) for i, d in frags])

    def ack(self, counter: int, idx: int) -> None:
        """Fragment ``idx`` of frame ``counter`` was sent; delete it (and the frame when empty)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM fragments WHERE counter = ? AND idx = ?", (counter, idx))
                left = self._db.execute(
                    "SELECT COUNT(*) FROM fragments WHERE counter = ?", (counter,)
                ).fetchone()[0]
                if left == 0:
                    self._db.execute("DELETE FROM frames WHERE counter = ?", (counter,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise _storage_error(exc, f"cannot acknowledge frame {counter} fragment {idx}") from exc

    def stats(self) -> OutboxStats:
        with self._lock:
            try:
                frames = self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
                nbytes = self._db.execute("SELECT COALESCE(SUM(length(data)), 0) FROM fragments").fetchone()[0]
                return OutboxStats(int(frames), int(nbytes), max(self._meta("next_counter"), self._floor))
            except sqlite3.Error as exc:
                raise _storage_error(exc, "cannot read outbox") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _storage_error(exc: sqlite3.Error, what: str) -> StorageError:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; 3.10 only has the message
    if code == SQLITE_FULL or "full" in str(exc).lower():
        return OutboxFull(f"{what}: no space left ({exc}); the frame was not stored")
    return StorageError(f"{what}: {exc}")
