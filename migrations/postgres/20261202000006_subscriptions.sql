-- Durable state of subscriptions: checkpoints, parked events and partition leases.
--
-- A subscription that is not partitioned has one partition, 0. Each partition keeps
-- its own checkpoint: the feed point (transaction id, position) it has handled up to.
CREATE TABLE IF NOT EXISTS subscription_checkpoints (
    subscription   TEXT        NOT NULL,
    partition      INTEGER     NOT NULL CHECK (partition >= 0),
    transaction_id BIGINT      NOT NULL,
    position       BIGINT      NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, partition)
);

-- Events a subscription's handler failed on, past its retries, with the last error. A
-- parked event stays here until it is retried successfully or skipped.
CREATE TABLE IF NOT EXISTS subscription_parked (
    subscription   TEXT        NOT NULL,
    event_id       UUID        NOT NULL,
    position       BIGINT      NOT NULL,
    aggregate_type TEXT        NOT NULL,
    aggregate_id   UUID        NOT NULL,
    partition      INTEGER     NOT NULL,
    attempts       INTEGER     NOT NULL,
    error          TEXT        NOT NULL,
    parked_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);

-- Which process runs which partition, until when. A lease that is not renewed expires
-- and another process takes the partition over.
CREATE TABLE IF NOT EXISTS subscription_leases (
    subscription TEXT        NOT NULL,
    partition    INTEGER     NOT NULL CHECK (partition >= 0),
    owner        TEXT        NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subscription, partition)
);

-- The processes running a partitioned subscription, each until its heartbeat expires:
-- each takes a fair share of the partitions (their number divided by the live members).
CREATE TABLE IF NOT EXISTS subscription_members (
    subscription TEXT        NOT NULL,
    owner        TEXT        NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subscription, owner)
);
