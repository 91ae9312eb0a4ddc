-- One entry per stream: the first event of each aggregate. Serves listing the
-- aggregates of a type in id order (`EventStore::aggregate_ids`) without reading every
-- event of every stream.
CREATE INDEX IF NOT EXISTS events_streams ON events (aggregate_type, aggregate_id)
    WHERE version = 1;
