//! The PostgreSQL event log (DESIGN.md §3).
//!
//! - [`EventStore::append`] / [`AppendTx`]: atomic appends with optimistic
//!   concurrency, idempotent on `event_id`, with inline projectors running in
//!   the same transaction.
//! - [`EventStore::read_stream`] and [`EventStore::read_all`]: stream reads and
//!   gap-safe global reads in `(tx_id, global_position)` order.
//! - [`subscription`]: checkpointed, at-least-once consumers of the log.
//! - [`Upcasters`]: map stored old payload versions to the current shape on read.

mod append;
mod fused;
mod read;
pub mod round_trips;
pub mod seal;
pub mod stmt;
pub mod subscription;
mod upcast;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

pub use append::{AppendResult, AppendTx, LockMode};
pub use fused::FusedAppend;
pub use read::{Batch, EventKey, GlobalPosition};
pub use subscription::{Subscription, SubscriptionHandler, SubscriptionStatus};
pub use upcast::{Upcaster, Upcasters};

/// The NOTIFY channel appends wake subscribers on.
pub const NOTIFY_CHANNEL: &str = "paca_events";

/// What the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (number of events in it).
    Exact(i64),
    /// No check; the events go to the end of the stream, whatever it is.
    Any,
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub payload: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, payload: Value, metadata: Metadata) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata,
        }
    }
}

/// Who or what caused an event, and in which request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    pub actor: Actor,
    /// rest, graphql, mcp, socket, cli, runner, plugin, system
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event that caused this one (a trigger, a revert, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// Anything else a command wants to record (e.g. `reverts`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Actor {
    /// user, agent, api_key, plugin, system
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_id: Option<Uuid>,
}

