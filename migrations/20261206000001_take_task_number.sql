-- The fused task create (commands/src/tasks.rs): the command decides the
-- task's number from the project's counter as this node last left it, and
-- inside its one-round-trip append moves the counter to exactly that
-- number. If the counter is elsewhere (another node, or the transactional
-- path, took a number meanwhile) it raises SQLSTATE PX409, the whole
-- append rolls back, and the command reads the counter and decides again:
-- numbers stay gapless and unique, as with the transactional path's
-- increment.
CREATE FUNCTION take_task_number(p_project UUID, p_number BIGINT) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    taken BIGINT;
BEGIN
    INSERT INTO task_counters (project_id, last_number) VALUES (p_project, 1)
    ON CONFLICT (project_id) DO UPDATE SET last_number = task_counters.last_number + 1
    RETURNING last_number INTO taken;
    IF taken <> p_number THEN
        RAISE EXCEPTION 'task number % of project % is no longer free (the counter is at %)',
            p_number, p_project, taken - 1
            USING ERRCODE = 'PX409';
    END IF;
END
$$;
