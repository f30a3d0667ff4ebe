"""SQLite store: WAL, one writer at a time, PNGs on disk beside the database.

Every write is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock up front, so
concurrent workers (threads or processes on one host) serialise cleanly and ``put_frame`` can
check-then-insert without a race. PNGs are written inside that transaction, before the row:
if the row cannot be written the files are removed again, so a frame row always has its
images and a failed put leaves nothing behind. ``SQLITE_FULL`` and ``ENOSPC`` become
``StoreFull``; the transaction is rolled back, so nothing is half-written.

``synchronous=NORMAL`` in WAL mode survives a process crash (what the ack-after-store guarantee
needs); a power cut may lose the last commits, which the broker then redelivers only if they
were not yet acknowledged. Set ``synchronous=FULL`` if acknowledged fragments must survive power loss.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloud.config import StoreConfig
from cloud.store.base import (
    REFERENCES_KEPT,
    Claim,
    DeviceSummary,
    FramePaths,
    FrameRecord,
    QuarantinePolicy,
    QuarantineRecord,
    QuarantineUsage,
    ReferenceRecord,
    SessionRecord,
    StagedFragment,
    Store,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from cloud.store.images import atomic_write

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id INTEGER PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS frames (
    device_id INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    capture_ms INTEGER,
    received_at REAL NOT NULL,
    stored_at REAL NOT NULL,
    tokenizer_id INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    grid_h INTEGER NOT NULL,
    grid_w INTEGER NOT NULL,
    wire_bytes INTEGER NOT NULL,
    bpp REAL NOT NULL,
    kept_ratio REAL NOT NULL,
    lost_ratio REAL NOT NULL,
    fragments_received INTEGER NOT NULL,
    fragments_total INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    restore_ms REAL NOT NULL,
    psnr REAL,
    worker TEXT NOT NULL DEFAULT '',
    image_path TEXT NOT NULL,
    mask_path TEXT NOT NULL,
    frame_type INTEGER NOT NULL DEFAULT 0,
    ref_counter INTEGER,
    degraded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, counter)
);
CREATE INDEX IF NOT EXISTS frames_by_received ON frames (received_at);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    reason TEXT NOT NULL,
    device_id INTEGER,
    counter INTEGER,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_by_device ON quarantine (device_id);
CREATE TABLE IF NOT EXISTS staged (
    device_id INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    layer INTEGER NOT NULL,
    slice_start INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (device_id, counter, layer, slice_start)
);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refs (
    device_id INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    tokenizer_id INTEGER NOT NULL,
    grid_h INTEGER NOT NULL,
    grid_w INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    tokens BLOB NOT NULL,
    coarse BLOB NOT NULL,
    coarse_known BLOB NOT NULL,
    stored_at REAL NOT NULL,
    sent BLOB,
    dc BLOB,
    PRIMARY KEY (device_id, counter)
);
CREATE TABLE IF NOT EXISTS pending (
    device_id INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    n_positions INTEGER NOT NULL,
    covered INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    owner TEXT,
    lease_until REAL,
    PRIMARY KEY (device_id, counter)
);
"""

# The quarantine's running totals (one row), kept in the transaction that changes the quarantine,
# so bounding it never needs a scan of the payloads; seeded from the table for older databases.
QUARANTINE_TALLY = """
CREATE TABLE IF NOT EXISTS quarantine_tally (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0,
    evicted INTEGER NOT NULL DEFAULT 0
)"""

_FRAME_COLS = ("device_id, counter, capture_ms, received_at, stored_at, tokenizer_id, width, height, grid_h, "
               "grid_w, wire_bytes, bpp, kept_ratio, lost_ratio, fragments_received, fragments_total, complete, "
               "restore_ms, psnr, worker, frame_type, ref_counter, degraded")
_TEMPORAL_COLS = (("frame_type", "INTEGER NOT NULL DEFAULT 0"), ("ref_counter", "INTEGER"),
                  ("degraded", "INTEGER NOT NULL DEFAULT 0"))  # added to frames of older databases
