-- Audit and replay (issue 17).

-- The tamper-evident chain: event `seq` of the log's order (tx_id,
-- global_position) hashes to sha256(hash of seq-1 || canonical bytes of the
-- event) (eventstore::seal). Written by the `log_sealer` subscription after
-- the fact, so appends are not serialised on the chain. Nothing but the
-- sealer writes here; `paca events verify` recomputes it.
-- One index only (the sealer inserts a row per event beside the writers);
-- verify joins on global_position with a hash join over the whole log anyway.
CREATE TABLE event_seals (
    seq             BIGINT PRIMARY KEY,
    global_position BIGINT NOT NULL,
    hash            BYTEA  NOT NULL
);

-- `paca subscriptions pause NAME`: a paused subscription's runner keeps its
-- lock but delivers nothing until resumed.
ALTER TABLE checkpoints ADD COLUMN paused BOOLEAN NOT NULL DEFAULT false;

-- "What else did this request do": events by request/correlation id and by
-- the event that caused them (GET /admin/audit/requests/:id).
CREATE INDEX events_correlation_idx ON events ((metadata->>'correlation_id'))
    WHERE metadata ? 'correlation_id';
CREATE INDEX events_causation_idx ON events ((metadata->>'causation_id'))
    WHERE metadata ? 'causation_id';
