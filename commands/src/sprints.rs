//! Sprint commands. Creating a sprint seeds its Board and Table views;
//! completing or deleting one moves its tasks. Each of these spans several
//! streams (the sprint, its views, the tasks) and commits as one
//! transaction.
//!
//! Lock order, the same in every command that takes more than one, so that
//! concurrent commands queue instead of deadlocking: sprint stream rows
//! (ascending id) -> a view scope's lock -> view stream rows -> task
//! stream rows.
//!
//! Uses, in the same transaction: `views` (`create_view_in`, `delete_view`,
//! `reorder_views`, the scope lock and `scope_view_ids`) for the sprint's
//! tabs, and `tasks::move_tasks_in_tx` for its tasks.

use chrono::{DateTime, Utc};
use domain::project::{Project, ProjectEvent};
use domain::sprint::{Patch, Sprint, SprintCommand, SprintEvent, Target};
use domain::view::{View, ViewCommand, ViewContext, ViewEvent, ViewScope, sprint_defaults};
use domain::{DomainError, ErrorCode};
use eventstore::{AppendTx, LockMode, Metadata};
use uuid::Uuid;

use crate::{CommandError, CommandResult, Commands};

pub struct NewSprint {
    pub name: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub goal: Option<String>,
    pub status: Option<String>,
}

#[derive(Default)]
pub struct SprintPatch {
    pub name: Option<String>,
    pub start_date: Patch<DateTime<Utc>>,
    pub end_date: Patch<DateTime<Utc>>,
    pub goal: Patch<String>,
    pub status: Option<String>,
}

fn not_found() -> DomainError {
    DomainError::new(ErrorCode::SPRINT_NOT_FOUND, "sprint not found")
}

impl Commands {
    /// Locks stream rows in ascending id order (missing streams are
    /// skipped), for commands that decide on several aggregates at once.
    pub async fn lock_streams(&self, tx: &mut AppendTx, ids: &[Uuid]) -> CommandResult<()> {
        tx.lock_streams(ids, LockMode::Exclusive).await?;
        Ok(())
    }

    /// A sprint's state, read inside `tx`.
    pub async fn load_sprint_in(
        &self,
        tx: &mut AppendTx,
        sprint_id: Uuid,
    ) -> CommandResult<Sprint> {
        Ok(self
            .load_in::<SprintEvent, Sprint>(tx.conn(), sprint_id, Sprint::evolve)
            .await?
            .state)
    }

    /// For task commands that put a task into a sprint: shares the
    /// sprint's stream-row lock (so a concurrent completion or deletion of
    /// that sprint either sees the task or runs first and makes this
    /// fail), then checks the sprint is live in the project.
    pub async fn lock_sprint_for_task(
        &self,
        tx: &mut AppendTx,
        project_id: Uuid,
        sprint_id: Uuid,
    ) -> CommandResult<()> {
        tx.lock_streams(&[sprint_id], LockMode::Shared).await?;
        if !self
            .load_sprint_in(tx, sprint_id)
            .await?
            .is_live_in(project_id)
        {
            return Err(not_found().into());
        }
        Ok(())
    }

    pub async fn create_sprint(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        new: NewSprint,
    ) -> CommandResult<Uuid> {
        let sprint_id = Uuid::now_v7();
        let command = SprintCommand::Create {
            project_id,
            name: new.name,
            start_date: new.start_date,
            end_date: new.end_date,
            goal: new.goal,
            status: new.status,
        };
        transact!(self, tx => {
            self.create_sprint_in(tx, meta, project_id, sprint_id, &command)
                .await
        })?;
        Ok(sprint_id)
    }

