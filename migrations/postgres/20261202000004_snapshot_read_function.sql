-- The snapshot half of a load, as a function that first limits how long it may wait
-- for a lock on `snapshots` (`lock_timeout_`, e.g. '2000ms', for the calling statement
-- only). A statement that names `snapshots` itself waits for that table's locks before
-- it runs, where no setting can reach it; one that calls this function reads the table
-- only once the limit is set, so a lock on `snapshots` (a migration, `LOCK TABLE`, a
-- long `VACUUM FULL`) fails the read after `lock_timeout_` instead of holding the load
-- and its connection until the lock is released.
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
        WHERE s.aggregate_id = aggregate_id_ AND s.aggregate_type = aggregate_type_;
END
$$;
