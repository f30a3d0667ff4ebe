"""PostgreSQL schema, as numbered migrations applied in order at start-up.

A version is a constant forever: never edit a shipped migration, append the next one. The
store applies the missing ones inside one transaction under a session advisory lock
(``MIGRATION_LOCK``), so when twenty workers start at once one of them migrates and the others
wait on the lock, then find nothing left to do. ``schema_migrations`` records what ran.

Column types: device ids and counters are u32 on the wire, hence ``bigint``; times are unix
seconds as ``double precision`` (what the dashboard API already speaks).
"""

from __future__ import annotations

MIGRATION_LOCK = 0x746F6B63  # "tokc": the advisory lock key every tokencast worker migrates under

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "frames, staging, quarantine, devices", """
CREATE TABLE devices (
    device_id bigint PRIMARY KEY,
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    duplicates bigint NOT NULL DEFAULT 0
);
CREATE TABLE frames (
    device_id bigint NOT NULL,
    counter bigint NOT NULL,
    capture_ms bigint,
    received_at double precision NOT NULL,
    stored_at double precision NOT NULL,
    tokenizer_id integer NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    grid_h integer NOT NULL,
    grid_w integer NOT NULL,
    wire_bytes integer NOT NULL,
    bpp double precision NOT NULL,
    kept_ratio double precision NOT NULL,
    lost_ratio double precision NOT NULL,
    fragments_received integer NOT NULL,
    fragments_total integer NOT NULL,
    complete boolean NOT NULL,
    restore_ms double precision NOT NULL,
    psnr double precision,
    worker text NOT NULL DEFAULT '',
    image_path text NOT NULL,
    mask_path text NOT NULL,
    PRIMARY KEY (device_id, counter)
);
CREATE INDEX frames_by_received ON frames (received_at);
CREATE TABLE quarantine (
    id bigserial PRIMARY KEY,
    received_at double precision NOT NULL,
    reason text NOT NULL,
    device_id bigint,
    counter bigint,
    detail text NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX quarantine_by_device ON quarantine (device_id);
CREATE INDEX quarantine_by_reason ON quarantine (reason);
CREATE TABLE staged (
    device_id bigint NOT NULL,
    counter bigint NOT NULL,
    layer smallint NOT NULL,
    slice_start integer NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (device_id, counter, layer, slice_start)
);
CREATE TABLE pending (
    device_id bigint NOT NULL,
    counter bigint NOT NULL,
    n_positions integer NOT NULL,
    covered integer NOT NULL,
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    owner text,
    lease_until double precision,
    PRIMARY KEY (device_id, counter)
);
CREATE INDEX pending_by_first_seen ON pending (first_seen);
"""),
    (2, "MQTT sessions of the workers (client-id clashes, adopting a dead worker's session)", """
CREATE TABLE sessions (
    client_id text PRIMARY KEY,
    owner text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    heartbeat double precision NOT NULL,
    adopted boolean NOT NULL DEFAULT false
);
"""),
    (3, "bounded quarantine: size received per entry, running totals (cloud.store.base.QuarantinePolicy)", """
ALTER TABLE quarantine ADD COLUMN original_size bigint;
CREATE TABLE quarantine_tally (
    id integer PRIMARY KEY CHECK (id = 1),
    entries bigint NOT NULL,
    bytes bigint NOT NULL,
    truncated bigint NOT NULL DEFAULT 0,
    evicted bigint NOT NULL DEFAULT 0
);
INSERT INTO quarantine_tally (id, entries, bytes)
    SELECT 1, count(*), coalesce(sum(length(payload)), 0) FROM quarantine;
"""),
    (4, "delta frames: frame type, reference and degraded flag per frame; key frames' references", """
ALTER TABLE frames ADD COLUMN frame_type smallint NOT NULL DEFAULT 0;
ALTER TABLE frames ADD COLUMN ref_counter bigint;
ALTER TABLE frames ADD COLUMN degraded boolean NOT NULL DEFAULT false;
CREATE TABLE refs (
    device_id bigint NOT NULL,
    counter bigint NOT NULL,
    tokenizer_id integer NOT NULL,
    grid_h integer NOT NULL,
    grid_w integer NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    tokens bytea NOT NULL,
    coarse bytea NOT NULL,
    coarse_known bytea NOT NULL,
    stored_at double precision NOT NULL,
    PRIMARY KEY (device_id, counter)
);
"""),
    (5, "references remember which cells of the key frame came over the link (the rest were restored)", """
ALTER TABLE refs ADD COLUMN sent bytea;
"""),
    (6, "references keep the key frame's block means (link.dc): delta frames decode with its colours", """
ALTER TABLE refs ADD COLUMN dc bytea;
"""),
)