impl Metadata {
    pub fn system(source: &str) -> Self {
        Self {
            actor: Actor {
                kind: "system".into(),
                ..Actor::default()
            },
            source: source.into(),
            occurred_at: Utc::now(),
            ..Self::default()
        }
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedEvent {
    pub global_position: i64,
    pub tx_id: i64,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub project_id: Option<Uuid>,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

/// Identifies the stream an append goes to.
#[derive(Debug, Clone, Copy)]
pub struct StreamRef<'a> {
    pub stream_type: &'a str,
    pub stream_id: Uuid,
    /// Denormalised onto every event so project-scoped readers can filter.
    pub project_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual:?}, expected {expected:?}")]
    VersionConflict {
        stream_id: Uuid,
        expected: ExpectedVersion,
        actual: Option<i64>,
    },
    #[error("some of these event ids were already appended elsewhere: {0:?}")]
    DuplicateEventIds(Vec<Uuid>),
    #[error("inline projector {projector} failed: {source}")]
    Projector {
        projector: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stream a fused append's decision read has moved since
    /// ([`EventStore::append_fused`]'s guards): reload and decide again.
    #[error("stream {stream_id} changed while the command was decided")]
    GuardMoved { stream_id: Uuid },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A read model kept in step with the log inside the append transaction.
///
/// Projectors are transactional: an error fails the append, so a read model
/// can never miss an event the log holds.
#[async_trait::async_trait]
pub trait InlineProjector: Send + Sync {
    fn name(&self) -> &str;
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The same row changes as [`InlineProjector::apply`], as statements
    /// for the one-round-trip append ([`EventStore::append_fused`]), which
    /// sends them as `EXECUTE`s of prepared statements
    /// ([`stmt::Stmt::render_execute`]). `None` when this projector cannot
    /// give them; the append then asks [`InlineProjector::render`].
    ///
    /// When every statement of an append is a single-row write with a row
    /// key ([`stmt::Stmt::with_row_key`]) and no two share a key, the
    /// append may send them side by side as the CTEs of one statement,
    /// where none sees another's writes. So a keyed statement must not read
    /// a row another statement of the same events writes, through a
    /// function either (a subquery disqualifies it anyway).
    fn statements(
        &self,
        _events: &[RecordedEvent],
    ) -> Option<Result<Vec<stmt::Stmt>, Box<dyn std::error::Error + Send + Sync>>> {
        None
    }

    /// The same row changes rendered as SQL text with literals
    /// ([`stmt::Stmt::render`]); by default [`InlineProjector::statements`]
    /// rendered. `None` when this projector cannot render these events;
    /// the append then takes the transactional path.
    fn render(
        &self,
        events: &[RecordedEvent],
    ) -> Option<Result<String, Box<dyn std::error::Error + Send + Sync>>> {
        Some(self.statements(events)?.map(|stmts| {
            let mut out = String::new();
            stmts.iter().for_each(|stmt| stmt.render(&mut out));
            out
        }))
    }
}

/// Told, in process and synchronously, about every event this process
/// appended, right after its transaction committed and before the command
/// returns: in-memory models (who may do what, aggregate caches) stay
/// read-your-writes on this node. Other nodes' events reach them through
/// the log ([`EventStore::wakeups`]); an observer must therefore accept an
/// event it has already seen and a per-stream gap (and fill it from the
/// stream).
pub trait CommitObserver: Send + Sync {
    fn committed(&self, events: &[RecordedEvent]);
}

/// Handle to the log. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    projectors: Vec<Arc<dyn InlineProjector>>,
    upcasters: Upcasters,
    /// Wakes in-process subscribers immediately after a commit, and the
    /// notifier task that sends one coalesced `pg_notify` for other processes.
    committed: watch::Sender<u64>,
    observers: std::sync::RwLock<Vec<Arc<dyn CommitObserver>>>,
    /// Changes on every local commit and every `NOTIFY` from another
    /// process; started on first use (one LISTEN connection per process).
    wakeups: std::sync::OnceLock<watch::Sender<u64>>,
    /// Changes on a `NOTIFY` from another process (and on a reconnect of
    /// the LISTEN connection, and on [`EventStore::nudge`]), not on local
    /// commits: for in-memory models that this process's commits reach
    /// in-process anyway.
    remote: watch::Sender<u64>,
    /// Commits by path, for operators (`/metrics`) and tests.
    stats: AppendStats,
    /// The payload of this process's NOTIFYs: its own come back to its
    /// LISTEN connection, and the local commit already woke everyone, so
    /// the listener skips them instead of waking every consumer twice.
    origin: Arc<str>,
}

/// How this process's appends committed.
#[derive(Debug, Default)]
pub struct AppendStats {
    /// Fused appends committed ([`EventStore::append_fused`]).
    pub fused: std::sync::atomic::AtomicU64,
    /// Fused appends declined because a projector could not render the
    /// events (the caller then used the transactional path).
    pub fused_declined: std::sync::atomic::AtomicU64,
    /// Of the fused appends committed, those sent as one statement of
    /// data-modifying CTEs with bound parameters (the rest as a batch).
    pub fused_one_statement: std::sync::atomic::AtomicU64,
    /// Events committed, by any path.
    pub events: std::sync::atomic::AtomicU64,
}

pub struct EventStoreBuilder {
    pool: PgPool,
    projectors: Vec<Arc<dyn InlineProjector>>,
    upcasters: Upcasters,
}

impl EventStoreBuilder {
    pub fn projector(mut self, projector: Arc<dyn InlineProjector>) -> Self {
        self.projectors.push(projector);
        self
    }

    pub fn upcaster(mut self, upcaster: Arc<dyn Upcaster>) -> Self {
        self.upcasters.register(upcaster);
        self
    }

    pub fn upcasters(mut self, upcasters: impl IntoIterator<Item = Arc<dyn Upcaster>>) -> Self {
        for upcaster in upcasters {
            self.upcasters.register(upcaster);
        }
        self
    }

    pub fn build(self) -> EventStore {
        let committed = watch::Sender::new(0);
        let origin: Arc<str> = Uuid::new_v4().to_string().into();
        // NOTIFY inside the append transaction would take PostgreSQL's global
        // notify-queue lock at commit and serialise every writer's commit
        // (group commit is lost). Instead one task sends a coalesced
        // pg_notify after commits; subscribers also poll as a fallback.
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(notifier(
                self.pool.clone(),
                committed.subscribe(),
                origin.clone(),
            ));
        }
        EventStore {
            inner: Arc::new(Inner {
                pool: self.pool,
                projectors: self.projectors,
                upcasters: self.upcasters,
                committed,
                observers: Default::default(),
                wakeups: Default::default(),
                remote: watch::Sender::new(0),
                stats: Default::default(),
                origin,
            }),
        }
    }
}

/// How long the notifier lets a burst of commits gather after the first
/// one wakes it; a commit landing meanwhile rides on the same NOTIFY.
const NOTIFY_GATHER: Duration = Duration::from_millis(1);
/// At most one NOTIFY per window, however many commits there are.
const NOTIFY_WINDOW: Duration = Duration::from_millis(2);
/// After a failed NOTIFY (server down, connection lost) retry no sooner.
const NOTIFY_RETRY: Duration = Duration::from_secs(1);

/// Sends one `pg_notify` per burst of commits for subscribers in other
/// processes, on its own connection (outside the pool, opened on the first
/// commit) with `synchronous_commit = off`: a NOTIFY transaction takes an
/// xid and writes a commit record, and waiting for its WAL flush buys
/// nothing, since a lost notification only delays subscribers until their
/// next poll. Ends, closing its connection, when the pool closes or the
/// last handle to the store is dropped.
async fn notifier(pool: PgPool, mut commits: watch::Receiver<u64>, origin: Arc<str>) {
    let options = pool.connect_options();
    let closed = pool.close_event();
    drop(pool);
    tokio::pin!(closed);
    let mut conn: Option<PgConnection> = None;
    let mut not_before = Instant::now();
    loop {
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { break },
            _ = &mut closed => break,
        }
        let at = (Instant::now() + NOTIFY_GATHER).max(not_before);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = &mut closed => break,
        }
        // Everything committed up to now is covered by this one NOTIFY.
        commits.borrow_and_update();
        not_before = Instant::now() + NOTIFY_WINDOW;
        let sent = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(notify_connection(&options).await?),
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(&*origin)
                .execute(c)
                .await
        }
        .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "pg_notify failed; subscribers will poll");
            not_before = Instant::now() + NOTIFY_RETRY;
            if let Some(broken) = conn.take() {
                let _ = broken.close().await;
            }
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}

