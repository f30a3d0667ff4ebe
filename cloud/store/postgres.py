"""PostgreSQL store: one database shared by workers on several hosts (psycopg 3, a connection pool).

Selected by ``store = "postgresql://user@host/db"`` in cloud.toml. The schema comes from
``cloud.store.pg_migrations``, applied at start under an advisory lock, so any number of workers
may start at once. Where SQLite serialises every write behind one file lock, here writers run
side by side and correctness comes from keys and row locks:

* ``stage``: ``INSERT ... ON CONFLICT DO NOTHING`` on (device, counter, layer, slice) decides new vs
  duplicate; rows are written in key order so two workers staging the same devices cannot
  deadlock (a deadlock or serialisation failure is retried anyway).
* ``claim``: ``SELECT ... FOR UPDATE SKIP LOCKED`` hands each ready frame to exactly one worker.
* ``put_frame``: ``INSERT ... ON CONFLICT DO NOTHING`` on (device, counter) is the idempotency
  key; the loser of a race removes only its own images.

Images: PNG files under ``image_dir``, which every worker (and the dashboard) must mount: a
shared volume or NFS. Each put writes uniquely named files (tmp + fsync + rename) *before* the
row, so a row always has its images, a losing put never overwrites the winner's files, and a
crash leaves at most unreferenced files. Bytes in the database were the alternative; files keep
the dashboard's path-based serving and thumbnail cache as they are and keep the write-ahead
log (and the replicas that follow it) small; see README "Scaling out".

Errors: unreachable server or pool exhausted -> ``StoreUnavailable``; SQLSTATE class 53 (disk
full, out of memory) -> ``StoreFull``; anything else -> ``StoreError``; the transaction is rolled
back, so nothing is half-written.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from cloud.store.pg_migrations import MIGRATION_LOCK, MIGRATIONS

log = logging.getLogger(__name__)

try:  # the driver is the cloud extra's; a worker on SQLite never needs it
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # pragma: no cover - exercised only where psycopg is missing
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

_FRAME_COLS = ("device_id, counter, capture_ms, received_at, stored_at, tokenizer_id, width, height, grid_h, "
               "grid_w, wire_bytes, bpp, kept_ratio, lost_ratio, fragments_received, fragments_total, complete, "
               "restore_ms, psnr, worker, frame_type, ref_counter, degraded")
_READY = "(covered >= n_positions OR first_seen <= %(now)s - %(timeout)s)"
_FREE = "(owner IS NULL OR lease_until < %(now)s)"
RETRIES = 5  # deadlock / serialisation failure: the transaction is replayed this many times


class PostgresStore(Store):
    name = "postgresql"

    def __init__(self, url: str, image_dir: str | Path, *, pool_size: int = 4, timeout_s: float = 10.0,
                 password: str | None = None, display: str | None = None,
                 quarantine: QuarantinePolicy | None = None) -> None:
        self.quarantine_policy = quarantine or QuarantinePolicy()
        if _IMPORT_ERROR is not None:
            raise StoreError(f"the postgresql store needs psycopg 3 and psycopg-pool "
                             f"(pip install 'tokencast[cloud]'): {_IMPORT_ERROR}")
        self.display = display or url
        self.image_dir = Path(image_dir)
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout_s)),
                                  "application_name": f"tokencast-{os.getpid()}"}
        if password is not None:
            kwargs["password"] = password
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=kwargs, timeout=timeout_s,
                                    open=False, name=f"tokencast-{os.getpid()}")
        try:
            self._pool.open(wait=True, timeout=timeout_s)
            self.schema_version = self._migrate()
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreUnavailable(f"cannot open {self.display}: {exc}") from exc

    # -- schema ------------------------------------------------------------------------------------
    def _migrate(self) -> int:
        """Apply the missing migrations; the advisory lock makes concurrent starts take turns."""
        with self._pool.connection() as conn:
            conn.autocommit = True
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                with conn.transaction():
                    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                                 "description text NOT NULL, applied_at double precision NOT NULL)")
                    done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                    for version, description, sql in MIGRATIONS:
                        if version in done:
                            continue
                        conn.execute(sql)  # type: ignore[arg-type]
                        conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                                     (version, description, time.time()))
                        log.info("store %s: applied migration %d (%s)", self.display, version, description)
                    newest = max(done | {v for v, _, _ in MIGRATIONS})
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
                conn.autocommit = False
        known = max(v for v, _, _ in MIGRATIONS)
        if newest > known:
            raise StoreError(f"{self.display}: schema version {newest} is newer than this worker knows ({known}); "
                             f"upgrade the worker")
        return newest

    # -- transactions ------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection, errors mapped to the store's types."""
        try:
            with self._pool.connection() as conn:
                with conn.transaction():
                    yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(f"{self.display}: no connection within {self.timeout_s:g} s ({exc})") from exc
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def _map(self, exc: psycopg.Error) -> StoreError:
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith("53"):  # insufficient resources: disk full, out of memory, too many connections
            return StoreFull(f"{self.display}: {exc}") if state == "53100" else StoreUnavailable(f"{self.display}: {exc}")
        if isinstance(exc, psycopg.OperationalError) or state.startswith("08") or state.startswith("57"):
            return StoreUnavailable(f"{self.display}: {exc}")
        return StoreError(f"{self.display}: {exc}")

    def _write(self, fn: Any) -> Any:
        """Run ``fn(conn)`` in a transaction, replaying it after a deadlock or serialisation failure."""
        for attempt in range(RETRIES):
            try:
                with self._tx() as conn:
                    return fn(conn)
            except StoreError as exc:
                cause = exc.__cause__
                if attempt + 1 < RETRIES and isinstance(cause, (pg_errors.DeadlockDetected,
                                                                pg_errors.SerializationFailure)):
                    time.sleep(0.01 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self._tx() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql, params)  # type: ignore[arg-type]
                return cur.fetchall()

    # -- staging -----------------------------------------------------------------------------------
    def stage(self, fragments: list[StagedFragment]) -> list[bool]:
        if not fragments:
            return []
        order = sorted(range(len(fragments)), key=lambda i: (fragments[i].device_id, fragments[i].counter,
                                                             fragments[i].layer, fragments[i].slice_start))

        def run(conn: psycopg.Connection) -> list[bool]:
            seen: dict[int, float] = {}
            for f in fragments:
                seen[f.device_id] = max(seen.get(f.device_id, f.received_at), f.received_at)
            for device_id in sorted(seen):  # key order: no deadlock between workers
                conn.execute("INSERT INTO devices (device_id, first_seen, last_seen) VALUES (%s, %s, %s) "
                             "ON CONFLICT (device_id) DO UPDATE SET last_seen = "
                             "greatest(devices.last_seen, excluded.last_seen)",
                             (device_id, seen[device_id], seen[device_id]))
            out = [False] * len(fragments)
            for i in order:
                f = fragments[i]
                key = (f.device_id, f.counter)
                if conn.execute("SELECT 1 FROM frames WHERE device_id = %s AND counter = %s", key).fetchone():
                    continue
                new = conn.execute("INSERT INTO staged VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                                   (*key, f.layer, f.slice_start, f.payload)).fetchone()
                if not new:
                    continue
                conn.execute("INSERT INTO pending (device_id, counter, n_positions, covered, first_seen, last_seen) "
                             "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (device_id, counter) DO UPDATE SET "
                             "covered = pending.covered + excluded.covered, last_seen = excluded.last_seen",
                             (*key, f.n_positions, f.slice_len, f.received_at, f.received_at))
                out[i] = True
            return out

        result: list[bool] = self._write(run)
        return result

    def ready(self, now: float, timeout_s: float) -> tuple[int, float | None]:
        rows = self._read(
            f"SELECT count(*) AS n, min(CASE WHEN covered >= n_positions THEN last_seen "
            f"ELSE first_seen + %(timeout)s END) AS oldest FROM pending WHERE {_READY} AND {_FREE}",
            {"now": now, "timeout": timeout_s})
        return int(rows[0]["n"]), rows[0]["oldest"]

    def claim(self, now: float, *, timeout_s: float, owner: str, lease_s: float, limit: int) -> list[Claim]:
        def run(conn: psycopg.Connection) -> list[Claim]:
            # a pending frame that is already stored (a fragment staged while another worker stored
            # it: read committed lets that race through) is dropped here rather than restored again
            conn.execute("DELETE FROM staged s USING frames f WHERE s.device_id = f.device_id "
                         "AND s.counter = f.counter")
            conn.execute("DELETE FROM pending p USING frames f WHERE p.device_id = f.device_id "
                         "AND p.counter = f.counter")
            rows = conn.execute(
                f"UPDATE pending SET owner = %(owner)s, lease_until = %(until)s WHERE (device_id, counter) IN "
                f"(SELECT device_id, counter FROM pending WHERE {_READY} AND {_FREE} ORDER BY first_seen "
                f"LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                f"RETURNING device_id, counter, first_seen, covered >= n_positions",
                {"now": now, "timeout": timeout_s, "owner": owner, "until": now + lease_s, "limit": limit}).fetchall()
            claims = []
            for device_id, counter, first_seen, complete in sorted(rows, key=lambda r: (r[2], r[0], r[1])):
                frags = [bytes(r[0]) for r in conn.execute(
                    "SELECT payload FROM staged WHERE device_id = %s AND counter = %s ORDER BY layer DESC, slice_start",
                    (device_id, counter))]
                claims.append(Claim(device_id, counter, frags, first_seen, bool(complete)))
            return claims

        result: list[Claim] = self._write(run)
        return result

    def release(self, keys: list[tuple[int, int]], owner: str) -> None:
        if not keys:
            return

        def run(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany("UPDATE pending SET owner = NULL, lease_until = NULL "
                                "WHERE device_id = %s AND counter = %s AND owner = %s",
                                [(*k, owner) for k in sorted(keys)])

        self._write(run)

    @staticmethod
    def _drop_staged(conn: psycopg.Connection, key: tuple[int, int]) -> None:
        conn.execute("DELETE FROM staged WHERE device_id = %s AND counter = %s", key)
        conn.execute("DELETE FROM pending WHERE device_id = %s AND counter = %s", key)

    # -- results -----------------------------------------------------------------------------------
    def put_frame(self, record: FrameRecord, image_png: bytes, mask_png: bytes) -> bool:
        r = record
        key = r.key
        if self.has_frame(*key):  # cheap early out: no images written for a frame already stored
            self._write(lambda conn: self._drop_staged(conn, key))
            return False
        stem = f"{r.device_id}/{r.counter:010d}-{uuid.uuid4().hex[:12]}"  # unique: a losing put never overwrites
        rels = (f"{stem}.png", f"{stem}.mask.png")
        written: list[Path] = []
        try:
            for rel, data in zip(rels, (image_png, mask_png), strict=True):
                atomic_write(self.image_dir / rel, data)
                written.append(self.image_dir / rel)

            def run(conn: psycopg.Connection) -> bool:
                new = conn.execute(
                    f"INSERT INTO frames ({_FRAME_COLS}, image_path, mask_path) VALUES "
                    f"({', '.join(['%s'] * 25)}) ON CONFLICT (device_id, counter) DO NOTHING RETURNING 1",
                    (r.device_id, r.counter, r.capture_ms, r.received_at, r.stored_at, r.tokenizer_id, r.width,
                     r.height, r.grid_h, r.grid_w, r.wire_bytes, r.bpp, r.kept_ratio, r.lost_ratio,
                     r.fragments_received, r.fragments_total, r.complete, r.restore_ms, r.psnr, r.worker,
                     r.frame_type, r.ref_counter, r.degraded, *rels)).fetchone()
                if new:
                    conn.execute("INSERT INTO devices (device_id, first_seen, last_seen) VALUES (%s, %s, %s) "
                                 "ON CONFLICT (device_id) DO NOTHING", (r.device_id, r.received_at, r.received_at))
                self._drop_staged(conn, key)
                return bool(new)

            stored: bool = self._write(run)
        except BaseException:
            for p in written:  # the row did not commit: its images must not linger
                p.unlink(missing_ok=True)
            raise
        if not stored:
            for p in written:  # another worker stored this frame first; its files stay
                p.unlink(missing_ok=True)
        return stored

    def quarantine(self, reason: str, device_id: int | None, payload: bytes, detail: str, *,
                   counter: int | None = None, now: float | None = None,
                   drop_staged: tuple[int, int] | None = None) -> int:
        kept, cut = self.quarantine_policy.clip(payload)

        def run(conn: psycopg.Connection) -> int:
            row = conn.execute("INSERT INTO quarantine (received_at, reason, device_id, counter, detail, payload, "
                               "original_size) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                               (time.time() if now is None else now, reason, device_id, counter,
                                detail[:2000].replace("\x00", "\\x00"), kept, len(payload))).fetchone()
            # the tally row is the quarantine's lock too: concurrent workers evict one at a time
            conn.execute("UPDATE quarantine_tally SET entries = entries + 1, bytes = bytes + %s, "
                         "truncated = truncated + %s", (len(kept), int(cut)))
            self._evict_quarantine(conn)
            if drop_staged is not None:
                self._drop_staged(conn, drop_staged)
            return int(row[0]) if row else 0

        qid: int = self._write(run)
        return qid

    def _evict_quarantine(self, conn: psycopg.Connection) -> None:
        """Drop the oldest entries beyond the policy's quota (inside the writing transaction)."""
        entries, total = conn.execute("SELECT entries, bytes FROM quarantine_tally").fetchone()  # type: ignore[misc]
        policy = self.quarantine_policy
        if entries <= policy.max_entries and total <= policy.max_total_bytes:
            return
        seen: list[tuple[int, int]] = []

        def oldest() -> Iterator[int]:
            last = -1
            while True:  # pages of 256, oldest first: usually one entry goes, so one page is read
                page = conn.execute("SELECT id, length(payload) FROM quarantine WHERE id > %s ORDER BY id LIMIT 256",
                                    (last,)).fetchall()
                if not page:
                    return
                for qid, size in page:
                    seen.append((qid, size))
                    yield size
                last = page[-1][0]

        n = policy.evictions(entries, total, oldest())
        if n:
            last, freed = seen[n - 1][0], sum(size for _, size in seen[:n])
            conn.execute("DELETE FROM quarantine WHERE id <= %s", (last,))
            conn.execute("UPDATE quarantine_tally SET entries = entries - %s, bytes = bytes - %s, "
                         "evicted = evicted + %s", (n, freed, n))

    def quarantine_usage(self) -> QuarantineUsage:
        rows = self._read("SELECT entries, bytes, truncated, evicted FROM quarantine_tally")
        return QuarantineUsage(*(int(v) for v in rows[0].values())) if rows else QuarantineUsage(0, 0)

    def count_duplicates(self, counts: dict[int, int]) -> None:
        if not counts:
            return

        def run(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany("UPDATE devices SET duplicates = duplicates + %s WHERE device_id = %s",
                                [(counts[d], d) for d in sorted(counts)])

        self._write(run)

    def set_psnr(self, device_id: int, counter: int, psnr: float) -> None:
        self._write(lambda conn: conn.execute("UPDATE frames SET psnr = %s WHERE device_id = %s AND counter = %s",
                                              (psnr, device_id, counter)))

    # -- reads -------------------------------------------------------------------------------------
    def has_frame(self, device_id: int, counter: int) -> bool:
        return bool(self._read("SELECT 1 FROM frames WHERE device_id = %s AND counter = %s", (device_id, counter)))

    @staticmethod
    def _frame(row: dict[str, Any]) -> FrameRecord:
        return FrameRecord(**{k: v for k, v in row.items() if k not in ("image_path", "mask_path")})

    def get_frame(self, device_id: int, counter: int) -> FrameRecord | None:
        rows = self._read(f"SELECT {_FRAME_COLS} FROM frames WHERE device_id = %s AND counter = %s",
                          (device_id, counter))
        return self._frame(rows[0]) if rows else None

    def list_frames(self, device_id: int | None = None, *, limit: int = 50, offset: int = 0,
                    since: float | None = None) -> list[FrameRecord]:
        where, params = ["true"], []
        if device_id is not None:
            where.append("device_id = %s")
            params.append(device_id)
        if since is not None:
            where.append("received_at >= %s")
            params.append(since)
        rows = self._read(f"SELECT {_FRAME_COLS} FROM frames WHERE {' AND '.join(where)} "
                          f"ORDER BY received_at DESC, device_id, counter DESC LIMIT %s OFFSET %s",
                          (*params, limit, offset))
        return [self._frame(r) for r in rows]

    def count_frames(self, device_id: int | None = None) -> int:
        if device_id is None:
            return int(self._read("SELECT count(*) AS n FROM frames")[0]["n"])
        return int(self._read("SELECT count(*) AS n FROM frames WHERE device_id = %s", (device_id,))[0]["n"])

    def frame_paths(self, device_id: int, counter: int) -> FramePaths | None:
        rows = self._read("SELECT image_path, mask_path FROM frames WHERE device_id = %s AND counter = %s",
                          (device_id, counter))
        if not rows:
            return None
        return FramePaths(self.image_dir / rows[0]["image_path"], self.image_dir / rows[0]["mask_path"])

    _DEVICE_SQL = """
        SELECT d.device_id, d.first_seen, d.last_seen, d.duplicates,
               count(f.counter) AS frames, coalesce(sum(f.complete::int), 0) AS complete_frames,
               coalesce(sum(f.wire_bytes), 0) AS wire_bytes,
               coalesce(sum(f.fragments_received), 0) AS fragments_received,
               coalesce(sum(f.fragments_total), 0) AS fragments_total,
               coalesce(avg(f.kept_ratio), 0) AS mean_kept_ratio, coalesce(avg(f.lost_ratio), 0) AS mean_lost_ratio,
               coalesce(avg(f.bpp), 0) AS mean_bpp, max(f.counter) AS last_counter,
               (SELECT count(*) FROM quarantine q WHERE q.device_id = d.device_id) AS rejects
        FROM devices d LEFT JOIN frames f ON f.device_id = d.device_id
    """

    @staticmethod
    def _device(row: dict[str, Any]) -> DeviceSummary:
        ints = ("frames", "complete_frames", "wire_bytes", "fragments_received", "fragments_total", "duplicates",
                "rejects")
        return DeviceSummary(**{k: (int(v) if k in ints else float(v) if k.startswith("mean_") else v)
                                for k, v in row.items()})

    def list_devices(self) -> list[DeviceSummary]:
        return [self._device(r) for r in self._read(self._DEVICE_SQL + " GROUP BY d.device_id ORDER BY d.device_id")]

    def device_stats(self, device_id: int) -> DeviceSummary | None:
        rows = self._read(self._DEVICE_SQL + " WHERE d.device_id = %s GROUP BY d.device_id", (device_id,))
        return self._device(rows[0]) if rows else None

    def list_quarantine(self, *, limit: int = 50, reason: str | None = None) -> list[QuarantineRecord]:
        sql = ("SELECT id, received_at, reason, device_id, counter, detail, length(payload) AS size, "
               "coalesce(original_size, length(payload)) AS original_size FROM quarantine")
        params: tuple = ()
        if reason is not None:
            sql, params = sql + " WHERE reason = %s", (reason,)
        rows = self._read(sql + " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [QuarantineRecord(**r) for r in rows]

    def quarantine_payload(self, quarantine_id: int) -> bytes | None:
        rows = self._read("SELECT payload FROM quarantine WHERE id = %s", (quarantine_id,))
        return bytes(rows[0]["payload"]) if rows else None

    def quarantine_counts(self) -> dict[str, int]:
        return {r["reason"]: int(r["n"]) for r in self._read("SELECT reason, count(*) AS n FROM quarantine "
                                                             "GROUP BY reason")}

    def pending_frames(self) -> int:
        return int(self._read("SELECT count(*) AS n FROM pending")[0]["n"])

    # -- sessions ----------------------------------------------------------------------------------
    def put_session(self, rec: SessionRecord) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO sessions VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (client_id) DO UPDATE SET "
            "owner = excluded.owner, host = excluded.host, pid = excluded.pid, heartbeat = excluded.heartbeat, "
            "adopted = excluded.adopted", (rec.client_id, rec.owner, rec.host, rec.pid, rec.heartbeat, rec.adopted)))

    def get_session(self, client_id: str) -> SessionRecord | None:
        rows = self._read("SELECT * FROM sessions WHERE client_id = %s", (client_id,))
        return SessionRecord(**rows[0]) if rows else None

    def heartbeat_session(self, client_id: str, owner: str, now: float) -> bool:
        def run(conn: psycopg.Connection) -> bool:
            cur = conn.execute("UPDATE sessions SET heartbeat = %s WHERE client_id = %s AND owner = %s",
                               (now, client_id, owner))
            return bool(cur.rowcount)

        ok: bool = self._write(run)
        return ok

    def adopt_stale_session(self, owner: str, host: str, pid: int, now: float,
                            stale_s: float) -> SessionRecord | None:
        def run(conn: psycopg.Connection) -> SessionRecord | None:
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute("SELECT * FROM sessions WHERE heartbeat < %s ORDER BY heartbeat LIMIT 1 "
                                  "FOR UPDATE SKIP LOCKED", (now - stale_s,)).fetchone()
                if row is None:
                    return None
                cur.execute("UPDATE sessions SET owner = %s, host = %s, pid = %s, heartbeat = %s, adopted = true "
                            "WHERE client_id = %s", (owner, host, pid, now, row["client_id"]))
            return SessionRecord(**row)

        rec: SessionRecord | None = self._write(run)
        return rec

    def forget_session(self, client_id: str, owner: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM sessions WHERE client_id = %s AND owner = %s",
                                              (client_id, owner)))

    # -- references -----------------------------------------------------------------------------------
    def put_reference(self, ref: ReferenceRecord) -> bool:
        tokens, coarse, known, sent = ref.blobs()

        def run(conn: psycopg.Connection) -> bool:
            new = conn.execute(
                "INSERT INTO refs (device_id, counter, tokenizer_id, grid_h, grid_w, width, height, tokens, coarse, "
                "coarse_known, stored_at, sent, dc) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (device_id, counter) DO NOTHING RETURNING 1",
                (ref.device_id, ref.counter, ref.tokenizer_id, ref.grid_h, ref.grid_w, ref.width, ref.height,
                 tokens, coarse, known, ref.stored_at or time.time(), sent, ref.dc_blob())).fetchone()
            conn.execute("DELETE FROM refs WHERE device_id = %s AND counter NOT IN (SELECT counter FROM refs "
                         "WHERE device_id = %s ORDER BY counter DESC LIMIT %s)",
                         (ref.device_id, ref.device_id, REFERENCES_KEPT))
            return bool(new)

        stored: bool = self._write(run)
        return stored

    def get_reference(self, device_id: int, counter: int) -> ReferenceRecord | None:
        rows = self._read("SELECT tokenizer_id, grid_h, grid_w, width, height, tokens, coarse, coarse_known, "
                          "stored_at, sent, dc FROM refs WHERE device_id = %s AND counter = %s", (device_id, counter))
        if not rows:
            return None
        r = rows[0]
        return ReferenceRecord.from_blobs(device_id, counter, r["tokenizer_id"], r["grid_h"], r["grid_w"],
                                          r["width"], r["height"], r["tokens"], r["coarse"], r["coarse_known"],
                                          r["stored_at"], r["sent"], r["dc"])

    def close(self) -> None:
        self._pool.close()


def create(cfg: StoreConfig) -> Store:
    password = None
    if cfg.password_file is not None:
        try:
            password = cfg.password_file.read_text().strip()
        except OSError as exc:
            raise StoreError(f"cannot read store.password_file {cfg.password_file}: {exc.strerror}") from None
    return PostgresStore(cfg.url, cfg.image_dir, pool_size=cfg.pool_size, timeout_s=cfg.busy_timeout_s,
                         password=password, display=cfg.describe(),
                         quarantine=QuarantinePolicy.from_config(cfg.quarantine))
