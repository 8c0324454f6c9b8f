-- Per-project task numbers. The row is incremented inside the task-creation
-- transaction: concurrent creations in one project queue on the row lock,
-- and a rolled-back creation rolls its number back, so numbers are dense
-- and unique.
CREATE TABLE task_counters (
    project_id  UUID   PRIMARY KEY,
    last_number BIGINT NOT NULL
);
