//! Interaction-view commands: views of a context (a sprint's tabs, the
//! backlog, the timeline) and each view's manual task positions.
//!
//! Decisions over a whole context (keep at least one view, reorder exactly
//! the context's views, next free tab position) read the context's views
//! from the write-side `view_index` under a per-scope lock row taken in the
//! append transaction: every command that changes a scope's set of views
//! takes it first, so they queue and each sees the others' committed work
//! (the index is written by its inline projector in the same transaction).
//!
//! Uses: `sprints::lock_streams` and `load_sprint_in` (a sprint-context
//! scope must name a live sprint).

use domain::view::{
    TaskPosition, View, ViewCommand, ViewEvent, ViewScope, check_task_positions, plan_reorder,
    project_defaults,
};
use domain::{DomainError, ErrorCode};
use eventstore::{AppendTx, Metadata};
use serde_json::Value;
use uuid::Uuid;

use crate::{CommandError, CommandResult, Commands};

/// `reservations` scope of the per-context lock rows.
const SCOPE_LOCK: &str = "view_scope";

pub struct NewView {
    pub name: String,
    pub view_type: Option<String>,
    pub config: Option<Value>,
    /// Defaults to after the context's last tab.
    pub position: Option<f64>,
}

#[derive(Default)]
pub struct ViewPatch {
    pub name: Option<String>,
    pub view_type: Option<String>,
    pub config: Option<Value>,
    pub position: Option<f64>,
}

fn not_found() -> DomainError {
    DomainError::new(ErrorCode::VIEW_NOT_FOUND, "view not found")
}

