-- Every append updates its stream's row (the version check). With room on
-- the page the new row version stays there (a HOT update: no index insert,
-- and pruning reclaims the old one without VACUUM). Applies to pages
-- written from now on; `VACUUM FULL streams` repacks an existing table.
ALTER TABLE streams SET (fillfactor = 80);
