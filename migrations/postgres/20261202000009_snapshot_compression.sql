-- Large snapshot states stored compressed (`SnapshotPolicy::compress_over`): a zstd
-- frame of the state's JSON text in `state_zstd`, with `state` NULL. Plain and
-- compressed rows live side by side; exactly one of the two columns is set. A new
-- nullable column and a dropped NOT NULL change only the catalog (no table rewrite),
-- and the check is added NOT VALID: rows already stored (all plain) are not scanned,
-- new and updated rows are checked.
--
-- Every statement checks first what it changes, so a table created from the schema
-- text (`migrations::schema`) is adopted.
ALTER TABLE snapshots ADD COLUMN IF NOT EXISTS state_zstd BYTEA;
ALTER TABLE snapshots ALTER COLUMN state DROP NOT NULL;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'ck_snapshots_one_state' AND conrelid = 'snapshots'::regclass
    ) THEN
        ALTER TABLE snapshots ADD CONSTRAINT ck_snapshots_one_state
            CHECK ((state IS NULL) <> (state_zstd IS NULL)) NOT VALID;
    END IF;
END
$$;

-- The snapshot reads of a load (migrations 4 and 8) return the frame too, as a last
-- column: callers that name the first four columns read on unchanged. A function's
-- result type cannot be changed in place, so each is dropped and created again, inside
-- this migration's transaction: no load sees it missing.
DROP FUNCTION IF EXISTS eventsource_snapshot(TEXT, UUID, TEXT);

CREATE FUNCTION eventsource_snapshot(
    aggregate_type_ TEXT,
    aggregate_id_ UUID,
    lock_timeout_ TEXT
)
RETURNS TABLE (
    version BIGINT, schema_version INTEGER, state TEXT, created_at TIMESTAMPTZ,
    state_zstd BYTEA
)
LANGUAGE plpgsql
ROWS 1
AS $$
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout_, true);
    RETURN QUERY
        SELECT s.version, s.schema_version, s.state::text, s.created_at, s.state_zstd
        FROM snapshots s
        WHERE s.aggregate_id = aggregate_id_ AND s.aggregate_type = aggregate_type_
        ORDER BY s.version DESC
        LIMIT 1;
END
$$;

DROP FUNCTION IF EXISTS eventsource_snapshot_at(TEXT, UUID, BIGINT, TEXT);

CREATE FUNCTION eventsource_snapshot_at(
    aggregate_type_ TEXT,
    aggregate_id_ UUID,
    at_or_below_ BIGINT,
    lock_timeout_ TEXT
)
RETURNS TABLE (
    version BIGINT, schema_version INTEGER, state TEXT, created_at TIMESTAMPTZ,
    state_zstd BYTEA
)
LANGUAGE plpgsql
ROWS 1
AS $$
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout_, true);
    RETURN QUERY
        SELECT s.version, s.schema_version, s.state::text, s.created_at, s.state_zstd
        FROM snapshots s
        WHERE s.aggregate_id = aggregate_id_ AND s.aggregate_type = aggregate_type_
          AND s.version <= at_or_below_
        ORDER BY s.version DESC
        LIMIT 1;
END
$$;
