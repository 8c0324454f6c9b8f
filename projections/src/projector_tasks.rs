//! Task events -> `tasks` and `task_activities`.

use domain::plugin::PluginActivityEvent;
use domain::task::{FieldValue, TaskChange, TaskEvent, TaskField};
use eventstore::RecordedEvent;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::stmt::{Arg, Stmt};

fn actor(e: &RecordedEvent) -> Option<Uuid> {
    e.metadata
        .pointer("/actor/user_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn actor_agent(e: &RecordedEvent) -> Option<Uuid> {
    e.metadata
        .pointer("/actor/agent_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// The plugin that acted for the user (orchestration host APIs, activity
/// records): `extra.plugin` of a `plugin` actor.
pub(crate) fn actor_plugin(e: &RecordedEvent) -> Option<String> {
    if e.metadata.pointer("/actor/kind").and_then(Value::as_str) != Some("plugin") {
        return None;
    }
    e.metadata
        .pointer("/extra/plugin")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `{plugin, key}` of a task a plugin created under an origin key.
pub fn task_origin(e: &RecordedEvent) -> Option<Value> {
    e.metadata
        .pointer("/extra/origin")
        .filter(|o| o.is_object())
        .cloned()
}

/// `paca.activity_record` from a plugin (its own `plugin_activity` stream):
/// an entry on the named task's activity feed, by the calling user, with
/// the plugin's type and content as recorded. (`version` is the plugin
/// stream's; a revert finds no task change behind the entry and refuses.)
pub fn plugin_activity(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: PluginActivityEvent) {
    let PluginActivityEvent::ActivityRecorded {
        task_id,
        project_id,
        activity_type,
        content,
        ..
    } = event
    else {
        return;
    };
    stmts.push(
        Stmt::new(
            "INSERT INTO task_activities (id, task_id, project_id, actor_user_id, activity_type,
                                          content, event_id, version, created_at, updated_at,
                                          actor_agent_id, actor_plugin)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)",
        )
        .arg(e.event_id)
        .arg(task_id)
        .arg(project_id)
        .arg(actor(e))
        .arg(activity_type)
        .arg(content)
        .arg(e.event_id)
        .arg(e.version)
        .arg(e.recorded_at)
        .arg(actor_agent(e))
        .arg(actor_plugin(e)),
    );
}

fn activity(e: &RecordedEvent, id: Uuid, activity_type: &str, content: Value) -> Stmt {
    Stmt::new(
        "INSERT INTO task_activities (id, task_id, project_id, actor_user_id, activity_type,
                                      content, event_id, version, created_at, updated_at,
                                      actor_agent_id, actor_plugin)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)",
    )
    .arg(id)
    .arg(e.stream_id)
    .arg(e.project_id)
    .arg(actor(e))
    .arg(activity_type.to_owned())
    .arg(content)
    .arg(e.event_id)
    .arg(e.version)
    .arg(e.recorded_at)
    .arg(actor_agent(e))
    .arg(actor_plugin(e))
}

/// `SET` fragments for the tracked fields of a change list.
fn sets(changes: &[TaskChange], args: &mut Vec<Arg>) -> Vec<String> {
    use FieldValue as V;
    let mut sets = Vec::new();
    for c in changes {
        // Stored events were validated when decided; a value that does not
        // decode would be a bug the domain tests catch, so skip, not fail.
        let Ok(value) = c.new_value() else { continue };
        let (column, arg, cast) = match value {
            V::Text(title) => ("title", Arg::Text(Some(title)), ""),
            V::Ref(id) if c.field == TaskField::Status => ("status_id", Arg::Uuid(id), ""),
            V::Ref(id) => ("task_type_id", Arg::Uuid(id), ""),
            V::Int(v) => ("importance", Arg::Int(Some(v)), ""),
            V::OptInt(v) => ("story_points", Arg::Int(v), ""),
            V::Ids(ids) => ("assignee_ids", Arg::Json(Some(json!(ids))), ""),
            V::Id(id) => match c.field {
                TaskField::Reporter => ("reporter_id", Arg::Uuid(id), ""),
                TaskField::Sprint => ("sprint_id", Arg::Uuid(id), ""),
                _ => ("parent_task_id", Arg::Uuid(id), ""),
            },
            V::Date(d) => (
                if c.field == TaskField::StartDate {
                    "start_date"
                } else {
                    "due_date"
                },
                Arg::Text(d.map(|d| d.format("%Y-%m-%d").to_string())),
                "::date",
            ),
            V::Json(v) => ("description", Arg::Json(v), ""),
            V::Tags(tags) => ("tags", Arg::Json(Some(json!(tags))), ""),
            V::Custom(map) => {
                // Merge the changed keys; a null value removes the key.
                args.push(Arg::Json(Some(Value::Object(map))));
                let n = args.len();
                sets.push(format!(
                    "custom_fields = (SELECT COALESCE(jsonb_object_agg(key, value), '{{}}'::jsonb)
                       FROM jsonb_each(tasks.custom_fields || ${n}) WHERE value <> 'null'::jsonb)"
                ));
                continue;
            }
        };
        args.push(arg);
        sets.push(format!("{column} = ${}{cast}", args.len()));
    }
    sets
}

