//! The write side: command handlers (load -> decide -> append), write-side
//! reservations for set-wide uniqueness, and the credential services whose
//! secrets never enter the log.

// First: `transact!` is textually scoped to the modules after it.
#[macro_use]
pub mod transact;
pub mod error;

pub mod agents;
pub mod auth;
pub mod conversations;
pub mod directory;
pub mod docs;
pub mod files;
pub mod notifications;
pub mod plugins;
pub mod projects;
pub mod roles;
pub mod secrets;
pub mod sprints;
pub mod task_cache;
pub mod tasks;
pub mod triggers;
pub mod users;
pub mod views;
pub mod write_index;

use domain::{DomainError, DomainEvent};
use eventstore::{AppendTx, EventStore, ExpectedVersion, LockMode, Metadata, NewEvent, StreamRef};
use uuid::Uuid;

pub use auth::{AuthConfig, Credentials};
pub use directory::Directory;
pub use error::{CommandError, CommandResult, InfraError};

/// The write side's entry point: every mutation goes through here.
#[derive(Clone)]
pub struct Commands {
    pub store: EventStore,
    pub auth: AuthConfig,
    /// Users, roles and projects folded from the log, kept current by this
    /// process's commits and a tail of the log (see [`directory`]).
    pub directory: Directory,
    /// Encrypts agent secrets (`ENCRYPTION_KEY`); without it, storing an
    /// LLM key or a secret MCP env value fails.
    secrets: Option<secrets::SecretBox>,
    /// Task states for the one-round-trip task write (see `tasks.rs`).
    tasks: std::sync::Arc<task_cache::TaskCache>,
    /// Whether task writes may take the one-round-trip path.
    fused_writes: bool,
}

/// An aggregate's state loaded from its stream, and the version it is at.
pub struct Loaded<S> {
    pub state: S,
    pub version: i64,
}

impl Commands {
    /// Loads the directory from the log; call [`Directory::follow`] on
    /// `commands.directory` to keep it current with other processes.
    pub async fn new(store: EventStore, auth: AuthConfig) -> CommandResult<Self> {
        if !store
            .projectors()
            .iter()
            .any(|p| p.name() == write_index::NAME)
        {
            return Err(CommandError::Infra(InfraError::Bug(
                "the event store needs the commands::write_index::WriteIndex projector",
            )));
        }
        if let Some(events) = write_index::ensure(&store).await? {
            tracing::info!(events, "write-side indexes filled from the log");
        }
        let directory = Directory::load(&store).await?;
        Ok(Self {
            store,
            auth,
            directory,
            secrets: None,
            tasks: Default::default(),
            fused_writes: true,
        })
    }

    /// Turns the one-round-trip task write on or off (`PACA_FUSED_WRITES`).
    pub fn with_fused_writes(mut self, on: bool) -> Self {
        self.fused_writes = on;
        self
    }

    /// Enables agent secrets under `ENCRYPTION_KEY`.
    pub fn with_secrets(mut self, secrets: secrets::SecretBox) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The project aggregate as of the latest committed event visible on
    /// `conn`: the directory's copy extended with whatever the stream holds
    /// beyond it (events are immutable, so that is never stale).
    pub async fn project_state(
        &self,
        conn: &mut sqlx::PgConnection,
        project_id: Uuid,
    ) -> CommandResult<domain::project::Project> {
        Ok(self.project_versioned(conn, project_id).await?.state)
    }

    /// [`Commands::project_state`] with the stream version it is at.
    pub async fn project_versioned(
        &self,
        conn: &mut sqlx::PgConnection,
        project_id: Uuid,
    ) -> CommandResult<directory::Versioned<domain::project::Project>> {
        use domain::project::{Project, ProjectEvent};
        // A project the directory holds slim is folded from its first event.
        let cached = self.directory.project_state(project_id);
        let whole = cached.is_some();
        let cached = cached.unwrap_or_default();
        let (mut version, mut state) = (cached.version, cached.state);
        let newer = self.store.read_stream_in(conn, project_id, version).await?;
        if newer.is_empty() {
            return Ok(directory::Versioned { version, state });
        }
        for event in &newer {
            let typed = ProjectEvent::from_stored(&event.event_type, &event.payload)
                .map_err(|source| decode_error(event, source))?;
            state = Project::evolve(state, &typed);
            version = event.version;
        }
        if whole {
            self.directory.extend(&newer);
        } else {
            self.directory.install(project_id, version, &state);
        }
        Ok(directory::Versioned { version, state })
    }

