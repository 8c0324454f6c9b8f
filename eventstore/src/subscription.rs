//! Checkpointed, gap-safe, at-least-once consumers of the log.
//!
//! Each subscription has a name and a row in `checkpoints`. A batch is read
//! in `(tx_id, global_position)` order below the in-flight horizon, handed to
//! the handler inside a transaction, and the checkpoint advances in that same
//! transaction, so a batch is either fully applied and checkpointed or not
//! at all. Only one runner per name is active at a time (a session advisory
//! lock held on a dedicated connection); others wait as hot standbys.
//! Runners wake on in-process commits, on `LISTEN paca_events`, and on a
//! fallback poll. A failing handler is retried with exponential backoff and
//! its error is visible in `checkpoints` (and `paca projections status`);
//! the batch is never skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;

use crate::{EventStore, GlobalPosition, RecordedEvent};

pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The side of a subscription that does the work. Handlers must be
/// idempotent (keyed by `event_id`): delivery is at least once.
#[async_trait::async_trait]
pub trait SubscriptionHandler: Send + Sync {
    /// Applies one batch inside the transaction that also moves the
    /// checkpoint. Returning an error rolls both back; the batch is retried.
    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError>;

    /// Whether `handle` writes through `tx` and needs it to commit with
    /// the checkpoint. A handler whose effects are elsewhere (a publish, a
    /// queue) says `false`: it gets a plain connection and the checkpoint
    /// moves in its own statement after it succeeded (still at least once).
    fn transactional(&self) -> bool {
        true
    }
}

