-- Gives the calling session the SQL-level prepared statements a fused
-- batch executes (eventstore/src/fused.rs, `Stmt::render_execute`).
--
-- `p_names[i]` is prepared by `p_statements[i]` (a whole `PREPARE name
-- (types) AS …` statement) unless the session already holds it; with
-- `p_replace` every named statement is deallocated first and prepared
-- again (its tables changed shape: PostgreSQL answers "cached plan must
-- not change result type"). Prepared statements belong to the session and
-- are not transactional, so what this prepares stays after the call's
-- transaction ends, and the batch that needed them runs again at once.
CREATE FUNCTION prepare_statements(p_names TEXT[], p_statements TEXT[], p_replace BOOLEAN)
RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_names, 1), 0) LOOP
        IF EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = p_names[i]) THEN
            IF NOT p_replace THEN
                CONTINUE;
            END IF;
            EXECUTE format('DEALLOCATE %I', p_names[i]);
        END IF;
        EXECUTE p_statements[i];
    END LOOP;
END
$$;
