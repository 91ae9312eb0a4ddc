-- Several snapshots per aggregate: a history of states at increasing versions, of which
-- the store keeps the highest N (`SnapshotStore::save_keeping`). The unique constraint
-- moves from (aggregate_id, aggregate_type) to (aggregate_id, aggregate_type, version);
-- its index serves the lookups of the newest snapshot and of the newest at or below a
-- version, and the pruning of the lower ones.
--
-- SQLite cannot drop a constraint: the table is rebuilt with the new one, its rows
-- (ids included) copied, the old table dropped (with its indexes) and the new one
-- renamed, then the indexes are created again. `migrate_sqlite` runs this inside its
-- `BEGIN IMMEDIATE` transaction: no other connection sees the table half rebuilt, and
-- a process that opens the file meanwhile waits for the write lock, then finds the
-- migration recorded. Run again on a table that already has the new constraint (one
-- created from `migrations::schema`), it rebuilds the same table.
DROP TABLE IF EXISTS snapshots_history;

CREATE TABLE snapshots_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    state          TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    UNIQUE (aggregate_id, aggregate_type, version)
);

INSERT INTO snapshots_history
    (id, aggregate_id, aggregate_type, version, schema_version, state, created_at)
SELECT id, aggregate_id, aggregate_type, version, schema_version, state, created_at
FROM snapshots;

DROP TABLE snapshots;

ALTER TABLE snapshots_history RENAME TO snapshots;

CREATE INDEX IF NOT EXISTS idx_snapshots_schema_version
    ON snapshots (aggregate_type, schema_version);
CREATE INDEX IF NOT EXISTS idx_snapshots_created_at
    ON snapshots (created_at);