pub struct Subscription<H> {
    name: String,
    store: EventStore,
    handler: H,
    batch_size: i64,
    poll_interval: Duration,
    max_backoff: Duration,
    stream_types: Option<Vec<String>>,
    coalesce: Duration,
    headers_only: bool,
    /// Times `run` found another runner holding the lock and waited.
    standby_rounds: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStatus {
    pub name: String,
    pub checkpoint: GlobalPosition,
    pub status: String,
    pub paused: bool,
    pub last_error: Option<String>,
    pub failures: i32,
    pub lag: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Why [`Subscription::run`] or [`Subscription::drain`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// Another runner (or drain) holds the subscription's lock.
    #[error("another runner holds subscription {0}")]
    Busy(String),
    /// The handler failed on a batch; the batch and its checkpoint were
    /// rolled back and the failure recorded in `checkpoints`.
    #[error(transparent)]
    Handler(HandlerError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl SubscriptionError {
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy(_))
    }
}

impl<H: SubscriptionHandler> Subscription<H> {
    pub fn new(name: impl Into<String>, store: EventStore, handler: H) -> Self {
        Self {
            name: name.into(),
            store,
            handler,
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            stream_types: None,
            coalesce: Duration::ZERO,
            headers_only: false,
            standby_rounds: AtomicU64::new(0),
        }
    }

    /// Deliver events without payload and metadata (both JSON `null`): for
    /// a handler that only needs positions and ids.
    pub fn headers_only(mut self) -> Self {
        self.headers_only = true;
        self
    }

    /// After a partial batch, wait this long before the next one instead of
    /// waking on every commit: fewer, larger batches for a consumer whose
    /// per-batch cost matters more than its latency (the log sealer).
    pub fn coalesce(mut self, d: Duration) -> Self {
        self.coalesce = d;
        self
    }

    pub fn batch_size(mut self, n: i64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Only deliver events of these stream types.
    pub fn stream_types(mut self, types: Vec<String>) -> Self {
        self.stream_types = Some(types);
        self
    }

    /// How many times [`Self::run`] found the subscription held by another
    /// runner and waited as a standby: lets a caller (a test, a status
    /// page) see that a standby is alive and refused, without timing.
    pub fn standby_rounds(&self) -> u64 {
        self.standby_rounds.load(Ordering::Relaxed)
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Runs until `shutdown` turns true. Waits as a standby while another
    /// runner holds the subscription.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> Result<(), SubscriptionError> {
        let mut lock = LockSession::open(self.store.pool(), &self.name).await?;
        let result = self.run_locked(&mut lock, shutdown).await;
        lock.release().await;
        result
    }

    async fn run_locked(
        &self,
        lock: &mut LockSession,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), SubscriptionError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if lock.try_lock().await? {
                break;
            }
            self.standby_rounds.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.ensure_row().await?;

        // Local commits and other processes' NOTIFYs, through the store's
        // one shared LISTEN connection.
        let mut wakeups = self.store.wakeups();
        let mut failures: u32 = 0;
        // Where this runner stands (see `Cursor`). An operator's reset or
        // pause shows as a checkpoint update that matches nothing (see
        // `step`), and the row is re-read on every idle poll, so a reset
        // with no new events is still picked up.
        let mut cursor = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.step(&mut cursor).await {
                Ok(step) if step.more => failures = 0,
                Ok(step) => {
                    failures = 0;
                    if step.handled > 0 && !self.coalesce.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(self.coalesce) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                    // Caught up: anything committed since the read bumped
                    // the wake-up signal, so waiting loses nothing, and an
                    // empty read after every batch would double the
                    // queries a busy log costs each subscription.
                    tokio::select! {
                        _ = wakeups.changed() => {}
                        _ = tokio::time::sleep(self.poll_interval) => cursor = None,
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    cursor = None;
                    failures = failures.saturating_add(1);
                    let backoff =
                        Duration::from_millis(50u64.saturating_mul(1 << failures.min(16)))
                            .min(self.max_backoff);
                    tracing::warn!(subscription = %self.name, %error, ?backoff, "batch failed; retrying");
                    self.record_failure(&error.to_string()).await;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        sqlx::query(
            "UPDATE checkpoints SET status = 'stopped', updated_at = now() WHERE name = $1",
        )
        .bind(&self.name)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Processes everything currently available, batch by batch, holding
    /// the subscription's lock meanwhile. A deterministic hook for tests and
    /// for `paca` commands that drain a subscription once. Fails with
    /// [`SubscriptionError::Busy`] while a runner holds the subscription.
    pub async fn drain(&self) -> Result<usize, SubscriptionError> {
        let mut lock = LockSession::open(self.store.pool(), &self.name).await?;
        let result = self.drain_locked(&mut lock).await;
        lock.release().await;
        result
    }

    async fn drain_locked(&self, lock: &mut LockSession) -> Result<usize, SubscriptionError> {
        if !lock.try_lock().await? {
            return Err(SubscriptionError::Busy(self.name.clone()));
        }
        self.ensure_row().await?;
        let mut total = 0;
        let mut cursor = None;
        loop {
            match self.step(&mut cursor).await {
                Ok(Step { handled: 0, .. }) => return Ok(total),
                Ok(step) => total += step.handled,
                Err(error) => {
                    self.record_failure(&error.to_string()).await;
                    return Err(error);
                }
            }
        }
    }

    /// One batch: read after the checkpoint, handle, checkpoint, commit.
    /// `cursor` is where this runner stands (`None`: read the row).
    async fn step(&self, cursor: &mut Option<Cursor>) -> Result<Step, SubscriptionError> {
        let pool = self.store.pool();
        let at = match *cursor {
            Some(at) => at,
            None => {
                let row = sqlx::query(
                    "SELECT last_tx, last_pos, paused FROM checkpoints WHERE name = $1",
                )
                .bind(&self.name)
                .fetch_one(pool)
                .await?;
                if row.get::<bool, _>("paused") {
                    return Ok(Step::IDLE);
                }
                let checkpoint = GlobalPosition {
                    tx_id: row.get("last_tx"),
                    position: row.get("last_pos"),
                };
                let at = Cursor {
                    checkpoint,
                    read_from: checkpoint,
                };
                *cursor = Some(at);
                at
            }
        };
        // Read before the transaction writes anything: a transaction that has
        // taken an xid would hold the horizon back on itself.
        let mut conn = pool.acquire().await?;
        let batch = self
            .store
            .read_for_subscription(
                &mut conn,
                &self.name,
                at.read_from,
                self.batch_size,
                self.stream_types.as_deref(),
                self.headers_only,
            )
            .await?;
        drop(conn);
        // Past the batch, and for a typed subscription past the events of
        // other types below the horizon too.
        let next = batch.next_after(at.read_from);
        let events = batch.events.as_slice();
        if events.is_empty() {
            // Only in memory: writing the checkpoint for events this runner
            // does not read would cost a write per idle read. The next
            // batch's checkpoint covers them.
            *cursor = Some(Cursor {
                read_from: next,
                ..at
            });
            return Ok(Step::IDLE);
        }

        let moved = if self.handler.transactional() {
            let mut tx = pool.begin().await?;
            self.handler
                .handle(&mut tx, events)
                .await
                .map_err(SubscriptionError::Handler)?;
            let moved = self.advance(&mut tx, at.checkpoint, next).await?;
            if moved {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            moved
        } else {
            // Effects outside the database: a transaction would only wrap
            // the checkpoint's own update (two more round trips a batch).
            let mut conn = pool.acquire().await?;
            self.handler
                .handle(&mut conn, events)
                .await
                .map_err(SubscriptionError::Handler)?;
            self.advance(&mut conn, at.checkpoint, next).await?
        };
        if moved {
            *cursor = None;
            return Ok(Step {
                handled: events.len(),
                more: true,
            });
        }
        *cursor = Some(Cursor {
            checkpoint: next,
            read_from: next,
        });
        Ok(Step {
            handled: events.len(),
            more: batch.full(),
        })
    }

    /// Moves the checkpoint from `after` to `last`; `true` if it had moved
    /// under the batch. Only from where this batch started: an operator who
    /// reset or paused the subscription meanwhile (`paca subscriptions`)
    /// wins, and the batch is rolled back and read again from the new
    /// checkpoint.
    async fn advance(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        last: GlobalPosition,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE checkpoints SET last_tx = $2, last_pos = $3, status = 'running',
                    last_error = NULL, failures = 0, updated_at = now()
             WHERE name = $1 AND last_tx = $4 AND last_pos = $5 AND NOT paused",
        )
        .bind(&self.name)
        .bind(last.tx_id)
        .bind(last.position)
        .bind(after.tx_id)
        .bind(after.position)
        .execute(conn)
        .await?
        .rows_affected();
        Ok(updated == 0)
    }

    async fn ensure_row(&self) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(&self.name)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    async fn record_failure(&self, error: &str) {
        let result = sqlx::query(
            "UPDATE checkpoints SET status = 'retrying', last_error = $2,
                    failures = failures + 1, updated_at = now()
             WHERE name = $1",
        )
        .bind(&self.name)
        .bind(error)
        .execute(self.store.pool())
        .await;
        if let Err(db_error) = result {
            tracing::error!(subscription = %self.name, %db_error, "could not record handler failure");
        }
    }
}

/// Where a runner stands: the checkpoint as it last wrote it (while it
/// holds the lock nobody else advances it, so a step need not read it
/// back), and where its next read starts, which an empty typed read moves
/// past the horizon without a write.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    checkpoint: GlobalPosition,
    read_from: GlobalPosition,
}

/// What one [`Subscription::step`] did.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Events handed to the handler (rolled back too, if the checkpoint
    /// had moved under it).
    handled: usize,
    /// Read again at once: the batch was full, or the checkpoint moved.
    more: bool,
}

impl Step {
    const IDLE: Self = Self {
        handled: 0,
        more: false,
    };
}

/// The session holding a subscription's advisory lock: a dedicated
/// connection outside the pool, so the lock lives exactly as long as this.
///
/// [`LockSession::release`] unlocks and closes the session explicitly:
/// merely dropping a sqlx connection does not end the server session at
/// once, and a `drain()` right after `run()` returned would still find the
/// lock held. If the owning future is dropped instead (cancelled, panicked),
/// `Drop` finishes the release on a spawned task.
struct LockSession {
    conn: Option<PgConnection>,
    name: String,
    held: bool,
}

impl LockSession {
    async fn open(pool: &PgPool, name: &str) -> Result<Self, sqlx::Error> {
        Ok(Self {
            conn: Some(pool.acquire().await?.detach()),
            name: name.to_owned(),
            held: false,
        })
    }

    async fn try_lock(&mut self) -> Result<bool, sqlx::Error> {
        if self.held {
            return Ok(true);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        self.held = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('paca.subscription.' || $1, 0))",
        )
        .bind(&self.name)
        .fetch_one(conn)
        .await?;
        Ok(self.held)
    }

    async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            release(conn, &self.name, self.held).await;
        }
    }
}

impl Drop for LockSession {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let name = std::mem::take(&mut self.name);
            let held = self.held;
            runtime.spawn(async move { release(conn, &name, held).await });
        }
    }
}

