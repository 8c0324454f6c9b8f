//! Blue/green rebuild and verification of the read models.
//!
//! A rebuild creates the tables in a fresh schema, replays the whole log
//! into it in gap-safe batches while the live tables keep serving reads and
//! writes, then takes a short lock that excludes appenders, replays what
//! landed meanwhile, and swaps the schemas by renaming them. Reads never
//! stop; appends pause only for the final catch-up and swap.

use std::time::Instant;

use eventstore::{EventStore, GlobalPosition, RecordedEvent};
use serde::Serialize;
use sqlx::{PgConnection, Row};

use crate::projector::{self, NAME};

/// Bump when the read-model DDL or the projector's output changes; the
/// server rebuilds into the new shape on its next start.
pub const READ_MODEL_VERSION: i32 = 5;
pub const LIVE_SCHEMA: &str = "rm";
pub const TABLES: &[&str] = &[
    "users",
    "global_roles",
    "api_keys",
    "projects",
    "project_roles",
    "project_members",
    "task_types",
    "task_statuses",
    "custom_fields",
    "sprints",
    "sprint_views",
    "view_task_positions",
    "tasks",
    "task_activities",
    "task_links",
    "agents",
    "agent_mcp_servers",
    "agent_skills",
    "agent_conversations",
    "agent_conversation_events",
    "agent_chat_sessions",
    "plugins",
    "plugin_extension_settings",
    "doc_folders",
    "docs",
    "doc_snapshots",
    "doc_activities",
    "doc_files",
    "task_attachments",
    "notifications",
    "plugin_summaries",
    "plugin_wakeups",
];
const DDL: &str = include_str!("../sql/read_models.sql");

/// Identifies the read-model shape this code builds: the DDL text and the
/// projector version. Any difference from the live projection's fingerprint
/// makes `ensure_ready` rebuild, so a table added to the DDL without a
/// version bump still appears on upgrade. (FNV-1a: stable across builds and
/// platforms, unlike `std`'s hasher.)
pub fn fingerprint() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in DDL.bytes().chain(READ_MODEL_VERSION.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{READ_MODEL_VERSION}-{hash:016x}")
}
const BATCH: i64 = 5_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Progress of a replay: events applied so far and the expected total.
pub trait Progress {
    fn update(&self, done: u64, total: u64);
}

impl<F: Fn(u64, u64)> Progress for F {
    fn update(&self, done: u64, total: u64) {
        self(done, total)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub version: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableDiff {
    pub table: String,
    /// Rows only in the live table (as JSON).
    pub only_live: Vec<String>,
    /// Rows only in the rebuilt table (as JSON).
    pub only_rebuilt: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionState {
    pub name: String,
    pub version: i32,
    pub code_version: i32,
    pub schema: String,
    pub checkpoint: GlobalPosition,
    pub rebuilt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// False when the live tables were built by other code (a rebuild is due).
    pub current: bool,
}

/// Creates `schema` with empty read-model tables (what a rebuild fills).
pub async fn create_tables(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut *conn)
        .await?;
    let ddl = DDL.replace("{schema}", schema);
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(conn)
        .await
}

async fn apply_batch(
    conn: &mut PgConnection,
    schema: &str,
    events: &[RecordedEvent],
) -> Result<(), BoxError> {
    set_build_schema(conn, schema).await?;
    projector::apply_rendered(conn, events).await
}

async fn set_build_schema(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // SET LOCAL: the projector's unqualified table names resolve to the
    // schema being built, for this transaction only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL search_path TO {schema}, public"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An event no replay can project: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error(
    "the read models cannot be built: the event at global position {position} \
     ({event_type}, stream {stream_id}) cannot be projected: {source}. The log itself is \
     intact. Inspect it with `paca events show {position}`; a release whose upcasters \
     repair this event type rebuilds past it"
)]
pub struct ReplayError {
    pub position: i64,
    pub event_type: String,
    pub stream_id: uuid::Uuid,
    #[source]
    pub source: BoxError,
}

/// A batch failed as a whole: replays it one event at a time in a
/// transaction that is rolled back, to name the event that fails. Falls
/// back to the batch's error if every event applies on its own.
async fn name_the_failure(
    pool: &sqlx::PgPool,
    schema: &str,
    events: &[RecordedEvent],
    batch_error: BoxError,
) -> BoxError {
    let probe = async {
        let mut tx = pool.begin().await?;
        set_build_schema(&mut tx, schema).await?;
        for event in events {
            if let Err(source) =
                projector::apply_rendered(&mut tx, std::slice::from_ref(event)).await
            {
                return Ok::<_, BoxError>(Some(ReplayError {
                    position: event.global_position,
                    event_type: event.event_type.clone(),
                    stream_id: event.stream_id,
                    source,
                }));
            }
        }
        Ok(None)
    };
    match probe.await {
        Ok(Some(named)) => Box::new(named),
        _ => batch_error,
    }
}

/// Replays the log into `schema` until caught up, then takes the appenders'
/// lock inside `final_tx` and applies the rest there. Returns the number of
/// events applied and the last position.
async fn replay(
    store: &EventStore,
    schema: &str,
    final_tx: &mut PgConnection,
    progress: &dyn Progress,
) -> Result<(u64, GlobalPosition), BoxError> {
    let pool = store.pool();
    // Fresh statistics: with stale ones (e.g. right after a bulk import) the
    // planner reads each batch with a bitmap scan + sort of the whole log
    // instead of walking (tx_id, global_position): 140 ms vs 2 ms a batch.
    sqlx::query("ANALYZE events").execute(pool).await?;
    let (_, total) = store.head().await?;
    let total = total as u64;
    let mut done = 0u64;
    let mut after = GlobalPosition::default();
    let mut events = store.read_all(after, BATCH).await?;
    // Reading the next batch overlaps applying this one (two connections):
    // reads were about a third of the replay time.
    while let Some(last) = events.last() {
        after = GlobalPosition::of(last);
        let full = events.len() as i64 == BATCH;
        let apply = async {
            let mut tx = pool.begin().await?;
            if let Err(error) = apply_batch(&mut tx, schema, &events).await {
                drop(tx);
                return Err(name_the_failure(pool, schema, &events, error).await);
            }
            tx.commit().await?;
            Ok::<_, BoxError>(())
        };
        let read = async {
            if full {
                store.read_all(after, BATCH).await
            } else {
                Ok(Vec::new())
            }
        };
        let (applied, next) = tokio::join!(apply, read);
        applied?;
        done += events.len() as u64;
        progress.update(done, total.max(done));
        events = next?;
    }

    // Statistics for the new tables before reads switch to them: without
    // any (autovacuum has not seen them yet, or is off) the planner cannot
    // tell a primary-key lookup from a scan of a project's rows, and picked
    // the latter for `GET /tasks/:id` on a 100,000-task project.
    let tables = TABLES
        .iter()
        .map(|table| format!("{schema}.{table}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {tables}")))
        .execute(pool)
        .await?;