impl Commands {
    /// Takes the scope's lock row until the transaction ends.
    pub(crate) async fn lock_view_scope(
        &self,
        tx: &mut AppendTx,
        scope: &ViewScope,
    ) -> CommandResult<()> {
        sqlx::query(
            "INSERT INTO reservations (scope, key, owner_id) VALUES ($1, $2, $3)
             ON CONFLICT (scope, key) DO UPDATE SET owner_id = EXCLUDED.owner_id",
        )
        .bind(SCOPE_LOCK)
        .bind(scope.key())
        .bind(scope.project_id)
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    /// Drops a scope's lock row once the scope is gone (a deleted sprint).
    pub(crate) async fn release_view_scope(
        &self,
        tx: &mut AppendTx,
        scope: &ViewScope,
    ) -> CommandResult<()> {
        sqlx::query("DELETE FROM reservations WHERE scope = $1 AND key = $2")
            .bind(SCOPE_LOCK)
            .bind(scope.key())
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// The scope's views in tab order; call with the scope's lock held.
    pub(crate) async fn scope_view_ids(
        &self,
        tx: &mut AppendTx,
        scope: &ViewScope,
    ) -> CommandResult<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT view_id FROM view_index
             WHERE project_id = $1 AND context = $2 AND sprint_id IS NOT DISTINCT FROM $3
               AND NOT deleted
             ORDER BY position, created, view_id",
        )
        .bind(scope.project_id)
        .bind(scope.context.as_str())
        .bind(scope.sprint_id)
        .fetch_all(tx.conn())
        .await?)
    }

    /// Checks the scope's sprint (for sprint context) is live in the
    /// project; call with the scope's lock held, which a sprint deletion
    /// also takes.
    async fn check_scope(&self, tx: &mut AppendTx, scope: &ViewScope) -> CommandResult<()> {
        if let Some(sprint_id) = scope.sprint_id
            && !self
                .load_sprint_in(tx, sprint_id)
                .await?
                .is_live_in(scope.project_id)
        {
            return Err(CommandError::domain(
                ErrorCode::SPRINT_NOT_FOUND,
                "sprint not found",
            ));
        }
        Ok(())
    }

    /// Appends a `view.created` for a new view inside `tx`.
    pub(crate) async fn create_view_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        view_id: Uuid,
        command: ViewCommand,
    ) -> CommandResult<()> {
        let project_id = match &command {
            ViewCommand::Create { scope, .. } => scope.project_id,
            _ => {
                return Err(CommandError::Infra(crate::InfraError::Bug(
                    "create_view_in needs a Create",
                )));
            }
        };
        let mut decide = |v: &View| Ok((v.decide(command.clone())?, vec![]));
        self.execute_in(
            tx,
            view_id,
            Some(project_id),
            View::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        Ok(())
    }

    /// The backlog table and timeline roadmap of a new project, in the
    /// project's creation transaction.
    pub async fn seed_project_views(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        epic_type_id: Uuid,
    ) -> CommandResult<()> {
        for view in project_defaults(project_id, epic_type_id) {
            self.create_view_in(tx, meta, Uuid::now_v7(), view).await?;
        }
        Ok(())
    }

    pub async fn create_view(
        &self,
        meta: &Metadata,
        scope: ViewScope,
        new: NewView,
    ) -> CommandResult<Uuid> {
        let view_id = Uuid::now_v7();
        transact!(self, tx => self.create_scoped_view_in(tx, meta, view_id, scope, &new).await)?;
        Ok(view_id)
    }

    /// A user-created view, inside `tx`: takes the scope's lock, checks the
    /// scope, and places it after the last tab unless told otherwise.
    pub async fn create_scoped_view_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        view_id: Uuid,
        scope: ViewScope,
        new: &NewView,
    ) -> CommandResult<()> {
        self.lock_view_scope(tx, &scope).await?;
        self.check_scope(tx, &scope).await?;
        let position = match new.position {
            Some(position) => position,
            None => {
                sqlx::query_scalar(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM view_index
                     WHERE project_id = $1 AND context = $2
                       AND sprint_id IS NOT DISTINCT FROM $3 AND NOT deleted",
                )
                .bind(scope.project_id)
                .bind(scope.context.as_str())
                .bind(scope.sprint_id)
                .fetch_one(tx.conn())
                .await?
            }
        };
        let command = ViewCommand::Create {
            scope,
            name: new.name.clone(),
            view_type: new.view_type.clone(),
            config: new.config.clone(),
            position,
        };
        self.create_view_in(tx, meta, view_id, command).await
    }

    /// A command on one view of the project (not changing its context's
    /// set of views).
    async fn view_command(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        view_id: Uuid,
        command: ViewCommand,
    ) -> CommandResult<()> {
        self.execute(view_id, Some(project_id), View::evolve, meta, |v: &View| {
            if !v.is_live_in(project_id) {
                return Err(not_found());
            }
            Ok((v.decide(command.clone())?, vec![]))
        })
        .await?;
        Ok(())
    }

    pub async fn update_view(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        view_id: Uuid,
        patch: ViewPatch,
    ) -> CommandResult<()> {
        let command = ViewCommand::Update {
            name: patch.name,
            view_type: patch.view_type,
            config: patch.config,
            position: patch.position,
        };
        self.view_command(meta, project_id, view_id, command).await
    }

    pub async fn delete_view(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        view_id: Uuid,
    ) -> CommandResult<()> {
        transact!(self, tx => self.delete_view_in(tx, meta, project_id, view_id).await)
    }

    pub async fn delete_view_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        view_id: Uuid,
    ) -> CommandResult<()> {
        // The scope never changes, so it can be read before any lock.
        let view = self
            .load_in::<ViewEvent, View>(tx.conn(), view_id, View::evolve)
            .await?
            .state;
        if !view.is_live_in(project_id) {
            return Err(not_found().into());
        }
        let scope = view.scope();
        self.lock_view_scope(tx, &scope).await?;
        let views_in_context = self.scope_view_ids(tx, &scope).await?.len();
        let mut decide = |v: &View| {
            if !v.is_live_in(project_id) {
                return Err(not_found());
            }
            Ok((v.decide(ViewCommand::Delete { views_in_context })?, vec![]))
        };
        self.execute_in(
            tx,
            view_id,
            Some(project_id),
            View::evolve,
            meta,
            &mut decide,
            None,
        )
        .await?;
        Ok(())
    }

    /// Reorders a context's tabs: `view_ids` must be exactly its views.
    pub async fn reorder_views(
        &self,
        meta: &Metadata,
        scope: ViewScope,
        view_ids: Vec<Uuid>,
    ) -> CommandResult<()> {
        transact!(self, tx => self.reorder_views_in(tx, meta, scope, &view_ids).await)
    }

    pub async fn reorder_views_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        scope: ViewScope,
        view_ids: &[Uuid],
    ) -> CommandResult<()> {
        self.lock_view_scope(tx, &scope).await?;
        self.check_scope(tx, &scope).await?;
        let current = self.scope_view_ids(tx, &scope).await?;
        let plan = plan_reorder(&current, view_ids)?;
        self.lock_streams(tx, &current).await?;
        for (view_id, position) in plan {
            let mut decide =
                |v: &View| Ok((v.decide(ViewCommand::Reposition { position })?, vec![]));
            self.execute_in(
                tx,
                view_id,
                Some(scope.project_id),
                View::evolve,
                meta,
                &mut decide,
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Records manual positions of tasks of the project in a view.
    pub async fn position_tasks(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        view_id: Uuid,
        items: Vec<TaskPosition>,
    ) -> CommandResult<()> {
        check_task_positions(&items)?;
        let mut task_ids: Vec<Uuid> = items.iter().map(|i| i.task_id).collect();
        task_ids.sort();
        task_ids.dedup();
        let known: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM task_index
             WHERE task_id = ANY($1) AND project_id = $2 AND NOT deleted",
        )
        .bind(&task_ids)
        .bind(project_id)
        .fetch_one(self.store.pool())
        .await?;
        if known != task_ids.len() as i64 {
            return Err(CommandError::domain(
                ErrorCode::TASK_NOT_FOUND,
                "task not found in this project",
            ));
        }
        self.view_command(
            meta,
            project_id,
            view_id,
            ViewCommand::PositionTasks { items },
        )
        .await
    }
}
