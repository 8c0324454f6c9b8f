//! The scratch database a bench run owns, and the row shape shared by the
//! event store and the raw baselines.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use eventstore::{Metadata, NewEvent};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

pub struct ScratchDb {
    pub name: String,
    admin: PgConnectOptions,
    options: PgConnectOptions,
}

impl ScratchDb {
    /// Creates `paca_bench_<pid>` on the server of `url` and migrates it.
    pub async fn create(url: &str) -> Result<Self> {
        let admin = PgConnectOptions::from_str(url).context("parse --database-url")?;
        let name = format!("paca_bench_{}", std::process::id());
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .context("connect to --database-url")?;
        // The name is ours (a pid), so a leftover can only be from a crashed
        // earlier run with the same pid.
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        // As the server does (src/main.rs `Database::open`): migrations land
        // in `public` only; everything else runs with the read-model schema
        // `rm` (created by `projections::ensure_ready`) first on the path.
        let mut migrate =
            PgConnection::connect_with(&options.clone().options([("search_path", "public")]))
                .await?;
        sqlx::migrate!("../migrations").run(&mut migrate).await?;
        migrate.close().await?;
        Ok(Self {
            options: options.options([("search_path", "rm,public")]),
            admin,
            name,
        })
    }

    /// A pool on the scratch database with every connection opened up
    /// front, so no phase pays connection set-up inside its timed window.
    pub async fn pool(&self, connections: u32) -> Result<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .min_connections(connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(self.options.clone())
            .await?;
        let mut held = Vec::with_capacity(connections as usize);
        for _ in 0..connections {
            held.push(pool.acquire().await?);
        }
        drop(held);
        Ok(pool)
    }

    pub async fn server_version(&self) -> Result<String> {
        let mut conn = PgConnection::connect_with(&self.options).await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(format!("PostgreSQL {version}"))
    }

    pub async fn drop_db(&self) -> Result<()> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await?;
        conn.close().await?;
        Ok(())
    }
}

/// Empties the log between phases so every phase starts from the same
/// table sizes (and the baseline table alongside it).
pub async fn reset_log(pool: &PgPool) -> Result<()> {
    pool.execute(
        "TRUNCATE events, streams, checkpoints, event_seals;
         DROP TABLE IF EXISTS public.bench_raw_events;
         -- Same columns, defaults, identity, constraints and indexes as the
         -- log, so the baseline pays for the same row shape.
         CREATE TABLE public.bench_raw_events (LIKE events INCLUDING ALL);",
    )
    .await?;
    Ok(())
}

/// A ~60-byte payload, the size EVENT-STORE.md's pgbench baselines used.
pub fn payload(n: u64) -> Value {
    json!({ "title": "benchmark task", "status": "open", "n": n })
}

pub fn new_event(n: u64) -> NewEvent {
    NewEvent::new("task.updated", payload(n), Metadata::system("bench"))
}

/// Columns of one baseline row, as arrays for an `UNNEST` insert.
#[derive(Default)]
pub struct RawRows {
    pub versions: Vec<i64>,
    pub event_ids: Vec<Uuid>,
    pub types: Vec<String>,
    pub schema_versions: Vec<i16>,
    pub payloads: Vec<Value>,
    pub metadata: Vec<Value>,
}

impl RawRows {
    /// The same values the event store would write for `events`.
    pub fn from_events(first_version: i64, events: Vec<NewEvent>) -> Self {
        let mut rows = Self::default();
        for (i, e) in events.into_iter().enumerate() {
            rows.versions.push(first_version + i as i64);
            rows.event_ids.push(e.event_id);
            rows.types.push(e.event_type);
            rows.schema_versions.push(e.schema_version);
            rows.payloads.push(e.payload);
            rows.metadata
                .push(serde_json::to_value(&e.metadata).unwrap_or_default());
        }
        rows
    }
}
