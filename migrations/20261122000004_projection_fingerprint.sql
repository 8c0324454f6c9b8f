-- The read-model DDL (and projector version) a projection was built with.
-- A server whose code has a different fingerprint rebuilds on start, so a
-- new read-model table can never be missing from an existing database.
ALTER TABLE projection_state ADD COLUMN fingerprint TEXT NULL;
