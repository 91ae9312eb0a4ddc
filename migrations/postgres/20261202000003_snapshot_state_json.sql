-- Snapshot states become `json`, as event payloads are: `jsonb` rewrites numbers as
-- decimals, which turns -0.0 into 0 (a state restored from it would differ from a
-- replay), and reads back slower (the server rebuilds the text of every state).
-- `json` keeps the state byte for byte as it was written.
ALTER TABLE snapshots ALTER COLUMN state TYPE JSON USING state::json;