    /// Folds a stream into its aggregate state, on the given connection.
    pub async fn load_in<E: DomainEvent, S: Default>(
        &self,
        conn: &mut sqlx::PgConnection,
        stream_id: Uuid,
        evolve: fn(S, &E) -> S,
    ) -> CommandResult<Loaded<S>> {
        let events = self.store.read_stream_in(conn, stream_id, 0).await?;
        let mut state = S::default();
        let mut version = 0;
        for event in &events {
            let typed = E::from_stored(&event.event_type, &event.payload)
                .map_err(|source| decode_error(event, source))?;
            state = evolve(state, &typed);
            version = event.version;
        }
        Ok(Loaded { state, version })
    }

    /// [`Self::load`] of a stream that must be of `E`'s stream type: an id
    /// of another kind of stream (a task id where a conversation id was
    /// expected) loads as the empty state, i.e. "not found".
    pub async fn load_typed<E: DomainEvent, S: Default>(
        &self,
        stream_id: Uuid,
        evolve: fn(S, &E) -> S,
    ) -> CommandResult<Loaded<S>> {
        let mut conn = self.store.pool().acquire().await?;
        let stream_type = self.store.stream_type_in(&mut conn, stream_id).await?;
        if stream_type.as_deref() != Some(E::STREAM_TYPE) {
            return Ok(Loaded {
                state: S::default(),
                version: 0,
            });
        }
        self.load_in(&mut conn, stream_id, evolve).await
    }

    pub async fn load<E: DomainEvent, S: Default>(
        &self,
        stream_id: Uuid,
        evolve: fn(S, &E) -> S,
    ) -> CommandResult<Loaded<S>> {
        let mut conn = self.store.pool().acquire().await?;
        self.load_in(&mut conn, stream_id, evolve).await
    }

    /// Load -> decide -> append on one stream, re-deciding on fresh state
    /// when another writer got there first. `decide` returns the events and
    /// the write-side effects (reservations, credentials) that must commit
    /// in the same transaction; a failing effect rolls everything back.
    ///
    /// Returns the state after the command and the stream version.
    pub async fn execute<E, S, F>(
        &self,
        stream_id: Uuid,
        project_id: Option<Uuid>,
        evolve: fn(S, &E) -> S,
        metadata: &Metadata,
        decide: F,
    ) -> CommandResult<(S, i64)>
    where
        E: DomainEvent,
        S: Default,
        F: FnMut(&S) -> Result<(Vec<E>, Vec<WriteSide>), DomainError>,
    {
        self.execute_expecting(stream_id, project_id, evolve, metadata, decide, None)
            .await
    }

    /// [`Self::execute`] with an optional precondition on the stream
    /// version (HTTP `If-Match`): when given and stale, the caller gets
    /// `Conflict` instead of a re-decision on fresh state.
    pub async fn execute_expecting<E, S, F>(
        &self,
        stream_id: Uuid,
        project_id: Option<Uuid>,
        evolve: fn(S, &E) -> S,
        metadata: &Metadata,
        mut decide: F,
        if_version: Option<i64>,
    ) -> CommandResult<(S, i64)>
    where
        E: DomainEvent,
        S: Default,
        F: FnMut(&S) -> Result<(Vec<E>, Vec<WriteSide>), DomainError>,
    {
        transact!(self, tx => {
            self.execute_in(
                tx,
                stream_id,
                project_id,
                evolve,
                metadata,
                &mut decide,
                if_version,
            )
            .await
        })
    }

