//! Read-model statements for sprint and view streams: `sprints`,
//! `sprint_views` and `view_task_positions`. Every statement's first
//! parameter is the row's primary key, except the one that drops a deleted
//! view's task positions (many rows: a replay barrier).

use domain::sprint::SprintEvent;
use domain::view::ViewEvent;
use eventstore::RecordedEvent;
use uuid::Uuid;

use crate::columns::changes_update;
use crate::stmt::Stmt;

/// The `view_task_positions` row id of a task in a view: deterministic, so
/// a replay produces the same ids and every statement is keyed by one uuid.
pub fn position_row_id(view_id: Uuid, task_id: Uuid) -> Uuid {
    Uuid::new_v5(&view_id, task_id.as_bytes())
}

pub fn sprint(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: SprintEvent) {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        SprintEvent::Created {
            project_id,
            name,
            start_date,
            end_date,
            goal,
            status,
        } => stmts.push(
            Stmt::new(
                "INSERT INTO sprints (id, project_id, name, start_date, end_date, goal, status,
                                      created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .arg(id)
            .arg(project_id)
            .arg(name)
            .arg(start_date)
            .arg(end_date)
            .arg(goal)
            .arg(status)
            .arg(at),
        ),
        SprintEvent::Updated { changes } => {
            stmts.extend(changes_update("sprints", id, at, &changes))
        }
        SprintEvent::Completed { .. } => stmts.push(
            Stmt::new("UPDATE sprints SET status = 'completed', updated_at = $2 WHERE id = $1")
                .arg(id)
                .arg(at),
        ),
        SprintEvent::Deleted { .. } => stmts.push(
            Stmt::new("UPDATE sprints SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                .arg(id)
                .arg(at),
        ),
    }
}

pub fn view(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: ViewEvent) {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        ViewEvent::Created {
            project_id,
            context,
            sprint_id,
            name,
            view_type,
            config,
            position,
        } => stmts.push(
            Stmt::new(
                "INSERT INTO sprint_views (id, project_id, view_context, sprint_id, name, view_type,
                                           config, position, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .arg(id)
            .arg(project_id)
            .arg(context.as_str().to_owned())
            .arg(sprint_id)
            .arg(name)
            .arg(view_type)
            .arg(config)
            .arg(position)
            .arg(at),
        ),
        ViewEvent::Updated { changes } => {
            stmts.extend(changes_update("sprint_views", id, at, &changes))
        }
        ViewEvent::Reordered { position, .. } => stmts.push(
            Stmt::new("UPDATE sprint_views SET position = $2, updated_at = $3 WHERE id = $1")
                .arg(id)
                .arg(position)
                .arg(at),
        ),
        ViewEvent::TaskPositioned {
            task_id,
            position,
            group_key,
        } => {
            // An upsert as delete + insert: both keyed by the row id, so a
            // replay can batch them (an ON CONFLICT insert would be a barrier).
            let row = position_row_id(id, task_id);
            stmts.push(Stmt::new("DELETE FROM view_task_positions WHERE id = $1").arg(row));
            stmts.push(
                Stmt::new(
                    "INSERT INTO view_task_positions (id, view_id, task_id, position, group_key,
                                                      updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .arg(row)
                .arg(id)
                .arg(task_id)
                .arg(position)
                .arg(group_key)
                .arg(at),
            );
        }
        ViewEvent::Deleted { .. } => {
            stmts.push(Stmt::new("DELETE FROM sprint_views WHERE id = $1").arg(id));
            // Many rows: no row key, so replays treat it as a barrier.
            stmts.push(Stmt::new("DELETE FROM view_task_positions WHERE view_id = $1").arg(id));
        }
    }
}