    // Final catch-up: appenders take ROW EXCLUSIVE on `streams` before they
    // insert any event, so EXCLUSIVE here waits for in-flight appends to
    // finish and holds new ones back; then every committed event is visible.
    sqlx::query("LOCK TABLE streams IN EXCLUSIVE MODE")
        .execute(&mut *final_tx)
        .await?;
    loop {
        let events = store.read_all_quiesced(final_tx, after, BATCH).await?;
        let Some(last) = events.last() else { break };
        after = GlobalPosition::of(last);
        if let Err(error) = apply_batch(final_tx, schema, &events).await {
            return Err(name_the_failure(pool, schema, &events, error).await);
        }
        done += events.len() as u64;
        progress.update(done, done.max(total));
    }
    Ok((done, after))
}

/// Rebuilds the read models from the log and switches reads to them.
pub async fn rebuild(
    store: &EventStore,
    progress: &dyn Progress,
) -> Result<RebuildReport, BoxError> {
    let started = Instant::now();
    let pool = store.pool();
    let build = format!("rm_build_{}", std::process::id());
    let mut conn = pool.acquire().await?;
    if schema_exists(&mut conn, &build).await? {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {build} CASCADE")))
            .execute(&mut *conn)
            .await?;
    }
    create_tables(&mut conn, &build).await?;
    drop(conn);

    let mut tx = pool.begin().await?;
    let (events, last) = match replay(store, &build, &mut tx, progress).await {
        Ok(done) => done,
        Err(error) => {
            drop(tx);
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {build} CASCADE"
            )))
            .execute(pool)
            .await;
            return Err(error);
        }
    };
    let retired = format!("rm_retired_{}", std::process::id());
    if schema_exists(&mut tx, LIVE_SCHEMA).await? {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SCHEMA {LIVE_SCHEMA} RENAME TO {retired}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER SCHEMA {build} RENAME TO {LIVE_SCHEMA}"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {retired} CASCADE"
    )))
    .execute(&mut *tx)
    .await?;
    record_state(&mut tx, last, true).await?;
    tx.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RebuildReport {
        events,
        seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
        version: READ_MODEL_VERSION,
    })
}

async fn record_state(
    conn: &mut PgConnection,
    last: GlobalPosition,
    rebuilt: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_state (name, version, schema, last_tx, last_pos, rebuilt_at,
                                       fingerprint)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END, $7)
         ON CONFLICT (name) DO UPDATE SET version = $2, schema = $3, last_tx = $4, last_pos = $5,
             rebuilt_at = CASE WHEN $6 THEN now() ELSE projection_state.rebuilt_at END,
             fingerprint = $7",
    )
    .bind(NAME)
    .bind(READ_MODEL_VERSION)
    .bind(LIVE_SCHEMA)
    .bind(last.tx_id)
    .bind(last.position)
    .bind(rebuilt)
    .bind(fingerprint())
    .execute(conn)
    .await?;
    Ok(())
}