/// The process's one LISTEN connection. Ends when the store is dropped or
/// the pool closes; reconnects (with a pause) when the connection breaks.
async fn listen_forever(
    pool: PgPool,
    store: std::sync::Weak<Inner>,
    wakeups: watch::Sender<u64>,
    remote: watch::Sender<u64>,
) {
    let wake = || {
        wakeups.send_modify(|n| *n = n.wrapping_add(1));
        remote.send_modify(|n| *n = n.wrapping_add(1));
    };
    let closed = pool.close_event();
    tokio::pin!(closed);
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            l = listener => l,
            _ = &mut closed => return,
        };
        if let Ok(listener) = listener.as_mut() {
            // Whatever happened while we were not listening.
            wake();
            loop {
                let got = tokio::select! {
                    got = listener.try_recv() => got,
                    _ = &mut closed => return,
                };
                match got {
                    Ok(Some(note)) if own(&store, note.payload()) => {}
                    Ok(Some(_)) => wake(),
                    // The connection was lost and re-established: anything
                    // may have been missed.
                    Ok(None) => wake(),
                    Err(_) => break,
                }
                if store.strong_count() == 0 {
                    return;
                }
            }
        }
        if store.strong_count() == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut closed => return,
        }
    }
}

/// Whether a NOTIFY came from this process's own notifier.
fn own(store: &std::sync::Weak<Inner>, payload: &str) -> bool {
    !payload.is_empty() && store.upgrade().is_some_and(|s| *s.origin == *payload)
}

async fn notify_connection(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut conn = PgConnection::connect_with(options).await?;
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

impl EventStore {
    pub fn builder(pool: PgPool) -> EventStoreBuilder {
        EventStoreBuilder {
            pool,
            projectors: Vec::new(),
            upcasters: Upcasters::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn projectors(&self) -> &[Arc<dyn InlineProjector>] {
        &self.inner.projectors
    }

    pub fn upcasters(&self) -> &Upcasters {
        &self.inner.upcasters
    }

    /// Changes after every successful append commit in this process; a
    /// `watch` never loses a wake-up that happens between two waits.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// Registers an in-process observer of this process's commits.
    pub fn observe_commits(&self, observer: Arc<dyn CommitObserver>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// Tells the observers, then wakes in-process subscribers at once, and
    /// the notifier task.
    pub fn stats(&self) -> &AppendStats {
        &self.inner.stats
    }

    fn after_commit(&self, events: &[RecordedEvent]) {
        self.inner
            .stats
            .events
            .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for observer in self
            .inner
            .observers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            observer.committed(events);
        }
        self.inner.committed.send_modify(|n| *n = n.wrapping_add(1));
        if let Some(wakeups) = self.inner.wakeups.get() {
            wakeups.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every consumer of [`EventStore::wakeups`] now (e.g. an
    /// in-memory model that saw a gap and wants its tail to run).
    pub fn nudge(&self) {
        if let Some(wakeups) = self.inner.wakeups.get() {
            wakeups.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.inner.remote.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Like [`Self::wakeups`], without this process's own commits: changes
    /// on a `NOTIFY` from another process, a reconnect of the LISTEN
    /// connection and [`Self::nudge`]. For an in-memory model that this
    /// process's commits reach in-process ([`CommitObserver`]) and whose
    /// tail read is only for other processes' writes.
    pub fn remote_wakeups(&self) -> watch::Receiver<u64> {
        drop(self.wakeups());
        self.inner.remote.subscribe()
    }

    /// A receiver that changes whenever the log may have grown: on a commit
    /// in this process and on a `NOTIFY` from any other. Every consumer in
    /// the process shares one LISTEN connection (a reconnecting task); it
    /// still needs a fallback poll, since a notification can be lost while
    /// that connection is being re-established.
    pub fn wakeups(&self) -> watch::Receiver<u64> {
        self.inner
            .wakeups
            .get_or_init(|| {
                let sender = watch::Sender::new(0);
                if tokio::runtime::Handle::try_current().is_ok() {
                    tokio::spawn(listen_forever(
                        self.pool().clone(),
                        std::sync::Arc::downgrade(&self.inner),
                        sender.clone(),
                        self.inner.remote.clone(),
                    ));
                }
                sender
            })
            .subscribe()
    }
}