async fn release(mut conn: PgConnection, name: &str, held: bool) {
    if held {
        let unlocked = sqlx::query(
            "SELECT pg_advisory_unlock(hashtextextended('paca.subscription.' || $1, 0))",
        )
        .bind(name)
        .execute(&mut conn)
        .await;
        if let Err(error) = unlocked {
            // Closing the session below releases it too, a moment later.
            tracing::warn!(subscription = %name, %error, "could not release the subscription lock");
        }
    }
    if let Err(error) = conn.close().await {
        tracing::debug!(subscription = %name, %error, "closing the lock session failed");
    }
}

impl EventStore {
    /// Every subscription with its checkpoint, state and lag (visible
    /// events after its checkpoint).
    /// Moves a subscription's checkpoint so that it delivers every event
    /// after `to` again (`GlobalPosition::default()`: the whole log). The
    /// running runner picks it up at its next batch; a batch in flight is
    /// rolled back. Returns false when no such subscription exists.
    pub async fn reset_subscription(
        &self,
        name: &str,
        to: GlobalPosition,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE checkpoints SET last_tx = $2, last_pos = $3, failures = 0,
                    last_error = NULL, updated_at = now()
             WHERE name = $1",
        )
        .bind(name)
        .bind(to.tx_id)
        .bind(to.position)
        .execute(self.pool())
        .await?;
        self.nudge();
        Ok(done.rows_affected() == 1)
    }

    /// Pauses (or resumes) a subscription: its runner keeps the lock and
    /// delivers nothing until resumed. Returns false when no such
    /// subscription exists.
    pub async fn pause_subscription(&self, name: &str, paused: bool) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE checkpoints SET paused = $2,
                    status = CASE WHEN $2 THEN 'paused' ELSE 'running' END, updated_at = now()
             WHERE name = $1",
        )
        .bind(name)
        .bind(paused)
        .execute(self.pool())
        .await?;
        self.nudge();
        Ok(done.rows_affected() == 1)
    }

    /// The place in the global order of the event at `position` (so a
    /// checkpoint there delivers what follows it); `None` when there is no
    /// such event. Position 0 is the start of the log.
    pub async fn order_key_of(&self, position: i64) -> Result<Option<GlobalPosition>, sqlx::Error> {
        if position == 0 {
            return Ok(Some(GlobalPosition::default()));
        }
        let tx: Option<i64> =
            sqlx::query_scalar("SELECT tx_id::text::bigint FROM events WHERE global_position = $1")
                .bind(position)
                .fetch_optional(self.pool())
                .await?;
        Ok(tx.map(|tx_id| GlobalPosition { tx_id, position }))
    }

    /// The place in the global order just before the first event recorded
    /// at or after `at`.
    pub async fn order_key_before(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<GlobalPosition, sqlx::Error> {
        let row = sqlx::query(
            "SELECT tx_id::text::bigint AS tx_id, global_position FROM events
             WHERE recorded_at < $1 ORDER BY events.tx_id DESC, global_position DESC LIMIT 1",
        )
        .bind(at)
        .fetch_optional(self.pool())
        .await?;
        Ok(
            row.map_or_else(GlobalPosition::default, |r| GlobalPosition {
                tx_id: r.get("tx_id"),
                position: r.get("global_position"),
            }),
        )
    }

    /// Per event type, how many visible events follow `after` (what a
    /// reset would deliver again, before the subscription's own filter).
    pub async fn types_after(
        &self,
        after: GlobalPosition,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT event_type, COUNT(*) AS n FROM events
             WHERE (tx_id, global_position) > ($1::text::xid8, $2)
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
             GROUP BY event_type ORDER BY n DESC, event_type",
        )
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("event_type"), r.get("n")))
            .collect())
    }

    pub async fn subscription_status(&self) -> Result<Vec<SubscriptionStatus>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT name, last_tx, last_pos, status, paused, last_error, failures, updated_at
             FROM checkpoints ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let checkpoint = GlobalPosition {
                tx_id: row.get("last_tx"),
                position: row.get("last_pos"),
            };
            out.push(SubscriptionStatus {
                name: row.get("name"),
                checkpoint,
                status: row.get("status"),
                paused: row.get("paused"),
                last_error: row.get("last_error"),
                failures: row.get("failures"),
                lag: self.count_after(checkpoint).await?,
                updated_at: row.get("updated_at"),
            });
        }
        Ok(out)
    }
}
