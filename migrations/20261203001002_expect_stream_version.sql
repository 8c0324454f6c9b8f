-- The guard of the fused append (eventstore/src/fused.rs): a command that
-- decided from another stream's state (a task command reads its project's
-- configuration and members) checks, inside its one-round-trip append,
-- that the stream is still at the version it read. A stream that moved
-- raises SQLSTATE PX409, which rolls the append back; the command reloads
-- and decides again. A missing stream is at version 0.
--
-- The row is read FOR SHARE, so the lock holds until the append commits:
-- a concurrent change of that stream (which locks its row FOR UPDATE)
-- waits for the append, or the append waits for it and then fails the
-- check; the same exclusion the transactional path gets from
-- `lock_streams(.., Shared)`.
CREATE FUNCTION expect_stream_version(p_stream UUID, p_version BIGINT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE((SELECT version FROM streams WHERE stream_id = p_stream FOR SHARE), 0)
       <> p_version THEN
        RAISE EXCEPTION 'stream % is no longer at version %', p_stream, p_version
            USING ERRCODE = 'PX409';
    END IF;
END
$$;
