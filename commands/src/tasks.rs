//! Task commands: create (with the per-project number), three-state
//! update, delete, comments, revert of a recorded change, and moving tasks
//! between sprints inside a caller's transaction.
//!
//! Uses: `sprints::lock_sprint_for_task` (a task joins a live sprint under
//! that sprint's lock) and the directory's `project_state`.

use domain::project::Project;
use domain::task::{
    FieldValue, LinkType, ParentInfo, Task, TaskChange, TaskCommand, TaskContext, TaskEvent,
    TaskField, TaskFields, TaskPatch,
};
use domain::task_config::EPIC;
use domain::{DomainEvent, ErrorCode};
use eventstore::stmt::Stmt;
use eventstore::{AppendError, AppendTx, EventKey, ExpectedVersion, LockMode, Metadata, StreamRef};
use serde_json::Value;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::task_cache::CachedTask;
use crate::{CommandError, CommandResult, Commands};

/// Optimistic one-round-trip attempts of a task write before it takes the
/// locking path (see `task_command_fused`).
const FUSED_ATTEMPTS: u32 = 4;

fn task_not_found() -> CommandError {
    CommandError::domain(ErrorCode::TASK_NOT_FOUND, "task not found")
}

/// A task write's outcome: the task id and its stream version after it.
#[derive(Debug, Clone, Copy)]
pub struct TaskWritten {
    pub task_id: Uuid,
    pub version: i64,
}

/// A create's outcome with its events as stored (positions and times
/// included): the new task's whole stream, so its view can be built from
/// them (`projections::queries_tasks::task_from_events`) without reading
/// the row back.
#[derive(Debug, Clone)]
pub struct TaskCreated {
    pub written: TaskWritten,
    pub events: Vec<eventstore::RecordedEvent>,
}

/// Task writes that reference the project's configuration hold its stream
/// row `FOR SHARE`: configuration changes (which lock it `FOR UPDATE`)
/// then wait for them and see their tasks, and vice versa. Without it a
/// status could be deleted while a task was being created with it.
async fn share_project_config(tx: &mut AppendTx, project_id: Uuid) -> CommandResult<()> {
    tx.lock_streams(&[project_id], LockMode::Shared).await?;
    Ok(())
}