    /// One load -> decide -> append inside a caller's transaction, so that
    /// a command spanning several streams (moving a sprint's tasks) commits
    /// or fails as a whole. A lost race is `Conflict`; the caller decides
    /// whether to retry the whole transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_in<E, S, F>(
        &self,
        tx: &mut AppendTx,
        stream_id: Uuid,
        project_id: Option<Uuid>,
        evolve: fn(S, &E) -> S,
        metadata: &Metadata,
        decide: &mut F,
        if_version: Option<i64>,
    ) -> CommandResult<(S, i64)>
    where
        E: DomainEvent,
        S: Default,
        F: FnMut(&S) -> Result<(Vec<E>, Vec<WriteSide>), DomainError>,
    {
        // Writers to one aggregate queue on its stream row instead of
        // racing: under contention optimistic retries alone livelock
        // (measured: 10 concurrent member adds to one project exhausted
        // 8 attempts). The version check in `append` stays the guard.
        tx.lock_streams(&[stream_id], LockMode::Exclusive).await?;
        let Loaded { state, version } = self.load_in(tx.conn(), stream_id, evolve).await?;
        if let Some(expected) = if_version.filter(|v| *v != version) {
            return Err(CommandError::Stale {
                stream_id,
                expected,
                actual: version,
            });
        }
        let (events, effects) = decide(&state)?;
        if events.is_empty() {
            return Ok((state, version));
        }
        for effect in effects {
            effect.apply(tx).await?;
        }
        let new_events: Vec<NewEvent> = events.iter().map(|e| new_event(e, metadata)).collect();
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        let stream = StreamRef {
            stream_type: E::STREAM_TYPE,
            stream_id,
            project_id,
        };
        let result = tx.append(stream, expected, new_events).await?;
        let state = events.iter().fold(state, evolve);
        Ok((state, result.stream_version))
    }
}

/// A domain event as the log stores it, with its type's schema version.
pub fn new_event<E: DomainEvent>(event: &E, metadata: &Metadata) -> NewEvent {
    let mut new = NewEvent::new(event.event_type(), event.to_payload(), metadata.clone());
    new.schema_version = event.schema_version();
    new
}

/// The event store's upcasters for the domain's repairs
/// ([`domain::upcast`]): register them on every store.
pub fn upcasters() -> Vec<std::sync::Arc<dyn eventstore::Upcaster>> {
    domain::upcast::UPCASTS
        .iter()
        .map(|(event_type, from)| {
            std::sync::Arc::new(DomainUpcast {
                event_type,
                from: *from,
            }) as std::sync::Arc<dyn eventstore::Upcaster>
        })
        .collect()
}

struct DomainUpcast {
    event_type: &'static str,
    from: i16,
}

impl eventstore::Upcaster for DomainUpcast {
    fn event_type(&self) -> &str {
        self.event_type
    }

    fn from_version(&self) -> i16 {
        self.from
    }

    fn upcast(&self, payload: serde_json::Value) -> serde_json::Value {
        domain::upcast::upcast(self.event_type, self.from, payload)
    }
}

fn decode_error(event: &eventstore::RecordedEvent, source: serde_json::Error) -> CommandError {
    CommandError::Infra(InfraError::Decode {
        stream_id: event.stream_id,
        version: event.version,
        event_type: event.event_type.clone(),
        source,
    })
}

