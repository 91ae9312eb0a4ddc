-- At most one snapshot per aggregate: its state (JSON text) at a version.
--
-- The unique constraint's index serves lookups by (aggregate_id, aggregate_type), and
-- idx_snapshots_schema_version serves deletes by type, with or without a schema version
-- bound (aggregate_type is its first column), so neither needs an index of its own.
-- Ids and timestamps are stored as in the events table.
CREATE TABLE IF NOT EXISTS snapshots (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    state          TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    UNIQUE (aggregate_id, aggregate_type)
);

CREATE INDEX IF NOT EXISTS idx_snapshots_schema_version
    ON snapshots (aggregate_type, schema_version);
CREATE INDEX IF NOT EXISTS idx_snapshots_created_at
    ON snapshots (created_at);