/// Parent changes in a project are serialised: two concurrent re-parentings
/// (A under B, B under A) would each pass a cycle check that cannot see
/// the other. The ancestry is read after this lock, so the second one sees
/// the first and is refused.
async fn lock_task_tree(tx: &mut AppendTx, project_id: Uuid) -> CommandResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('paca.task_tree.' || $1::text, 0))")
        .bind(project_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The id a revert of `changes` puts back into `field`, if any.
fn reverted_id(changes: &[TaskChange], field: TaskField) -> Option<Uuid> {
    match changes.iter().find(|c| c.field == field)?.old_value() {
        Ok(FieldValue::Id(id)) => id,
        _ => None,
    }
}

/// A task decision's outside facts from the project aggregate, the one
/// sprint the command may put the task into (already checked live and
/// share-locked by `lock_sprint_for_task`) and the proposed parent.
fn context_of(
    project: &Project,
    self_id: Option<Uuid>,
    parent: Option<ParentInfo>,
    sprint: Option<Uuid>,
) -> TaskContext {
    let config = &project.config;
    TaskContext {
        types: config
            .types
            .iter()
            .map(|(id, t)| (*id, (t.name.clone(), t.is_system && t.name == EPIC)))
            .collect(),
        default_type: config.default_type,
        statuses: config
            .statuses
            .iter()
            .map(|(id, s)| (*id, s.name.clone()))
            .collect(),
        default_status: config.default_status,
        fields: config.fields.values().cloned().collect(),
        members: project.members.keys().copied().collect(),
        sprints: sprint.into_iter().collect(),
        parent,
        self_id,
    }
}

impl Commands {
    /// The outside facts a task decision needs: the project's task
    /// configuration and members, its sprints, and the proposed parent's
    /// ancestry.
    pub async fn task_context(
        &self,
        conn: &mut sqlx::PgConnection,
        project_id: Uuid,
        self_id: Option<Uuid>,
        parent: Option<Uuid>,
        sprint: Option<Uuid>,
    ) -> CommandResult<TaskContext> {
        let project = self.project_state(conn, project_id).await?;
        if !project.is_live() {
            return Err(CommandError::domain(
                ErrorCode::PROJECT_NOT_FOUND,
                "project not found",
            ));
        }
        let parent = match parent {
            None => None,
            Some(parent_id) => {
                // The parent and its ancestors, nearest first, from the
                // write-side index (re-parenting holds the tree lock).
                let chain: Vec<Uuid> = sqlx::query_scalar(
                    "WITH RECURSIVE up(id, parent, depth) AS (
                         SELECT task_id, parent_id, 0 FROM task_index
                         WHERE task_id = $1 AND project_id = $2 AND NOT deleted
                         UNION ALL
                         SELECT t.task_id, t.parent_id, up.depth + 1 FROM task_index t
                         JOIN up ON t.task_id = up.parent
                         WHERE NOT t.deleted AND up.depth < 1000)
                     SELECT id FROM up ORDER BY depth",
                )
                .bind(parent_id)
                .bind(project_id)
                .fetch_all(&mut *conn)
                .await?;
                (!chain.is_empty()).then_some(ParentInfo {
                    id: parent_id,
                    ancestors: chain,
                })
            }
        };
        Ok(context_of(&project, self_id, parent, sprint))
    }

    /// The project a task belongs to, deleted or not (`None` if unknown).
    pub async fn task_project(&self, task_id: Uuid) -> CommandResult<Option<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT project_id FROM task_index WHERE task_id = $1")
                .bind(task_id)
                .fetch_optional(self.store.pool())
                .await?,
        )
    }

    async fn check_task_in(&self, project_id: Uuid, task_id: Uuid) -> CommandResult<()> {
        if self.task_project(task_id).await? != Some(project_id) {
            return Err(CommandError::domain(
                ErrorCode::TASK_NOT_FOUND,
                "task not found",
            ));
        }
        Ok(())
    }

    pub async fn create_task(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        fields: TaskFields,
    ) -> CommandResult<TaskWritten> {
        self.create_task_with_id(meta, project_id, Uuid::now_v7(), fields)
            .await
    }

    /// Creates the task under a caller-chosen id (a plugin's origin key maps
    /// to one): a second create of the same id is a `VersionConflict` and
    /// appends nothing.
    pub async fn create_task_with_id(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        fields: TaskFields,
    ) -> CommandResult<TaskWritten> {
        let created = self
            .create_task_recorded(meta, project_id, task_id, fields)
            .await?;
        Ok(created.written)
    }

    /// [`Self::create_task_with_id`] with the events it stored, for a
    /// response built from them.
    pub async fn create_task_recorded(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        fields: TaskFields,
    ) -> CommandResult<TaskCreated> {
        // A parent or a sprint takes a lock beyond the project's (the tree,
        // the sprint row): those creates stay transactional.
        if self.fused_writes
            && fields.parent_task_id.is_none()
            && fields.sprint_id.is_none()
            && let Some(created) = self
                .create_task_fused(meta, project_id, task_id, &fields)
                .await?
        {
            return Ok(created);
        }
        let mut tx = self.store.begin().await?;
        if fields.parent_task_id.is_some() {
            lock_task_tree(&mut tx, project_id).await?;
        }
        // Sprint before task, the order sprint commands lock in: a task
        // cannot land in a sprint that is being completed or deleted.
        if let Some(sprint_id) = fields.sprint_id {
            self.lock_sprint_for_task(&mut tx, project_id, sprint_id)
                .await?;
        }
        share_project_config(&mut tx, project_id).await?;
        let ctx = self
            .task_context(
                tx.conn(),
                project_id,
                None,
                fields.parent_task_id,
                fields.sprint_id,
            )
            .await?;
        // Validate before taking a number, so that bad input never holds the
        // project's counter row.
        Task::default().decide(
            TaskCommand::Create {
                task_number: 0,
                fields: fields.clone(),
            },
            &ctx,
        )?;
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO task_counters (project_id, last_number) VALUES ($1, 1)
             ON CONFLICT (project_id) DO UPDATE SET last_number = task_counters.last_number + 1
             RETURNING last_number",
        )
        .bind(project_id)
        .fetch_one(tx.conn())
        .await?;
        let events = Task::default().decide(
            TaskCommand::Create {
                task_number: number,
                fields,
            },
            &ctx,
        )?;
        let result = tx
            .append(
                StreamRef {
                    stream_type: TaskEvent::STREAM_TYPE,
                    stream_id: task_id,
                    project_id: Some(project_id),
                },
                ExpectedVersion::NoStream,
                events.iter().map(|e| crate::new_event(e, meta)).collect(),
            )
            .await?;
        tx.commit().await?;
        Ok(TaskCreated {
            written: TaskWritten {
                task_id,
                version: result.stream_version,
            },
            events: result.events,
        })
    }

    /// The project a fused task write decides from: the directory's copy,
    /// or (`fresh`) the log's. `PROJECT_NOT_FOUND` unless it is live.
    async fn live_project(
        &self,
        project_id: Uuid,
        fresh: bool,
    ) -> CommandResult<crate::directory::Versioned<Project>> {
        let project = match self.directory.project_state(project_id) {
            Some(project) if !fresh => project,
            _ => {
                let mut conn = self.store.pool().acquire().await?;
                self.project_versioned(&mut conn, project_id).await?
            }
        };
        if !project.state.is_live() {
            return Err(CommandError::domain(
                ErrorCode::PROJECT_NOT_FOUND,
                "project not found",
            ));
        }
        Ok(project)
    }

    /// Keeps a task's state after a fused write committed it at `version`.
    fn cache_written(
        &self,
        project_id: Uuid,
        task_id: Uuid,
        version: i64,
        state: Task,
    ) -> TaskWritten {
        self.tasks
            .put(task_id, CachedTask::new(project_id, version, state));
        TaskWritten { task_id, version }
    }

    /// The one-round-trip create: the project from the directory, the
    /// number from this node's copy of the project's counter, the decision
    /// in memory, and the append with the counter's move
    /// (`take_task_number`), the stream's creation, the projectors'
    /// statements and the project guard. Creates of one project go through
    /// its lane ([`serve_lane`]): those that arrive while one is in flight
    /// are appended together in the next round trip. A stale counter or
    /// directory is a conflict: read both again, decide again. `None`:
    /// take the transactional path (the projectors cannot render the
    /// create, the id exists, or the attempts ran out).
    async fn create_task_fused(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        fields: &TaskFields,
    ) -> CommandResult<Option<TaskCreated>> {
        let lane = self.tasks.lane(project_id);
        let mut fresh = false;
        for attempt in 0..FUSED_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(crate::transact::backoff(attempt)).await;
            }
            let project = self.live_project(project_id, fresh).await?;
            let ctx = context_of(&project.state, None, None, None);
            // Validate before taking a number, as the transactional path
            // does; a refusal decided from the directory's copy is
            // confirmed against the log first.
            let create = TaskCommand::Create {
                task_number: 0,
                fields: fields.clone(),
            };
            match Task::default().decide(create, &ctx) {
                Err(_) if !fresh => {
                    fresh = true;
                    continue;
                }
                Err(error) => return Err(error.into()),
                Ok(_) => {}
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let start = lane.push(PendingCreate {
                task_id,
                project_version: project.version,
                ctx,
                fields: fields.clone(),
                meta: meta.clone(),
                // After a failed group, each of its creates goes on its
                // own, so one that cannot succeed fails only itself.
                alone: attempt > 0,
                reply,
            });
            // The server is a task of its own: its appends are not
            // cancelled with this request, and the creates it carries
            // for others get their answers whatever happens to this one.
            if start {
                tokio::spawn(serve_lane(
                    self.store.clone(),
                    self.tasks.clone(),
                    project_id,
                    lane.clone(),
                ));
            }
            let answer = answer.await.map(|answer| {
                eventstore::round_trips::charge(answer.round_trips);
                answer.outcome
            });
            match answer {
                Ok(Ok(Some(created))) => return Ok(Some(created)),
                Ok(Ok(None)) => return Ok(None),
                // The id is taken (a plugin's origin key, created twice):
                // the transactional path says so in its own words.
                Ok(Err(AppendError::VersionConflict { .. })) => return Ok(None),
                Ok(Err(error)) => {
                    let error = CommandError::from(error);
                    if !error.is_retryable() {
                        return Err(error);
                    }
                    fresh = true;
                }
                // The lane's task panicked: decide again.
                Err(_) => fresh = true,
            }
        }
        Ok(None)
    }

    /// Runs one task command; the decision context is rebuilt on every
    /// attempt inside the transaction.
    async fn task_command(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        command: TaskCommand,
        if_version: Option<i64>,
    ) -> CommandResult<TaskWritten> {
        self.task_command_reading(meta, project_id, task_id, command, if_version, None)
            .await
            .map(|(written, _)| written)
    }

    /// [`Self::task_command`] whose fused append also runs `read` (see
    /// [`eventstore::FusedAppend::read`]) and returns its rows: empty when
    /// the command took another path (no change to write, or the
    /// transactional path), and the caller reads for itself.
    async fn task_command_reading(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        command: TaskCommand,
        if_version: Option<i64>,
        read: Option<&Stmt>,
    ) -> CommandResult<(TaskWritten, Vec<PgRow>)> {
        let parent = match &command {
            TaskCommand::Update(TaskPatch {
                parent_task_id: Some(Some(p)),
                ..
            }) => Some(*p),
            TaskCommand::Revert { changes } => reverted_id(changes, TaskField::ParentTask),
            _ => None,
        };
        let sprint = match &command {
            TaskCommand::Update(TaskPatch {
                sprint_id: Some(Some(s)),
                ..
            }) => Some(*s),
            TaskCommand::Revert { changes } => reverted_id(changes, TaskField::Sprint),
            _ => None,
        };
        // Which shared state this command's checks read.
        let (reparents, uses_config) = match &command {
            TaskCommand::Update(p) => (
                p.parent_task_id.is_some(),
                p.status_id.is_some() || p.task_type_id.is_some() || p.custom_fields.is_some(),
            ),
            TaskCommand::Revert { .. } => (true, true),
            _ => (false, false),
        };
        // Commands that take no lock beyond the project's (parent and sprint
        // changes serialise on the tree lock and the sprint row) commit in
        // one round trip when the projectors can render them.
        if self.fused_writes
            && !reparents
            && sprint.is_none()
            && let Some(written) = self
                .task_command_fused(meta, project_id, task_id, &command, if_version, read)
                .await?
        {
            return Ok(written);
        }
        self.check_task_in(project_id, task_id).await?;
        transact!(self, tx => {
            if reparents {
                lock_task_tree(tx, project_id).await?;
            }
            if let Some(sprint_id) = sprint {
                self.lock_sprint_for_task(tx, project_id, sprint_id).await?;
            }
            if uses_config {
                share_project_config(tx, project_id).await?;
            }
            let ctx = self
                .task_context(tx.conn(), project_id, Some(task_id), parent, sprint)
                .await?;
            let mut decide = |task: &Task| Ok((task.decide(command.clone(), &ctx)?, vec![]));
            self.execute_in(
                tx,
                task_id,
                Some(project_id),
                Task::evolve,
                meta,
                &mut decide,
                if_version,
            )
            .await
            .map(|(_, version)| (TaskWritten { task_id, version }, Vec::new()))
        })
    }

    /// A task in `project_id` at its latest version: the cache's copy, or
    /// the stream (one round trip). `TASK_NOT_FOUND` when the task is not
    /// in that project.
    async fn cached_task(
        &self,
        project_id: Uuid,
        task_id: Uuid,
        fresh: bool,
    ) -> CommandResult<CachedTask> {
        if !fresh && let Some(entry) = self.tasks.get(task_id) {
            if entry.project_id != project_id {
                return Err(task_not_found());
            }
            return Ok(entry);
        }
        let events = {
            let mut conn = self.store.pool().acquire().await?;
            self.store.read_stream_in(&mut conn, task_id, 0).await?
        };
        let Some(first) = events.first() else {
            return Err(task_not_found());
        };
        if first.stream_type != TaskEvent::STREAM_TYPE || first.project_id != Some(project_id) {
            return Err(task_not_found());
        }
        let mut state = Task::default();
        for event in &events {
            let typed = TaskEvent::from_stored(&event.event_type, &event.payload)
                .map_err(|source| crate::decode_error(event, source))?;
            state = Task::evolve(state, &typed);
        }
        let version = events.last().map_or(0, |e| e.version);
        let entry = CachedTask::new(project_id, version, state);
        // This command decides from the whole state; the cache keeps it
        // without comment bodies.
        self.tasks.put(task_id, entry.clone());
        Ok(entry)
    }

    /// The one-round-trip task write (`EventStore::append_fused`): the
    /// task from the cache, the project from the directory, the decision
    /// in memory, and the append with the projectors' statements and a
    /// guard that the project is still at the version decided from (held
    /// `FOR SHARE` until commit, as the transactional path's config lock).
    /// A stale cache or directory shows up as a conflict: reload, decide
    /// again. `None`: take the transactional path (the projectors cannot
    /// render these events, or the task is contended).
    async fn task_command_fused(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        command: &TaskCommand,
        if_version: Option<i64>,
        read: Option<&Stmt>,
    ) -> CommandResult<Option<(TaskWritten, Vec<PgRow>)>> {
        // Cached entries hold no comment bodies: an edit reads the log.
        let mut fresh = crate::task_cache::needs_comment_bodies(command);
        for attempt in 0..FUSED_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(crate::transact::backoff(attempt)).await;
            }
            let mut task = self.cached_task(project_id, task_id, fresh).await?;
            if let Some(expected) = if_version
                && expected != task.version
            {
                if !fresh {
                    // The cache may be behind what the client saw.
                    task = self.cached_task(project_id, task_id, true).await?;
                }
                if expected != task.version {
                    return Err(CommandError::Stale {
                        stream_id: task_id,
                        expected,
                        actual: task.version,
                    });
                }
            }
            let project = self.live_project(project_id, fresh).await?;
            let ctx = context_of(&project.state, Some(task_id), None, None);
            let events = match task.state.decide(command.clone(), &ctx) {
                // A refusal or a no-op decided from cached state is
                // confirmed against the log before the caller sees it.
                Err(_) if !fresh => {
                    fresh = true;
                    continue;
                }
                Ok(events) if events.is_empty() && !fresh => {
                    fresh = true;
                    continue;
                }
                Err(error) => return Err(error.into()),
                Ok(events) if events.is_empty() => {
                    let written = TaskWritten {
                        task_id,
                        version: task.version,
                    };
                    return Ok(Some((written, Vec::new())));
                }
                Ok(events) => events,
            };
            let new_events = events.iter().map(|e| crate::new_event(e, meta)).collect();
            let stream = StreamRef {
                stream_type: TaskEvent::STREAM_TYPE,
                stream_id: task_id,
                project_id: Some(project_id),
            };
            let append = eventstore::FusedAppend {
                read: read.cloned(),
                ..eventstore::FusedAppend::new(
                    stream,
                    task.version,
                    new_events,
                    vec![(project_id, project.version)],
                )
            };
            match self.store.append_fused_one(append).await {
                Ok(Some((result, rows))) => {
                    // A commented task's entry was rebuilt for this
                    // command alone (the cache holds comments compactly):
                    // fold into it rather than into another copy.
                    let state = std::sync::Arc::unwrap_or_clone(task.state);
                    let state = events.iter().fold(state, Task::evolve);
                    let written =
                        self.cache_written(project_id, task_id, result.stream_version, state);
                    return Ok(Some((written, rows)));
                }
                Ok(None) => return Ok(None),
                Err(error) => {
                    let error = CommandError::from(error);
                    if !error.is_retryable() {
                        return Err(error);
                    }
                    self.tasks.evict(task_id);
                    fresh = true;
                }
            }
        }
        // Writers racing on one task keep invalidating each other's
        // optimistic attempts; the transactional path locks the stream row
        // and makes them queue instead, so a contended write still lands.
        Ok(None)
    }

    pub async fn update_task(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        patch: TaskPatch,
        if_version: Option<i64>,
    ) -> CommandResult<TaskWritten> {
        self.task_command(
            meta,
            project_id,
            task_id,
            TaskCommand::Update(patch),
            if_version,
        )
        .await
    }

    /// [`Self::update_task`] that also runs `read` after the write, in its
    /// transaction when the write is fused, and returns its rows (empty
    /// otherwise: the caller then reads for itself). For a response built
    /// from the projected row without another round trip.
    ///
    /// `PATCH` and `POST` comment use it. A create's read would lengthen
    /// its lane's batch, which holds the project's counter (measured
    /// slower, docs/performance.md). A comment's read (four joined tables)
    /// planned in ~90 µs per call as the literal SQL of a batch, slower
    /// than reading afterwards; in one statement of CTEs (the comment's
    /// write is keyed single-row writes) it is a prepared statement's
    /// cached plan.
    pub async fn update_task_reading(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        patch: TaskPatch,
        if_version: Option<i64>,
        read: &Stmt,
    ) -> CommandResult<(TaskWritten, Vec<PgRow>)> {
        let command = TaskCommand::Update(patch);
        self.task_command_reading(meta, project_id, task_id, command, if_version, Some(read))
            .await
    }

    pub async fn delete_task(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
    ) -> CommandResult<TaskWritten> {
        self.task_command(meta, project_id, task_id, TaskCommand::Delete, None)
            .await
    }

    pub async fn add_comment(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        author_user_id: Uuid,
        content: Value,
    ) -> CommandResult<Uuid> {
        let comment_id = Uuid::now_v7();
        self.task_command(
            meta,
            project_id,
            task_id,
            TaskCommand::AddComment {
                comment_id,
                author_user_id,
                content,
            },
            None,
        )
        .await?;
        Ok(comment_id)
    }

    /// [`Self::add_comment`] whose write also runs the read `read` makes of
    /// the new comment's id, like [`Self::update_task_reading`]: its rows
    /// are empty when the command took the transactional path.
    pub async fn add_comment_reading(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        author_user_id: Uuid,
        content: Value,
        read: impl FnOnce(Uuid) -> Stmt,
    ) -> CommandResult<(Uuid, Vec<PgRow>)> {
        let comment_id = Uuid::now_v7();
        let command = TaskCommand::AddComment {
            comment_id,
            author_user_id,
            content,
        };
        let read = read(comment_id);
        let (_, rows) = self
            .task_command_reading(meta, project_id, task_id, command, None, Some(&read))
            .await?;
        Ok((comment_id, rows))
    }

    pub async fn edit_comment(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        comment_id: Uuid,
        actor_user_id: Uuid,
        content: Value,
    ) -> CommandResult<()> {
        self.task_command(
            meta,
            project_id,
            task_id,
            TaskCommand::EditComment {
                comment_id,
                actor_user_id,
                content,
            },
            None,
        )
        .await?;
        Ok(())
    }

    pub async fn delete_comment(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        comment_id: Uuid,
        actor_user_id: Uuid,
    ) -> CommandResult<()> {
        self.task_command(
            meta,
            project_id,
            task_id,
            TaskCommand::DeleteComment {
                comment_id,
                actor_user_id,
            },
            None,
        )
        .await?;
        Ok(())
    }

    /// Links `task_id` (the source) to another task of the same project.
    /// Both tasks' streams are locked (in id order, so two opposite links
    /// cannot deadlock) before the index is read for a link the other way.
    pub async fn add_link(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        target_task_id: Uuid,
        link_type: LinkType,
    ) -> CommandResult<(Uuid, TaskWritten)> {
        self.check_task_in(project_id, task_id).await?;
        let link_id = Uuid::now_v7();
        let written = transact!(self, tx => {
            let mut pair = [task_id, target_task_id];
            pair.sort();
            tx.lock_streams(&pair, LockMode::Exclusive).await?;
            let target: Option<(Uuid, bool)> =
                sqlx::query_as("SELECT project_id, deleted FROM task_index WHERE task_id = $1")
                    .bind(target_task_id)
                    .fetch_optional(tx.conn())
                    .await?;
            match target {
                None | Some((_, true)) => {
                    return Err(CommandError::domain(
                        ErrorCode::TASK_NOT_FOUND,
                        "target task not found",
                    ));
                }
                Some((target_project, _)) if target_project != project_id => {
                    return Err(CommandError::domain(
                        ErrorCode::TASK_LINK_CROSS_PROJECT,
                        "tasks can only be linked within one project",
                    ));
                }
                Some(_) => {}
            }
            let target_linked_back: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM task_link_index
                                 WHERE source_id = $1 AND target_id = $2 AND link_type = $3
                                   AND NOT deleted)",
            )
            .bind(target_task_id)
            .bind(task_id)
            .bind(link_type.as_str())
            .fetch_one(tx.conn())
            .await?;
            let ctx = TaskContext {
                self_id: Some(task_id),
                ..TaskContext::default()
            };
            let command = TaskCommand::AddLink {
                link_id,
                target_task_id,
                link_type,
                target_linked_back,
            };
            let mut decide = |task: &Task| Ok((task.decide(command.clone(), &ctx)?, vec![]));
            self.execute_in(
                tx,
                task_id,
                Some(project_id),
                Task::evolve,
                meta,
                &mut decide,
                None,
            )
            .await
            .map(|(_, version)| TaskWritten { task_id, version })
        })?;
        Ok((link_id, written))
    }

    /// Removes a link through either of its tasks; the event goes to the
    /// source's stream, which owns the link.
    pub async fn remove_link(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        link_id: Uuid,
    ) -> CommandResult<()> {
        self.check_task_in(project_id, task_id).await?;
        let source: Option<Uuid> = sqlx::query_scalar(
            "SELECT source_id FROM task_link_index
              WHERE link_id = $1 AND NOT deleted AND (source_id = $2 OR target_id = $2)",
        )
        .bind(link_id)
        .bind(task_id)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(source) = source else {
            return Err(CommandError::domain(
                ErrorCode::TASK_LINK_NOT_FOUND,
                "link not found",
            ));
        };
        self.task_command(
            meta,
            project_id,
            source,
            TaskCommand::RemoveLink { link_id },
            None,
        )
        .await?;
        Ok(())
    }

    /// Restores the `old` side of a recorded `task.updated` event for every
    /// field it names, as a new `task.updated` whose metadata names the
    /// reverted event (`causation_id`, `extra.reverts`).
    pub async fn revert_task_change(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        task_id: Uuid,
        event_id: Uuid,
    ) -> CommandResult<TaskWritten> {
        let not_found =
            || CommandError::domain(ErrorCode::ACTIVITY_NOT_FOUND, "activity not found");
        let event = self
            .store
            .read_event(EventKey::Id(event_id))
            .await?
            .filter(|e| e.stream_id == task_id)
            .ok_or_else(not_found)?;
        let changes = match TaskEvent::from_stored(&event.event_type, &event.payload) {
            Ok(TaskEvent::Updated { changes }) => changes,
            _ => {
                return Err(CommandError::domain(
                    ErrorCode::BAD_REQUEST,
                    format!(
                        "only task.updated entries can be reverted, not {}",
                        event.event_type
                    ),
                ));
            }
        };
        let mut meta = meta.clone();
        meta.causation_id = Some(event_id);
        meta.extra
            .insert("reverts".into(), Value::String(event_id.to_string()));
        self.task_command(
            &meta,
            project_id,
            task_id,
            TaskCommand::Revert { changes },
            None,
        )
        .await
    }

    /// Moves tasks to another sprint (or the backlog) inside the caller's
    /// transaction, one `task.updated` per task that actually moves. Used
    /// by sprint completion and deletion so that the sprint event and the
    /// task moves commit together.
    pub async fn move_tasks_in_tx(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        task_ids: &[Uuid],
        to_sprint: Option<Uuid>,
    ) -> CommandResult<()> {
        // The target was checked by the sprint command (it may have been
        // created in this same transaction).
        let ctx = self
            .task_context(tx.conn(), project_id, None, None, to_sprint)
            .await?;
        for task_id in task_ids {
            let ctx = TaskContext {
                self_id: Some(*task_id),
                ..ctx.clone()
            };
            let mut decide = |task: &Task| {
                let patch = TaskPatch {
                    sprint_id: Some(to_sprint),
                    ..TaskPatch::default()
                };
                Ok((task.decide(TaskCommand::Update(patch), &ctx)?, vec![]))
            };
            self.execute_in(
                tx,
                *task_id,
                Some(project_id),
                Task::evolve,
                meta,
                &mut decide,
                None,
            )
            .await?;
        }
        Ok(())
    }
}

