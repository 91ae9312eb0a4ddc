-- Durable state of subscriptions: checkpoints, parked events and partition leases.
--
-- A subscription that is not partitioned has one partition, 0. Each partition keeps its
-- own checkpoint: the feed point it has handled up to. On SQLite writers take the
-- database's write lock in turn, so positions commit in order and the feed is ordered
-- by position alone; `transaction_id` is always 0 here.
CREATE TABLE IF NOT EXISTS subscription_checkpoints (
    subscription   TEXT    NOT NULL,
    partition      INTEGER NOT NULL CHECK (partition >= 0),
    transaction_id INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (subscription, partition)
);

-- Events a subscription's handler failed on, past its retries, with the last error.
CREATE TABLE IF NOT EXISTS subscription_parked (
    subscription   TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    partition      INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    error          TEXT    NOT NULL,
    parked_at      TEXT    NOT NULL,
    PRIMARY KEY (subscription, event_id)
);

-- Which process runs which partition, until when (RFC 3339 text, UTC).
CREATE TABLE IF NOT EXISTS subscription_leases (
    subscription TEXT    NOT NULL,
    partition    INTEGER NOT NULL CHECK (partition >= 0),
    owner        TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    PRIMARY KEY (subscription, partition)
);

-- The processes running a partitioned subscription, each until its heartbeat expires:
-- each takes a fair share of the partitions (their number divided by the live members).
CREATE TABLE IF NOT EXISTS subscription_members (
    subscription TEXT        NOT NULL,
    owner        TEXT        NOT NULL,
    expires_at   TEXT        NOT NULL,
    PRIMARY KEY (subscription, owner)
);
