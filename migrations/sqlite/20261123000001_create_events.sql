-- The event log: one row per event, in the order the events were appended.
--
-- `position` is the global order of the feed read by `read_all` (AUTOINCREMENT: never
-- reused). A stream is the set of rows of one (aggregate_type, aggregate_id); the unique
-- constraint on (aggregate_type, aggregate_id, version) keeps its versions unique and
-- serves stream reads in version order.
--
-- Ids are UUIDs as lower-case hyphenated TEXT, timestamps are RFC 3339 TEXT in UTC with
-- microseconds (`2026-11-23T12:00:00.123456Z`), payload and metadata are JSON TEXT.
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, version)
);
