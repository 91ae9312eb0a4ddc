-- Large snapshot states stored compressed (`SnapshotPolicy::compress_over`): a zstd
-- frame of the state's JSON text in `state_zstd`, with `state` NULL. Plain and
-- compressed rows live side by side; exactly one of the two columns is set.
--
-- SQLite cannot drop a NOT NULL nor add a check to a table, and has no
-- `ADD COLUMN IF NOT EXISTS`: the table is rebuilt, as in migration 5, so that this file
-- also runs on a table created from the schema text (`migrations::schema`), which then
-- has the new columns already. Only plain states are copied: run again on a rebuilt
-- table, the compressed rows are dropped (a snapshot is a cache; their loads replay).
DROP TABLE IF EXISTS snapshots_compression;

CREATE TABLE snapshots_compression (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    state          TEXT,
    created_at     TEXT    NOT NULL,
    state_zstd     BLOB,
    UNIQUE (aggregate_id, aggregate_type, version),
    CHECK ((state IS NULL) <> (state_zstd IS NULL))
);

INSERT INTO snapshots_compression
    (id, aggregate_id, aggregate_type, version, schema_version, state, created_at)
SELECT id, aggregate_id, aggregate_type, version, schema_version, state, created_at
FROM snapshots
WHERE state IS NOT NULL;

DROP TABLE snapshots;

ALTER TABLE snapshots_compression RENAME TO snapshots;

CREATE INDEX IF NOT EXISTS idx_snapshots_schema_version
    ON snapshots (aggregate_type, schema_version);
CREATE INDEX IF NOT EXISTS idx_snapshots_created_at
    ON snapshots (created_at);