/// Creates appended in one round trip at most: a failed group sends each
/// of its creates back to try alone, so a long backlog is cut into groups
/// that fail separately.
const LANE_GROUP: usize = 32;

/// A validated create waiting in its project's lane
/// ([`crate::task_cache::CreateLane`]) for a number and an append.
pub struct PendingCreate {
    task_id: Uuid,
    /// The project version the decision read (the append's guard).
    project_version: i64,
    ctx: TaskContext,
    fields: TaskFields,
    meta: Metadata,
    /// Append this one in a round trip of its own.
    alone: bool,
    reply: tokio::sync::oneshot::Sender<LaneAnswer>,
}

/// What became of a [`PendingCreate`].
struct LaneAnswer {
    outcome: Result<Option<TaskCreated>, AppendError>,
    /// The round trips its group made, charged to the group's first
    /// create only, so per-request figures add up to the round trips made.
    round_trips: u64,
}

/// Answers a group's creates in turn, charging its round trips to the
/// first answered.
struct Answers {
    round_trips: u64,
}

impl Answers {
    fn send(&mut self, pending: PendingCreate, outcome: Result<Option<TaskCreated>, AppendError>) {
        let _ = pending.reply.send(LaneAnswer {
            outcome,
            round_trips: std::mem::take(&mut self.round_trips),
        });
    }
}

