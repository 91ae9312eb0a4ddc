-- The feed's order: by committing transaction, then by position.
--
-- Positions come from a sequence and are handed out when a row is inserted, not when it
-- commits, so two overlapping appends can commit out of position order: a reader that
-- checkpoints at position 11 while 10 is still in flight would skip 10 for ever. The feed
-- therefore orders events by the id of the transaction that wrote them, and only shows
-- transactions older than the oldest one still running (`pg_snapshot_xmin` of the
-- reader's snapshot): every transaction below that horizon has committed or aborted, so
-- nothing can ever appear behind a reader's checkpoint.
--
-- Rows written before this migration get transaction id 0: they come first, in position
-- order. The constant default makes the new column a catalog change, not a rewrite.
ALTER TABLE events ADD COLUMN IF NOT EXISTS transaction_id xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();

-- Serves the feed's range scans in its order.
CREATE INDEX IF NOT EXISTS events_feed ON events (transaction_id, position);