    /// The sprint and its seeded Board and Table views, inside `tx`.
    pub async fn create_sprint_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        sprint_id: Uuid,
        command: &SprintCommand,
    ) -> CommandResult<()> {
        let project = self
            .load_in::<ProjectEvent, Project>(tx.conn(), project_id, Project::evolve)
            .await?
            .state;
        if !project.is_live() {
            return Err(CommandError::domain(
                ErrorCode::PROJECT_NOT_FOUND,
                "project not found",
            ));
        }
        let mut decide = |s: &Sprint| Ok((s.decide(command.clone())?, vec![]));
        self.execute_in(
            tx,
            sprint_id,
            Some(project_id),
            Sprint::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        // The board collapses the backlog-category columns.
        let mut backlog: Vec<(i64, Uuid)> = project
            .config
            .statuses
            .iter()
            .filter(|(_, s)| s.category == "backlog")
            .map(|(id, s)| (s.position, *id))
            .collect();
        backlog.sort();
        let backlog: Vec<Uuid> = backlog.into_iter().map(|(_, id)| id).collect();
        for view in sprint_defaults(project_id, sprint_id, &backlog) {
            self.create_view_in(tx, meta, Uuid::now_v7(), view).await?;
        }
        Ok(())
    }

    pub async fn update_sprint(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        sprint_id: Uuid,
        patch: SprintPatch,
    ) -> CommandResult<()> {
        let command = SprintCommand::Update {
            name: patch.name,
            start_date: patch.start_date,
            end_date: patch.end_date,
            goal: patch.goal,
            status: patch.status,
        };
        self.execute(
            sprint_id,
            Some(project_id),
            Sprint::evolve,
            meta,
            |s: &Sprint| {
                if !s.is_live_in(project_id) {
                    return Err(not_found());
                }
                Ok((s.decide(command.clone())?, vec![]))
            },
        )
        .await?;
        Ok(())
    }

    /// Completes a sprint: its tasks whose status category is not `done`
    /// move to `move_to` (another open sprint of the project) or to the
    /// backlog, as `task.updated` events in the same transaction.
    pub async fn complete_sprint(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        sprint_id: Uuid,
        move_to: Option<Uuid>,
    ) -> CommandResult<()> {
        transact!(self, tx => {
            self.complete_sprint_in(tx, meta, project_id, sprint_id, move_to)
                .await
        })
    }

    pub async fn complete_sprint_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        sprint_id: Uuid,
        move_to: Option<Uuid>,
    ) -> CommandResult<()> {
        let mut locked = vec![sprint_id];
        locked.extend(move_to);
        self.lock_streams(tx, &locked).await?;
        let target = match move_to {
            None => None,
            Some(id) => {
                let sprint = self.load_sprint_in(tx, id).await?;
                Some(Target {
                    id,
                    sprint: sprint.is_live_in(project_id).then_some(sprint),
                })
            }
        };
        // Read after the sprint's lock: a task put into the sprint by a
        // command that committed before is seen here.
        let in_sprint: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
            "SELECT task_id, status_id FROM task_index
             WHERE sprint_id = $1 AND project_id = $2 AND NOT deleted
             ORDER BY task_number",
        )
        .bind(sprint_id)
        .bind(project_id)
        .fetch_all(tx.conn())
        .await?;
        // Open = not in a status of the `done` category (a task whose
        // status is gone counts as open, as it did in the read model).
        let config = self.project_state(tx.conn(), project_id).await?.config;
        let open_task_ids: Vec<Uuid> = in_sprint
            .into_iter()
            .filter(|(_, status)| {
                status
                    .and_then(|s| config.statuses.get(&s))
                    .is_none_or(|s| s.category != "done")
            })
            .map(|(id, _)| id)
            .collect();
        let mut decide = |s: &Sprint| {
            if !s.is_live_in(project_id) {
                return Err(not_found());
            }
            if move_to == Some(sprint_id) {
                return Err(DomainError::new(
                    ErrorCode::BAD_REQUEST,
                    "move_to_sprint_id must be another sprint",
                ));
            }
            let command = SprintCommand::Complete {
                target: target.clone(),
                open_task_ids: open_task_ids.clone(),
            };
            Ok((s.decide(command)?, vec![]))
        };
        self.execute_in(
            tx,
            sprint_id,
            Some(project_id),
            Sprint::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        self.move_tasks_in_tx(tx, meta, project_id, &open_task_ids, move_to)
            .await
    }

    /// Deletes a sprint with its views; all its tasks go to the backlog.
    pub async fn delete_sprint(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        sprint_id: Uuid,
    ) -> CommandResult<()> {
        transact!(self, tx => self.delete_sprint_in(tx, meta, project_id, sprint_id).await)
    }

    pub async fn delete_sprint_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        sprint_id: Uuid,
    ) -> CommandResult<()> {
        self.lock_streams(tx, &[sprint_id]).await?;
        if !self
            .load_sprint_in(tx, sprint_id)
            .await?
            .is_live_in(project_id)
        {
            return Err(not_found().into());
        }
        let scope = ViewScope {
            project_id,
            context: ViewContext::Sprint,
            sprint_id: Some(sprint_id),
        };
        self.lock_view_scope(tx, &scope).await?;
        let mut view_ids = self.scope_view_ids(tx, &scope).await?;
        view_ids.sort();
        let task_ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT task_id FROM task_index
             WHERE sprint_id = $1 AND project_id = $2 AND NOT deleted
             ORDER BY task_number",
        )
        .bind(sprint_id)
        .bind(project_id)
        .fetch_all(tx.conn())
        .await?;
        let mut decide = |s: &Sprint| {
            let command = SprintCommand::Delete {
                task_ids: task_ids.clone(),
                view_ids: view_ids.clone(),
            };
            Ok((s.decide(command)?, vec![]))
        };
        self.execute_in(
            tx,
            sprint_id,
            Some(project_id),
            Sprint::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        for view_id in &view_ids {
            let mut decide = |v: &View| Ok((v.decide(ViewCommand::DeleteWithSprint)?, vec![]));
            self.execute_in::<ViewEvent, _, _>(
                tx,
                *view_id,
                Some(project_id),
                View::evolve,
                meta,
                &mut decide,
                None,
            )
            .await?;
        }
        self.move_tasks_in_tx(tx, meta, project_id, &task_ids, None)
            .await?;
        self.release_view_scope(tx, &scope).await
    }
}

/// The multi-stream commands run on any executor: their futures are `Send`.
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send(commands: &Commands, meta: &Metadata) {
    fn send<T: Send>(_: T) {}
    let id = Uuid::nil();
    send(commands.create_sprint(
        meta,
        id,
        NewSprint {
            name: String::new(),
            start_date: None,
            end_date: None,
            goal: None,
            status: None,
        },
    ));
    send(commands.complete_sprint(meta, id, id, None));
    send(commands.delete_sprint(meta, id, id));
    send(commands.reorder_views(
        meta,
        ViewScope {
            project_id: id,
            context: ViewContext::Backlog,
            sprint_id: None,
        },
        vec![],
    ));
    send(commands.delete_view(meta, id, id));
}
