-- Several snapshots per aggregate: a history of states at increasing versions, of which
-- the store keeps the highest N (`SnapshotStore::save_keeping`). The unique constraint
-- moves from (aggregate_id, aggregate_type) to (aggregate_id, aggregate_type, version);
-- its index serves the lookups of the newest snapshot and of the newest at or below a
-- version (a backward scan from a version), and the pruning of the lower ones.
--
-- Rows already stored (at most one per aggregate) satisfy the new constraint as they
-- are. The constraint is added only when missing, so a table created from the schema
-- text (`migrations::schema`) is adopted.
ALTER TABLE snapshots DROP CONSTRAINT IF EXISTS uq_snapshots_aggregate;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'uq_snapshots_version' AND conrelid = 'snapshots'::regclass
    ) THEN
        ALTER TABLE snapshots ADD CONSTRAINT uq_snapshots_version
            UNIQUE (aggregate_id, aggregate_type, version);
    END IF;
END
$$;

-- The snapshot half of a load (migration 4) reads the newest snapshot of the aggregate.
CREATE OR REPLACE FUNCTION eventsource_snapshot(
    aggregate_type_ TEXT,
    aggregate_id_ UUID,
    lock_timeout_ TEXT
)
RETURNS TABLE (version BIGINT, schema_version INTEGER, state TEXT, created_at TIMESTAMPTZ)
LANGUAGE plpgsql
ROWS 1
AS $$
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout_, true);
    RETURN QUERY
        SELECT s.version, s.schema_version, s.state::text, s.created_at
        FROM snapshots s
        WHERE s.aggregate_id = aggregate_id_ AND s.aggregate_type = aggregate_type_
        ORDER BY s.version DESC
        LIMIT 1;
END
$$;

-- The newest snapshot at or below a version, with the same bounded lock wait: the
-- snapshot half of `load_at`, in one statement.
CREATE OR REPLACE FUNCTION eventsource_snapshot_at(
    aggregate_type_ TEXT,
    aggregate_id_ UUID,
    at_or_below_ BIGINT,
    lock_timeout_ TEXT
)
RETURNS TABLE (version BIGINT, schema_version INTEGER, state TEXT, created_at TIMESTAMPTZ)
LANGUAGE plpgsql
ROWS 1
AS $$
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout_, true);
    RETURN QUERY
        SELECT s.version, s.schema_version, s.state::text, s.created_at
        FROM snapshots s
        WHERE s.aggregate_id = aggregate_id_ AND s.aggregate_type = aggregate_type_
          AND s.version <= at_or_below_
        ORDER BY s.version DESC
        LIMIT 1;
END
$$;