/// The lane's server: takes whatever waits in `lane` and appends it, the
/// creates that queued behind the previous append in one round trip (one
/// implicit transaction), numbered in queue order, until it finds the lane
/// empty. One runs per lane at a time ([`CreateLane::push`] says when to
/// start one).
async fn serve_lane(
    store: eventstore::EventStore,
    tasks: std::sync::Arc<crate::task_cache::TaskCache>,
    project_id: Uuid,
    lane: std::sync::Arc<crate::task_cache::CreateLane>,
) {
    /// A server that ends other than by finding the lane empty (a panic,
    /// or its runtime shutting down) hands the lane over: the next push
    /// starts another server.
    struct Abandon<'a> {
        lane: &'a crate::task_cache::CreateLane,
        finished: bool,
    }
    impl Drop for Abandon<'_> {
        fn drop(&mut self) {
            if !self.finished {
                self.lane.abandon();
            }
        }
    }
    let mut abandon = Abandon {
        lane: &lane,
        finished: false,
    };
    let mut last = lane.last.lock().await;
    loop {
        let waiting = lane.take();
        if waiting.is_empty() {
            abandon.finished = true;
            return;
        }
        let mut groups: Vec<Vec<PendingCreate>> = Vec::new();
        let mut together: Vec<PendingCreate> = Vec::new();
        for pending in waiting {
            if pending.alone {
                groups.push(vec![pending]);
            } else {
                together.push(pending);
                if together.len() == LANE_GROUP {
                    groups.push(std::mem::take(&mut together));
                }
            }
        }
        if !together.is_empty() {
            groups.push(together);
        }
        for group in groups {
            append_creates(&store, &tasks, project_id, &mut last, group).await;
        }
    }
}