pub fn statements(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: TaskEvent) {
    let task_id = e.stream_id;
    let at = e.recorded_at;
    match event {
        TaskEvent::Created {
            task_number,
            fields: f,
            ..
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO tasks (id, project_id, task_number, title, task_type_id, status_id,
                         sprint_id, parent_task_id, description, importance, story_points,
                         assignee_ids, reporter_id, custom_fields, start_date, due_date, tags,
                         version, created_at, updated_at, origin)
                     VALUES ($1, $2, $3::bigint, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                             $15::date, $16::date, $17, $18, $19, $19, $20)",
                )
                .arg(task_id)
                .arg(e.project_id)
                .arg(task_number)
                .arg(f.title.clone())
                .arg(f.task_type_id)
                .arg(f.status_id)
                .arg(f.sprint_id)
                .arg(f.parent_task_id)
                .arg(f.description)
                .arg(f.importance)
                .arg(f.story_points)
                .arg(serde_json::to_value(&f.assignee_ids).unwrap_or_default())
                .arg(f.reporter_id)
                .arg(Value::Object(f.custom_fields))
                .arg(f.start_date.map(|d| d.to_string()))
                .arg(f.due_date.map(|d| d.to_string()))
                .arg(serde_json::to_value(&f.tags).unwrap_or_default())
                .arg(e.version)
                .arg(at)
                .arg(Arg::Json(task_origin(e))),
            );
            stmts.push(activity(
                e,
                e.event_id,
                "task.created",
                json!({ "title": f.title }),
            ));
        }
        TaskEvent::Updated { changes } => {
            let mut args: Vec<Arg> = vec![task_id.into(), e.version.into(), at.into()];
            let sets = sets(&changes, &mut args);
            let mut stmt = Stmt::new(format!(
                "UPDATE tasks SET {}version = $2, updated_at = $3 WHERE id = $1",
                sets.iter().map(|s| format!("{s}, ")).collect::<String>()
            ));
            stmt.args = args;
            stmts.push(stmt);
            stmts.push(activity(
                e,
                e.event_id,
                "task.updated",
                json!({ "changes": changes }),
            ));
        }
        TaskEvent::Deleted {} => {
            stmts.push(
                Stmt::new(
                    "UPDATE tasks SET deleted_at = $3, version = $2, updated_at = $3 WHERE id = $1",
                )
                .arg(task_id)
                .arg(e.version)
                .arg(at),
            );
            stmts.push(activity(e, e.event_id, "task.deleted", json!({})));
        }
        TaskEvent::CommentAdded {
            comment_id,
            content,
            ..
        } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(activity(e, comment_id, "comment", content));
        }
        TaskEvent::CommentEdited {
            comment_id,
            content,
            ..
        } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(
                Stmt::new("UPDATE task_activities SET content = $2, updated_at = $3 WHERE id = $1")
                    .arg(comment_id)
                    .arg(content)
                    .arg(at),
            );
        }
        TaskEvent::LinkAdded {
            link_id,
            target_task_id,
            link_type,
        } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(
                Stmt::new(
                    "INSERT INTO task_links (id, project_id, source_task_id, target_task_id,
                                             link_type, created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .arg(link_id)
                .arg(e.project_id)
                .arg(task_id)
                .arg(target_task_id)
                .arg(link_type.as_str().to_owned())
                .arg(actor(e))
                .arg(at),
            );
            stmts.push(activity(
                e,
                e.event_id,
                "task.link.added",
                json!({ "target_task_id": target_task_id, "link_type": link_type }),
            ));
        }
        TaskEvent::LinkRemoved { link_id } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(Stmt::new("DELETE FROM task_links WHERE id = $1").arg(link_id));
            stmts.push(activity(
                e,
                e.event_id,
                "task.link.removed",
                json!({ "link_id": link_id }),
            ));
        }
        TaskEvent::CommentDeleted { comment_id } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(
                Stmt::new(
                    "UPDATE task_activities SET deleted_at = $2, updated_at = $2 WHERE id = $1",
                )
                .arg(comment_id)
                .arg(at),
            );
        }
        TaskEvent::AttachmentAdded {
            attachment_id,
            file_id,
            file_name,
            content_type,
            file_size,
        } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(
                Stmt::new(
                    "INSERT INTO task_attachments (id, task_id, project_id, file_id, file_name,
                                                   content_type, file_size, created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .arg(attachment_id)
                .arg(task_id)
                .arg(e.project_id)
                .arg(file_id)
                .arg(file_name.clone())
                .arg(content_type)
                .arg(file_size)
                .arg(actor(e))
                .arg(at),
            );
            stmts.push(activity(
                e,
                e.event_id,
                "task.attachment.added",
                json!({ "file_name": file_name, "file_size": file_size }),
            ));
        }
        TaskEvent::AttachmentRemoved {
            attachment_id,
            file_name,
            file_size,
            ..
        } => {
            stmts.push(
                Stmt::new("UPDATE tasks SET version = $2 WHERE id = $1")
                    .arg(task_id)
                    .arg(e.version),
            );
            stmts.push(Stmt::new("DELETE FROM task_attachments WHERE id = $1").arg(attachment_id));
            stmts.push(activity(
                e,
                e.event_id,
                "task.attachment.removed",
                json!({ "file_name": file_name, "file_size": file_size }),
            ));
        }
    }
}
