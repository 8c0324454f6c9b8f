-- Write-side index of task links (commands::write_index): which links a
-- task has on either side, so a DELETE through the target task finds the
-- source stream that owns the link, and a link is not made twice.
CREATE TABLE task_link_index (
    link_id   UUID    PRIMARY KEY,
    source_id UUID    NOT NULL,
    target_id UUID    NOT NULL,
    link_type TEXT    NOT NULL,
    deleted   BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX task_link_index_source_idx ON task_link_index (source_id) WHERE NOT deleted;
CREATE INDEX task_link_index_target_idx ON task_link_index (target_id) WHERE NOT deleted;