/// Write-side state changed together with a command's events.
#[derive(Debug, Clone)]
pub enum WriteSide {
    /// Claim `key` in `scope` for `owner`; fails with `taken` if another
    /// owner holds it (now, or in a concurrent transaction that commits).
    Reserve {
        scope: &'static str,
        key: String,
        owner: Uuid,
        taken: DomainError,
    },
    Release {
        scope: &'static str,
        key: String,
        owner: Uuid,
    },
    SetPasswordHash {
        user_id: Uuid,
        hash: String,
    },
    StoreApiKeyHash {
        key_id: Uuid,
        user_id: Uuid,
        hash: String,
    },
    /// Fails with `ROLE_IN_USE` when a live user holds the global role.
    /// Runs after the role's stream row is locked `FOR UPDATE`; assignments
    /// hold it `FOR SHARE` (see `Commands::live_role_in`).
    RequireNoRoleHolders {
        role_id: Uuid,
    },
    /// Ends every refresh-token family of the user (password change,
    /// deletion): other sessions must log in again.
    RevokeSessions {
        user_id: Uuid,
    },
    /// Fails with `in_use` when a live task still references `id` in
    /// `column`. Runs after the project row is locked, and task writes that
    /// set a type or status hold that row `FOR SHARE`, so the check cannot
    /// race a task creation.
    RequireNoTaskUses {
        column: TaskColumn,
        id: Uuid,
        in_use: DomainError,
    },
}

#[derive(Debug, Clone, Copy)]
pub enum TaskColumn {
    TaskType,
    Status,
}

impl WriteSide {
    async fn apply(self, tx: &mut AppendTx) -> CommandResult<()> {
        match self {
            WriteSide::Reserve {
                scope,
                key,
                owner,
                taken,
            } => {
                let claimed = sqlx::query(
                    "INSERT INTO reservations (scope, key, owner_id) VALUES ($1, $2, $3)
                     ON CONFLICT (scope, key) DO UPDATE SET owner_id = reservations.owner_id
                     WHERE reservations.owner_id = $3",
                )
                .bind(scope)
                .bind(&key)
                .bind(owner)
                .execute(tx.conn())
                .await?
                .rows_affected();
                if claimed == 0 {
                    return Err(taken.into());
                }
            }
            WriteSide::Release { scope, key, owner } => {
                sqlx::query(
                    "DELETE FROM reservations WHERE scope = $1 AND key = $2 AND owner_id = $3",
                )
                .bind(scope)
                .bind(&key)
                .bind(owner)
                .execute(tx.conn())
                .await?;
            }
            WriteSide::SetPasswordHash { user_id, hash } => {
                sqlx::query(
                    "INSERT INTO user_credentials (user_id, password_hash) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET password_hash = $2, updated_at = now()",
                )
                .bind(user_id)
                .bind(&hash)
                .execute(tx.conn())
                .await?;
            }
            WriteSide::StoreApiKeyHash {
                key_id,
                user_id,
                hash,
            } => {
                sqlx::query(
                    "INSERT INTO api_key_secrets (key_id, user_id, key_hash) VALUES ($1, $2, $3)",
                )
                .bind(key_id)
                .bind(user_id)
                .bind(&hash)
                .execute(tx.conn())
                .await?;
            }
            WriteSide::RequireNoTaskUses { column, id, in_use } => {
                let sql = match column {
                    TaskColumn::TaskType => {
                        "SELECT COUNT(*) FROM task_index WHERE type_id = $1 AND NOT deleted"
                    }
                    TaskColumn::Status => {
                        "SELECT COUNT(*) FROM task_index WHERE status_id = $1 AND NOT deleted"
                    }
                };
                let count: i64 = sqlx::query_scalar(sql)
                    .bind(id)
                    .fetch_one(tx.conn())
                    .await?;
                if count > 0 {
                    return Err(DomainError::new(
                        in_use.code,
                        format!("{} ({count} task(s))", in_use.message),
                    )
                    .into());
                }
            }
            WriteSide::RequireNoRoleHolders { role_id } => {
                let holders: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM user_roles WHERE role_id = $1")
                        .bind(role_id)
                        .fetch_one(tx.conn())
                        .await?;
                if holders > 0 {
                    return Err(CommandError::domain(
                        domain::ErrorCode::ROLE_IN_USE,
                        format!("the role is assigned to {holders} user(s)"),
                    ));
                }
            }
            WriteSide::RevokeSessions { user_id } => {
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = now()
                     WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .execute(tx.conn())
                .await?;
            }
        }
        Ok(())
    }
}
