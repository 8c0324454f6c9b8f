-- A fused append's stream checks in one function call (eventstore/src/fused.rs).
--
-- The fused batch used to check its guards with one `expect_stream_version`
-- call each, move its stream with an `UPDATE`, and then call
-- `expect_stream_version` again on its own stream (an `expected` above the
-- stream's version matches no row, and the events would then be inserted
-- after a gap). pg_stat_statements over `bench http` put those calls at 19 %
-- of the database's statement time, above the event insert itself. This
-- does the same in one call, and the own stream's check becomes the
-- `UPDATE`'s own row count:
--
-- 1. Each guard `(p_guards[i], p_versions[i])` is read FOR SHARE and must
--    be at its version (a missing stream is at 0), in the order given, as
--    `expect_stream_version` did; a moved guard raises PX409 naming it.
-- 2. When `p_stream` is not null it is moved from `p_expected` to
--    `p_expected + p_count`: inserted when `p_expected` is 0 (one that
--    exists fails `streams_pkey`), otherwise updated only from exactly
--    `p_expected`; no row updated (another append got there first, or a
--    gap) raises PX409 naming `p_stream`. A concurrent appender's row lock
--    is waited for first, so the check sees its commit.
--
-- `expect_stream_version` stays for servers of the previous release that
-- may still be running against this database during an upgrade.
CREATE FUNCTION claim_stream(p_stream UUID, p_type TEXT, p_expected BIGINT, p_count BIGINT,
                             p_guards UUID[], p_versions BIGINT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_guards, 1), 0) LOOP
        IF COALESCE((SELECT version FROM streams WHERE stream_id = p_guards[i] FOR SHARE), 0)
           <> p_versions[i] THEN
            RAISE EXCEPTION 'stream % is no longer at version %', p_guards[i], p_versions[i]
                USING ERRCODE = 'PX409';
        END IF;
    END LOOP;
    IF p_stream IS NULL THEN
        RETURN;
    END IF;
    IF p_expected = 0 THEN
        INSERT INTO streams (stream_id, stream_type, version) VALUES (p_stream, p_type, p_count);
    ELSE
        UPDATE streams SET version = p_expected + p_count
         WHERE stream_id = p_stream AND version = p_expected;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'stream % is no longer at version %', p_stream, p_expected
                USING ERRCODE = 'PX409';
        END IF;
    END IF;
END
$$;