# a frame is ready when complete, or its first fragment is older than the timeout; claimable
# when nobody holds a live lease on it
_READY = "(covered >= n_positions OR first_seen <= :now - :timeout)"
_FREE = "(owner IS NULL OR lease_until < :now)"


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, path: str | Path, image_dir: str | Path, *, busy_timeout_s: float = 10.0,
                 max_page_count: int = 0, quarantine: QuarantinePolicy | None = None) -> None:
        self.quarantine_policy = quarantine or QuarantinePolicy()
        self.path = Path(path)
        self.image_dir = Path(image_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._prepare(busy_timeout_s)
        self._prepare_quarantine()
        self._prepare_temporal()
        if max_page_count:
            self.set_max_page_count(max_page_count)

    def _prepare_quarantine(self) -> None:
        """The tally row and the ``original_size`` column, for new and older databases alike."""
        with self._write() as db:
            db.execute(QUARANTINE_TALLY)
            if "original_size" not in [r[1] for r in db.execute("PRAGMA table_info(quarantine)")]:
                db.execute("ALTER TABLE quarantine ADD COLUMN original_size INTEGER")
            db.execute("INSERT OR IGNORE INTO quarantine_tally (id, entries, bytes) SELECT 1, count(*), "
                       "coalesce(sum(length(payload)), 0) FROM quarantine")

    def _prepare_temporal(self) -> None:
        """The frame-type columns (delta frames, issue 15) on frames tables of older databases."""
        with self._write() as db:
            have = {r[1] for r in db.execute("PRAGMA table_info(frames)")}
            for name, decl in _TEMPORAL_COLS:
                if name not in have:
                    db.execute(f"ALTER TABLE frames ADD COLUMN {name} {decl}")
            have_refs = {r[1] for r in db.execute("PRAGMA table_info(refs)")}
            for name in ("sent", "dc"):
                if name not in have_refs:
                    db.execute(f"ALTER TABLE refs ADD COLUMN {name} BLOB")

    def _prepare(self, busy_timeout_s: float) -> None:
        """Switch to WAL and create the schema, retrying while other openers hold the file.

        Switching the journal mode needs the file to itself, and SQLite answers "database is
        locked" at once there instead of waiting out the busy timeout, so workers started at the
        same moment on a new file used to fail here. The mode is persistent in the file: whoever
        gets there first switches it and later openers only read it. Retried with backoff until
        the busy timeout, then ``StoreUnavailable``.
        """
        deadline = time.monotonic() + busy_timeout_s
        delay = 0.005
        while True:
            try:
                if str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")  # one creator at a time, under the busy timeout
                try:
                    upgraded = self._upgrade()
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    if upgraded:
                        self._finish_upgrade()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    self._db.close()
                    raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(0.2, delay * 2)
            except sqlite3.Error as exc:
                self._db.close()
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc

    def _upgrade(self) -> bool:
        """Make way for this schema in a database from an older tokencast (inside the open transaction).

        Version 1 staged fragments by (device, counter, slice); wire v2 sends two layers whose
        slices can start at the same position, so the key gains the layer. The old table is
        renamed here and, once the schema has made the new one, copied over as layer 0 (every
        v1 fragment is) and dropped. True when that copy is due.
        """
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(staged)")]
        if not cols or "layer" in cols:
            return False
        self._db.execute("ALTER TABLE staged RENAME TO staged_v1")
        return True

    def _finish_upgrade(self) -> None:
        self._db.execute("INSERT INTO staged SELECT device_id, counter, 0, slice_start, payload FROM staged_v1")
        self._db.execute("DROP TABLE staged_v1")
        log.info("store %s: staging now keyed by layer too (schema upgrade)", self.path)

    def set_max_page_count(self, pages: int) -> None:
        """Cap the database size (SQLite pages); 0 lifts the cap. Used to emulate a full disk."""
        with self._lock:
            self._db.execute(f"PRAGMA max_page_count={int(pages) or 4294967294}")

    # -- transactions -------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"{self.path}: cannot take the write lock ({exc})") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    if _is_full(exc):
                        raise StoreFull(f"{self.path}: database or disk is full") from exc
                    raise StoreError(f"{self.path}: {exc}") from exc
                raise

    def _read(self, sql: str, params: object = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._db.execute(sql, params)  # type: ignore[arg-type]
                cur.row_factory = sqlite3.Row
                return cur.fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.path}: {exc}") from exc

    # -- staging ------------------------------------------------------------------------------------
    def stage(self, fragments: list[StagedFragment]) -> list[bool]:
        out = []
        with self._write() as db:
            for f in fragments:
                key = (f.device_id, f.counter)
                db.execute("INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?) "
                           "ON CONFLICT (device_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                           (f.device_id, f.received_at, f.received_at))
                if db.execute("SELECT 1 FROM frames WHERE device_id = ? AND counter = ?", key).fetchone():
                    out.append(False)
                    continue
                cur = db.execute("INSERT OR IGNORE INTO staged VALUES (?, ?, ?, ?, ?)",
                                 (*key, f.layer, f.slice_start, f.payload))
                if not cur.rowcount:
                    out.append(False)
                    continue
                db.execute("INSERT INTO pending (device_id, counter, n_positions, covered, first_seen, last_seen) "
                           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, counter) DO UPDATE SET "
                           "covered = covered + excluded.covered, last_seen = excluded.last_seen",
                           (*key, f.n_positions, f.slice_len, f.received_at, f.received_at))
                out.append(True)
        return out

    def ready(self, now: float, timeout_s: float) -> tuple[int, float | None]:
        rows = self._read(
            f"SELECT count(*) AS n, min(CASE WHEN covered >= n_positions THEN last_seen "
            f"ELSE first_seen + :timeout END) AS oldest FROM pending WHERE {_READY} AND {_FREE}",
            {"now": now, "timeout": timeout_s})
        return int(rows[0]["n"]), rows[0]["oldest"]

    def claim(self, now: float, *, timeout_s: float, owner: str, lease_s: float, limit: int) -> list[Claim]:
        claims = []
        with self._write() as db:
            rows = db.execute(
                f"SELECT device_id, counter, first_seen, covered >= n_positions FROM pending "
                f"WHERE {_READY} AND {_FREE} ORDER BY first_seen LIMIT :limit",
                {"now": now, "timeout": timeout_s, "limit": limit}).fetchall()
            for device_id, counter, first_seen, complete in rows:
                db.execute("UPDATE pending SET owner = ?, lease_until = ? WHERE device_id = ? AND counter = ?",
                           (owner, now + lease_s, device_id, counter))
                frags = [bytes(r[0]) for r in db.execute(
                    "SELECT payload FROM staged WHERE device_id = ? AND counter = ? ORDER BY layer DESC, slice_start",
                    (device_id, counter))]
                claims.append(Claim(device_id, counter, frags, first_seen, bool(complete)))
        return claims

    def release(self, keys: list[tuple[int, int]], owner: str) -> None:
        with self._write() as db:
            db.executemany("UPDATE pending SET owner = NULL, lease_until = NULL "
                           "WHERE device_id = ? AND counter = ? AND owner = ?", [(*k, owner) for k in keys])

    def _drop_staged(self, db: sqlite3.Connection, key: tuple[int, int]) -> None:
        db.execute("DELETE FROM staged WHERE device_id = ? AND counter = ?", key)
        db.execute("DELETE FROM pending WHERE device_id = ? AND counter = ?", key)

    # -- results ------------------------------------------------------------------------------------
    def _rel_paths(self, device_id: int, counter: int) -> tuple[str, str]:
        stem = f"{device_id}/{counter:010d}"
        return f"{stem}.png", f"{stem}.mask.png"

    def put_frame(self, record: FrameRecord, image_png: bytes, mask_png: bytes) -> bool:
        key = record.key
        image_rel, mask_rel = self._rel_paths(*key)
        written: list[Path] = []
        try:
            with self._write() as db:
                if db.execute("SELECT 1 FROM frames WHERE device_id = ? AND counter = ?", key).fetchone():
                    self._drop_staged(db, key)
                    return False
                for rel, data in ((image_rel, image_png), (mask_rel, mask_png)):
                    atomic_write(self.image_dir / rel, data)
                    written.append(self.image_dir / rel)
                r = record
                db.execute(
                    f"INSERT INTO frames ({_FRAME_COLS}, image_path, mask_path) VALUES "
                    f"({', '.join('?' * 25)})",
                    (r.device_id, r.counter, r.capture_ms, r.received_at, r.stored_at, r.tokenizer_id, r.width,
                     r.height, r.grid_h, r.grid_w, r.wire_bytes, r.bpp, r.kept_ratio, r.lost_ratio,
                     r.fragments_received, r.fragments_total, int(r.complete), r.restore_ms, r.psnr, r.worker,
                     r.frame_type, r.ref_counter, int(r.degraded), image_rel, mask_rel))
                db.execute("INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?) "
                           "ON CONFLICT (device_id) DO NOTHING", (r.device_id, r.received_at, r.received_at))
                self._drop_staged(db, key)
        except BaseException:
            for p in written:  # the row did not commit: its images must not linger
                p.unlink(missing_ok=True)
            raise
        return True

    def quarantine(self, reason: str, device_id: int | None, payload: bytes, detail: str, *,
                   counter: int | None = None, now: float | None = None,
                   drop_staged: tuple[int, int] | None = None) -> int:
        kept, cut = self.quarantine_policy.clip(payload)
        with self._write() as db:
            cur = db.execute("INSERT INTO quarantine (received_at, reason, device_id, counter, detail, payload, "
                             "original_size) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (time.time() if now is None else now, reason, device_id, counter, detail[:2000],
                              kept, len(payload)))
            db.execute("UPDATE quarantine_tally SET entries = entries + 1, bytes = bytes + ?, truncated = truncated + ?",
                       (len(kept), int(cut)))
            self._evict_quarantine(db)
            if drop_staged is not None:
                self._drop_staged(db, drop_staged)
            return int(cur.lastrowid or 0)

    def _evict_quarantine(self, db: sqlite3.Connection) -> None:
        """Drop the oldest entries beyond the policy's quota (inside the writing transaction)."""
        entries, total = db.execute("SELECT entries, bytes FROM quarantine_tally").fetchone()
        seen: list[tuple[int, int]] = []

        def oldest() -> Iterator[int]:
            for qid, size in db.execute("SELECT id, length(payload) FROM quarantine ORDER BY id"):
                seen.append((qid, size))
                yield size

        n = self.quarantine_policy.evictions(entries, total, oldest())
        if n:
            last, freed = seen[n - 1][0], sum(size for _, size in seen[:n])
            db.execute("DELETE FROM quarantine WHERE id <= ?", (last,))
            db.execute("UPDATE quarantine_tally SET entries = entries - ?, bytes = bytes - ?, evicted = evicted + ?",
                       (n, freed, n))

    def quarantine_usage(self) -> QuarantineUsage:
        rows = self._read("SELECT entries, bytes, truncated, evicted FROM quarantine_tally")
        return QuarantineUsage(*(int(v) for v in rows[0])) if rows else QuarantineUsage(0, 0)

    def count_duplicates(self, counts: dict[int, int]) -> None:
        if not counts:
            return
        with self._write() as db:
            db.executemany("UPDATE devices SET duplicates = duplicates + ? WHERE device_id = ?",
                           [(n, d) for d, n in counts.items()])

    def set_psnr(self, device_id: int, counter: int, psnr: float) -> None:
        with self._write() as db:
            db.execute("UPDATE frames SET psnr = ? WHERE device_id = ? AND counter = ?", (psnr, device_id, counter))

    # -- reads --------------------------------------------------------------------------------------
    def has_frame(self, device_id: int, counter: int) -> bool:
        return bool(self._read("SELECT 1 FROM frames WHERE device_id = ? AND counter = ?", (device_id, counter)))

    @staticmethod
    def _frame(row: sqlite3.Row) -> FrameRecord:
        d = {k: row[k] for k in row.keys() if k not in ("image_path", "mask_path")}
        d["complete"] = bool(d["complete"])
        d["degraded"] = bool(d["degraded"])
        return FrameRecord(**d)

    def get_frame(self, device_id: int, counter: int) -> FrameRecord | None:
        rows = self._read(f"SELECT {_FRAME_COLS} FROM frames WHERE device_id = ? AND counter = ?",
                          (device_id, counter))
        return self._frame(rows[0]) if rows else None

    def list_frames(self, device_id: int | None = None, *, limit: int = 50, offset: int = 0,
                    since: float | None = None) -> list[FrameRecord]:
        where, params = ["1"], []
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if since is not None:
            where.append("received_at >= ?")
            params.append(since)
        rows = self._read(f"SELECT {_FRAME_COLS} FROM frames WHERE {' AND '.join(where)} "
                          f"ORDER BY received_at DESC, device_id, counter DESC LIMIT ? OFFSET ?",
                          (*params, limit, offset))
        return [self._frame(r) for r in rows]

    def count_frames(self, device_id: int | None = None) -> int:
        if device_id is None:
            return int(self._read("SELECT count(*) FROM frames")[0][0])
        return int(self._read("SELECT count(*) FROM frames WHERE device_id = ?", (device_id,))[0][0])

    def frame_paths(self, device_id: int, counter: int) -> FramePaths | None:
        rows = self._read("SELECT image_path, mask_path FROM frames WHERE device_id = ? AND counter = ?",
                          (device_id, counter))
        if not rows:
            return None
        return FramePaths(self.image_dir / rows[0]["image_path"], self.image_dir / rows[0]["mask_path"])

    _DEVICE_SQL = """
        SELECT d.device_id, d.first_seen, d.last_seen, d.duplicates,
               count(f.counter) AS frames, coalesce(sum(f.complete), 0) AS complete_frames,
               coalesce(sum(f.wire_bytes), 0) AS wire_bytes,
               coalesce(sum(f.fragments_received), 0) AS fragments_received,
               coalesce(sum(f.fragments_total), 0) AS fragments_total,
               coalesce(avg(f.kept_ratio), 0) AS mean_kept_ratio, coalesce(avg(f.lost_ratio), 0) AS mean_lost_ratio,
               coalesce(avg(f.bpp), 0) AS mean_bpp, max(f.counter) AS last_counter,
               (SELECT count(*) FROM quarantine q WHERE q.device_id = d.device_id) AS rejects
        FROM devices d LEFT JOIN frames f ON f.device_id = d.device_id
    """

    def list_devices(self) -> list[DeviceSummary]:
        rows = self._read(self._DEVICE_SQL + " GROUP BY d.device_id ORDER BY d.device_id")
        return [DeviceSummary(**dict(r)) for r in rows]

    def device_stats(self, device_id: int) -> DeviceSummary | None:
        rows = self._read(self._DEVICE_SQL + " WHERE d.device_id = ? GROUP BY d.device_id", (device_id,))
        return DeviceSummary(**dict(rows[0])) if rows else None

    def list_quarantine(self, *, limit: int = 50, reason: str | None = None) -> list[QuarantineRecord]:
        sql = ("SELECT id, received_at, reason, device_id, counter, detail, length(payload) AS size, "
               "coalesce(original_size, length(payload)) AS original_size FROM quarantine")
        params: tuple = ()
        if reason is not None:
            sql, params = sql + " WHERE reason = ?", (reason,)
        rows = self._read(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [QuarantineRecord(**dict(r)) for r in rows]

    def quarantine_payload(self, quarantine_id: int) -> bytes | None:
        rows = self._read("SELECT payload FROM quarantine WHERE id = ?", (quarantine_id,))
        return bytes(rows[0][0]) if rows else None

    def quarantine_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._read("SELECT reason, count(*) FROM quarantine GROUP BY reason")}

    def pending_frames(self) -> int:
        return int(self._read("SELECT count(*) FROM pending")[0][0])

    # -- sessions -----------------------------------------------------------------------------------
    def put_session(self, rec: SessionRecord) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                       (rec.client_id, rec.owner, rec.host, rec.pid, rec.heartbeat, int(rec.adopted)))

    @staticmethod
    def _session(row: sqlite3.Row) -> SessionRecord:
        d = dict(row)
        d["adopted"] = bool(d["adopted"])
        return SessionRecord(**d)

    def get_session(self, client_id: str) -> SessionRecord | None:
        rows = self._read("SELECT * FROM sessions WHERE client_id = ?", (client_id,))
        return self._session(rows[0]) if rows else None

    def heartbeat_session(self, client_id: str, owner: str, now: float) -> bool:
        with self._write() as db:
            return bool(db.execute("UPDATE sessions SET heartbeat = ? WHERE client_id = ? AND owner = ?",
                                   (now, client_id, owner)).rowcount)

    def adopt_stale_session(self, owner: str, host: str, pid: int, now: float,
                            stale_s: float) -> SessionRecord | None:
        with self._write() as db:  # BEGIN IMMEDIATE: no second adopter between the read and the update
            cur = db.execute("SELECT * FROM sessions WHERE heartbeat < ? ORDER BY heartbeat LIMIT 1", (now - stale_s,))
            cur.row_factory = sqlite3.Row
            row = cur.fetchone()
            if row is None:
                return None
            db.execute("UPDATE sessions SET owner = ?, host = ?, pid = ?, heartbeat = ?, adopted = 1 "
                       "WHERE client_id = ?", (owner, host, pid, now, row["client_id"]))
            return self._session(row)

    def forget_session(self, client_id: str, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE client_id = ? AND owner = ?", (client_id, owner))

    # -- references -----------------------------------------------------------------------------------
    def put_reference(self, ref: ReferenceRecord) -> bool:
        tokens, coarse, known, sent = ref.blobs()
        with self._write() as db:
            cur = db.execute("INSERT INTO refs (device_id, counter, tokenizer_id, grid_h, grid_w, width, height, "
                             "tokens, coarse, coarse_known, stored_at, sent, dc) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, counter) DO NOTHING",
                             (ref.device_id, ref.counter, ref.tokenizer_id, ref.grid_h, ref.grid_w, ref.width,
                              ref.height, tokens, coarse, known, ref.stored_at or time.time(), sent, ref.dc_blob()))
            db.execute("DELETE FROM refs WHERE device_id = ? AND counter NOT IN (SELECT counter FROM refs "
                       "WHERE device_id = ? ORDER BY counter DESC LIMIT ?)",
                       (ref.device_id, ref.device_id, REFERENCES_KEPT))
            return cur.rowcount == 1

    def get_reference(self, device_id: int, counter: int) -> ReferenceRecord | None:
        rows = self._read("SELECT tokenizer_id, grid_h, grid_w, width, height, tokens, coarse, coarse_known, "
                          "stored_at, sent, dc FROM refs WHERE device_id = ? AND counter = ?", (device_id, counter))
        if not rows:
            return None
        return ReferenceRecord.from_blobs(device_id, counter, *tuple(rows[0]))

    def integrity_ok(self) -> bool:
        return self._read("PRAGMA integrity_check")[0][0] == "ok"

    def close(self) -> None:
        with self._lock:
            self._db.close()


def create(cfg: StoreConfig) -> Store:
    return SqliteStore(cfg.path, cfg.image_dir, busy_timeout_s=cfg.busy_timeout_s, max_page_count=cfg.max_page_count,
                       quarantine=QuarantinePolicy.from_config(cfg.quarantine))
