//! Doc and folder events -> `doc_folders`, `docs`, `doc_snapshots` (one
//! row per version: the id is the event's id), `doc_activities` (the doc
//! feed, folder entries included with no document) and `doc_files`.
//! A deleted folder's contents are deleted by their own events.

use domain::doc::{DocEvent, DocField, DocFolderEvent};
use eventstore::RecordedEvent;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::columns::changes_update;
use crate::stmt::{Arg, Stmt};

fn actor(e: &RecordedEvent, key: &str) -> Option<Uuid> {
    e.metadata
        .pointer(&format!("/actor/{key}"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn activity(
    e: &RecordedEvent,
    id: Uuid,
    document_id: Option<Uuid>,
    folder_id: Option<Uuid>,
    activity_type: &str,
    content: Value,
) -> Stmt {
    Stmt::new(
        "INSERT INTO doc_activities (id, document_id, folder_id, project_id, actor_user_id,
                                     actor_agent_id, activity_type, content, event_id, version,
                                     created_at, updated_at, actor_plugin)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)",
    )
    .arg(id)
    .arg(document_id)
    .arg(folder_id)
    .arg(e.project_id)
    .arg(actor(e, "user_id"))
    .arg(actor(e, "agent_id"))
    .arg(activity_type.to_owned())
    .arg(content)
    .arg(e.event_id)
    .arg(e.version)
    .arg(e.recorded_at)
    .arg(crate::projector_tasks::actor_plugin(e))
}

/// The first version of a document.
fn first_snapshot(e: &RecordedEvent, number: i64, title: String, content: Value) -> Stmt {
    Stmt::new(
        "INSERT INTO doc_snapshots (id, document_id, project_id, snapshot_number, title, content,
                                    created_by, created_by_agent, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .arg(e.event_id)
    .arg(e.stream_id)
    .arg(e.project_id)
    .arg(number)
    .arg(title)
    .arg(content)
    .arg(actor(e, "user_id"))
    .arg(actor(e, "agent_id"))
    .arg(e.recorded_at)
}

pub fn folder(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: DocFolderEvent) {
    let id = e.stream_id;
    let at = e.recorded_at;
    match event {
        DocFolderEvent::Created {
            project_id,
            name,
            parent_id,
            position,
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO doc_folders (id, project_id, parent_id, name, position,
                                              created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .arg(id)
                .arg(project_id)
                .arg(parent_id)
                .arg(name.clone())
                .arg(position)
                .arg(at),
            );
            stmts.push(activity(
                e,
                e.event_id,
                None,
                Some(id),
                "doc.folder.created",
                json!({ "name": name, "parent_id": parent_id }),
            ));
        }
        DocFolderEvent::Updated { changes } => {
            stmts.extend(changes_update("doc_folders", id, at, &changes));
            stmts.push(activity(
                e,
                e.event_id,
                None,
                Some(id),
                "doc.folder.updated",
                json!({ "changes": changes }),
            ));
        }
        DocFolderEvent::Deleted { name, .. } => {
            stmts.push(
                Stmt::new("UPDATE doc_folders SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                    .arg(id)
                    .arg(at),
            );
            stmts.push(activity(
                e,
                e.event_id,
                None,
                Some(id),
                "doc.folder.deleted",
                json!({ "name": name }),
            ));
        }
    }
}

fn touch(e: &RecordedEvent) -> Stmt {
    Stmt::new("UPDATE docs SET version = $2 WHERE id = $1")
        .arg(e.stream_id)
        .arg(e.version)
}

pub fn doc(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: DocEvent) {
    let id = e.stream_id;
    let at = e.recorded_at;
    let user = actor(e, "user_id");
    match event {
        DocEvent::Created {
            project_id,
            title,
            folder_id,
            content,
            position,
            snapshot_number,
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO docs (id, project_id, folder_id, title, content, position,
                                       created_by, updated_by, version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $9)",
                )
                .arg(id)
                .arg(project_id)
                .arg(folder_id)
                .arg(title.clone())
                .arg(content.clone())
                .arg(position)
                .arg(user)
                .arg(e.version)
                .arg(at),
            );
            stmts.push(first_snapshot(e, snapshot_number, title.clone(), content));
            stmts.push(activity(
                e,
                e.event_id,
                Some(id),
                folder_id,
                "doc.created",
                json!({ "title": title }),
            ));
        }
        DocEvent::Updated {
            changes,
            snapshot_number,
            restored_from,
        } => {
            let title = changes
                .iter()
                .find(|c| c.field == DocField::Title)
                .and_then(|c| c.new.as_str().map(str::to_owned));
            let content = changes
                .iter()
                .find(|c| c.field == DocField::Content)
                .map(|c| c.new.clone());
            let position = changes
                .iter()
                .find(|c| c.field == DocField::Position)
                .and_then(|c| c.new.as_f64());
            if let Some(number) = snapshot_number {
                // Unchanged parts of the version come from the row as it
                // is before this event's UPDATE.
                let restored = restored_from
                    .as_ref()
                    .map(|r| (r.snapshot_id, r.snapshot_number));
                let mut stmt = Stmt::new(
                    "INSERT INTO doc_snapshots (id, document_id, project_id, snapshot_number,
                                                title, content, created_by, created_by_agent,
                                                restored_from, restored_from_number, created_at)
                     SELECT $1, $2, $3, $4, COALESCE($5, d.title), COALESCE($6, d.content),
                            $7, $8, $9, $10, $11
                     FROM docs d WHERE d.id = $2",
                );
                stmt.args = vec![
                    e.event_id.into(),
                    id.into(),
                    e.project_id.into(),
                    number.into(),
                    Arg::Text(title.clone()),
                    Arg::Json(content.clone()),
                    user.into(),
                    actor(e, "agent_id").into(),
                    restored.map(|r| r.0).into(),
                    Arg::Int(restored.map(|r| r.1)),
                    at.into(),
                ];
                stmts.push(stmt);
            }
            let mut args: Vec<Arg> = vec![id.into(), at.into(), e.version.into(), user.into()];
            let mut sets = Vec::new();
            if title.is_some() {
                args.push(Arg::Text(title));
                sets.push(format!("title = ${}", args.len()));
            }
            if content.is_some() {
                args.push(Arg::Json(content));
                sets.push(format!("content = ${}", args.len()));
            }
            if position.is_some() {
                args.push(Arg::Float(position));
                sets.push(format!("position = ${}", args.len()));
            }
            let mut stmt = Stmt::new(format!(
                "UPDATE docs SET {}updated_at = $2, version = $3, updated_by = $4 WHERE id = $1",
                sets.iter().map(|s| format!("{s}, ")).collect::<String>()
            ));
            stmt.args = args;
            stmts.push(stmt);
            // The feed names the fields; the content itself is in the
            // snapshots (and their diffs), not repeated here.
            let listed: Vec<Value> = changes
                .iter()
                .map(|c| {
                    if c.field == DocField::Content {
                        json!({ "field": "content" })
                    } else {
                        json!({ "field": c.field, "old": c.old, "new": c.new })
                    }
                })
                .collect();
            let mut content = json!({ "changes": listed });
            if let Some(n) = snapshot_number {
                content["snapshot_number"] = json!(n);
            }
            if let Some(r) = restored_from {
                content["restored_from"] = json!(r);
            }
            stmts.push(activity(
                e,
                e.event_id,
                Some(id),
                None,
                "doc.updated",
                content,
            ));
        }
        DocEvent::Moved {
            old_folder_id,
            folder_id,
        } => {
            stmts.push(
                Stmt::new(
                    "UPDATE docs SET folder_id = $2, updated_at = $3, version = $4, updated_by = $5
                     WHERE id = $1",
                )
                .arg(id)
                .arg(folder_id)
                .arg(at)
                .arg(e.version)
                .arg(user),
            );
            stmts.push(activity(
                e,
                e.event_id,
                Some(id),
                folder_id,
                "doc.moved",
                json!({ "old_folder_id": old_folder_id, "new_folder_id": folder_id }),
            ));
        }
        DocEvent::Deleted { title } => {
            stmts.push(
                Stmt::new(
                    "UPDATE docs SET deleted_at = $2, updated_at = $2, version = $3 WHERE id = $1",
                )
                .arg(id)
                .arg(at)
                .arg(e.version),
            );
            stmts.push(activity(
                e,
                e.event_id,
                Some(id),
                None,
                "doc.deleted",
                json!({ "title": title }),
            ));
        }
        DocEvent::CommentAdded {
            comment_id,
            content,
            ..
        } => {
            stmts.push(touch(e));
            stmts.push(activity(e, comment_id, Some(id), None, "comment", content));
        }
        DocEvent::CommentEdited {
            comment_id,
            content,
            ..
        } => {
            stmts.push(touch(e));
            stmts.push(
                Stmt::new("UPDATE doc_activities SET content = $2, updated_at = $3 WHERE id = $1")
                    .arg(comment_id)
                    .arg(content)
                    .arg(at),
            );
        }
        DocEvent::CommentDeleted { comment_id } => {
            stmts.push(touch(e));
            stmts.push(
                Stmt::new(
                    "UPDATE doc_activities SET deleted_at = $2, updated_at = $2 WHERE id = $1",
                )
                .arg(comment_id)
                .arg(at),
            );
        }
        DocEvent::FileAdded {
            file_id,
            file_name,
            content_type,
            file_size,
        } => {
            stmts.push(touch(e));
            stmts.push(
                Stmt::new(
                    "INSERT INTO doc_files (id, document_id, project_id, file_name, content_type,
                                            file_size, created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .arg(file_id)
                .arg(id)
                .arg(e.project_id)
                .arg(file_name.clone())
                .arg(content_type)
                .arg(file_size)
                .arg(user)
                .arg(at),
            );
            stmts.push(activity(
                e,
                e.event_id,
                Some(id),
                None,
                "doc.file.added",
                json!({ "file_id": file_id, "file_name": file_name, "file_size": file_size }),
            ));
        }
        DocEvent::FileRemoved {
            file_id,
            file_name,
            file_size,
        } => {
            stmts.push(touch(e));
            stmts.push(Stmt::new("DELETE FROM doc_files WHERE id = $1").arg(file_id));
            stmts.push(activity(
                e,
                e.event_id,
                Some(id),
                None,
                "doc.file.removed",
                json!({ "file_id": file_id, "file_name": file_name, "file_size": file_size }),
            ));
        }
    }
}