/// Rebuilds into a scratch schema and compares it, table by table, with the
/// live read models while appends are held back. Returns the differences
/// (empty when the live tables equal a replay of the log).
pub async fn verify(
    store: &EventStore,
    progress: &dyn Progress,
) -> Result<Vec<TableDiff>, BoxError> {
    let pool = store.pool();
    let scratch = format!("rm_verify_{}", std::process::id());
    let mut conn = pool.acquire().await?;
    if schema_exists(&mut conn, &scratch).await? {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {scratch} CASCADE"
        )))
        .execute(&mut *conn)
        .await?;
    }
    create_tables(&mut conn, &scratch).await?;
    drop(conn);

    let mut tx = pool.begin().await?;
    let outcome = async {
        replay(store, &scratch, &mut tx, progress).await?;
        let mut diffs = Vec::new();
        for table in TABLES {
            let only = |a: &str, b: &str| {
                format!(
                    "SELECT row_to_json(d)::text AS row FROM
                       (SELECT * FROM {a}.{table} EXCEPT ALL SELECT * FROM {b}.{table}) d
                     ORDER BY 1 LIMIT 50"
                )
            };
            let only_live: Vec<String> =
                sqlx::query(sqlx::AssertSqlSafe(only(LIVE_SCHEMA, &scratch)))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.get("row"))
                    .collect();
            let only_rebuilt: Vec<String> =
                sqlx::query(sqlx::AssertSqlSafe(only(&scratch, LIVE_SCHEMA)))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.get("row"))
                    .collect();
            if !only_live.is_empty() || !only_rebuilt.is_empty() {
                diffs.push(TableDiff {
                    table: (*table).to_owned(),
                    only_live,
                    only_rebuilt,
                });
            }
        }
        Ok::<_, BoxError>(diffs)
    }
    .await;
    // Nothing of the scratch schema is kept, whatever the outcome.
    drop(tx);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {scratch} CASCADE"
    )))
    .execute(pool)
    .await?;
    outcome
}

/// Makes sure the live read models exist in the code's version: creates
/// them on a fresh database, and rebuilds them (blue/green) when they are
/// missing or from an older version. Called on every start.
pub async fn ensure_ready(store: &EventStore) -> Result<Option<RebuildReport>, BoxError> {
    let pool = store.pool();
    let mut conn = pool.acquire().await?;
    // Several nodes may start at once: serialise the check.
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('paca.read_models.ensure', 0))")
        .execute(&mut *conn)
        .await?;
    let result = async {
        let state: Option<(i32, Option<String>)> =
            sqlx::query_as("SELECT version, fingerprint FROM projection_state WHERE name = $1")
                .bind(NAME)
                .fetch_optional(&mut *conn)
                .await?;
        let version = state.as_ref().map(|s| s.0);
        let live = schema_exists(&mut conn, LIVE_SCHEMA).await?;
        if live && state.is_some_and(|(_, f)| f.as_deref() == Some(fingerprint().as_str())) {
            return Ok(None);
        }
        let events: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM events LIMIT 1) e")
                .fetch_one(&mut *conn)
                .await?;
        if !live && events == 0 {
            let mut tx = pool.begin().await?;
            create_tables(&mut tx, LIVE_SCHEMA).await?;
            record_state(&mut tx, GlobalPosition::default(), false).await?;
            tx.commit().await?;
            return Ok(None);
        }
        tracing::info!(from = ?version, to = READ_MODEL_VERSION, "rebuilding read models");
        rebuild(store, &|_, _| {}).await.map(Some)
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended('paca.read_models.ensure', 0))")
        .execute(&mut *conn)
        .await?;
    result
}

pub async fn state(store: &EventStore) -> Result<Vec<ProjectionState>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, version, schema, last_tx, last_pos, rebuilt_at, fingerprint FROM projection_state
         ORDER BY name",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| ProjectionState {
            name: r.get("name"),
            version: r.get("version"),
            code_version: READ_MODEL_VERSION,
            schema: r.get("schema"),
            checkpoint: GlobalPosition {
                tx_id: r.get("last_tx"),
                position: r.get("last_pos"),
            },
            rebuilt_at: r.get("rebuilt_at"),
            current: r.get::<Option<String>, _>("fingerprint").as_deref()
                == Some(fingerprint().as_str()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `verify` compares exactly the tables in `TABLES`: a table in the DDL
    /// but missing from the list would never be checked (`task_links` was).
    #[test]
    fn tables_lists_every_table_of_the_ddl() {
        let mut ddl: Vec<&str> = DDL
            .lines()
            .filter_map(|line| line.trim().strip_prefix("CREATE TABLE {schema}."))
            .map(|rest| rest.split([' ', '(']).next().unwrap_or_default())
            .collect();
        let mut listed = TABLES.to_vec();
        ddl.sort_unstable();
        listed.sort_unstable();
        assert_eq!(ddl, listed);
    }
}