/// One round trip for `group`'s creates, numbered from `last` on; answers
/// each. A failed group of several answers each with a conflict, and each
/// then tries again on its own.
async fn append_creates(
    store: &eventstore::EventStore,
    tasks: &crate::task_cache::TaskCache,
    project_id: Uuid,
    last: &mut Option<i64>,
    group: Vec<PendingCreate>,
) {
    let mut answers = Answers { round_trips: 0 };
    let known = match *last {
        Some(known) => known,
        None => {
            answers.round_trips += 1;
            let read = sqlx::query_scalar(
                "SELECT COALESCE((SELECT last_number FROM task_counters
                                   WHERE project_id = $1), 0)",
            )
            .bind(project_id)
            .fetch_one(store.pool())
            .await;
            match read {
                Ok(known) => known,
                Err(error) => {
                    answer_all(
                        &mut answers,
                        group,
                        project_id,
                        AppendError::Database(error),
                    );
                    return;
                }
            }
        }
    };
    let mut decided = Vec::with_capacity(group.len());
    let mut number = known;
    for pending in group {
        let create = TaskCommand::Create {
            task_number: number + 1,
            fields: pending.fields.clone(),
        };
        match Task::default().decide(create, &pending.ctx) {
            Ok(events) => {
                number += 1;
                decided.push((pending, number, events));
            }
            // It was validated before it queued; let the transactional
            // path decide and say why.
            Err(_) => answers.send(pending, Ok(None)),
        }
    }
    if decided.is_empty() {
        return;
    }
    let appends = decided
        .iter()
        .map(|(pending, number, events)| {
            let mut prelude = String::new();
            Stmt::new("SELECT take_task_number($1, $2)")
                .arg(project_id)
                .arg(*number)
                .render(&mut prelude);
            let stream = StreamRef {
                stream_type: TaskEvent::STREAM_TYPE,
                stream_id: pending.task_id,
                project_id: Some(project_id),
            };
            let events = events
                .iter()
                .map(|e| crate::new_event(e, &pending.meta))
                .collect();
            eventstore::FusedAppend {
                prelude,
                ..eventstore::FusedAppend::new(
                    stream,
                    0,
                    events,
                    vec![(project_id, pending.project_version)],
                )
            }
        })
        .collect();
    answers.round_trips += 1;
    match store.append_fused_all(appends).await {
        Ok(Some(results)) => {
            *last = Some(number);
            for ((pending, _, events), (result, _)) in decided.into_iter().zip(results) {
                let state = events.iter().fold(Task::default(), Task::evolve);
                tasks.put(
                    pending.task_id,
                    CachedTask::new(project_id, result.stream_version, state),
                );
                let written = TaskWritten {
                    task_id: pending.task_id,
                    version: result.stream_version,
                };
                let events = result.events;
                answers.send(pending, Ok(Some(TaskCreated { written, events })));
            }
        }
        Ok(None) => {
            for (pending, _, _) in decided {
                answers.send(pending, Ok(None));
            }
        }
        Err(error) => {
            *last = None;
            let pending = decided.into_iter().map(|(p, _, _)| p).collect();
            answer_all(&mut answers, pending, project_id, error);
        }
    }
}

/// Answers a failed group: one create gets the error itself; several get
/// a conflict each (which of them failed is unknown) and retry alone.
fn answer_all(
    answers: &mut Answers,
    group: Vec<PendingCreate>,
    project_id: Uuid,
    error: AppendError,
) {
    let mut error = (group.len() == 1).then_some(error);
    for pending in group {
        let this = error.take().unwrap_or(AppendError::GuardMoved {
            stream_id: project_id,
        });
        answers.send(pending, Err(this));
    }
}
