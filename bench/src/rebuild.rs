//! `rebuild`: replaying the whole log into a read model.
//!
//! The log is generated with set-based SQL (fast, and generation is not
//! what is measured): `--events` events over `events / 10` task streams of
//! 10 events each, interleaved so consecutive events belong to different
//! tasks (the worst case for batching: every event of a 5k batch is its own
//! read-model row), written in 50k-event transactions.
//!
//! Ours: `EventStore::read_all` in 5,000-event batches, each applied by a
//! representative projector (fold the batch per task, one set-based upsert
//! into an UNLOGGED table) in a transaction that also moves a checkpoint.
//! [`replay`] is the one place to swap for `projections::rebuild` once it
//! exists. A second figure shows `read_all` alone, to split read and apply.
//!
//! Baseline: a raw keyset scan of the same columns
//! (`WHERE global_position > $1 ORDER BY global_position LIMIT 5000`),
//! rows fetched but not decoded: the read ceiling.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use eventstore::subscription::HandlerError;
use eventstore::{EventStore, GlobalPosition, RecordedEvent, SubscriptionHandler};
use sqlx::{Executor, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::Settings;
use crate::db::{ScratchDb, reset_log};
use crate::report::{Report, Target};

const BATCH: i64 = 5_000;
const EVENTS_PER_STREAM: u64 = 10;
const GENERATE_CHUNK: u64 = 50_000;

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    let pool = db.pool(4).await?;
    let store = EventStore::builder(pool.clone()).build();
    let events = settings.events / EVENTS_PER_STREAM * EVENTS_PER_STREAM;
    let streams = events / EVENTS_PER_STREAM;
    let mut report = Report::new(format!(
        "rebuild ({events} events, {streams} streams, {BATCH}-event batches)"
    ));

    reset_log(&pool).await?;
    let started = Instant::now();
    generate(&pool, events).await?;
    report.note(format!(
        "generated {events} events in {:.1} s (set-based SQL, not measured)",
        started.elapsed().as_secs_f64()
    ));
    pool.execute(
        "CREATE UNLOGGED TABLE bench_task_list (
             task_id       UUID   PRIMARY KEY,
             title         TEXT   NOT NULL,
             status        TEXT   NOT NULL,
             events        BIGINT NOT NULL,
             last_version  BIGINT NOT NULL,
             last_position BIGINT NOT NULL)",
    )
    .await?;
    // One untimed pass so every measured pass reads a warm cache.
    keyset_scan(&pool).await?;

    for run in 1..=settings.runs {
        println!("rebuild: run {run}/{}", settings.runs);
        pool.execute(
            "TRUNCATE bench_task_list; DELETE FROM checkpoints WHERE name = 'bench-rebuild'",
        )
        .await?;
        let t = Instant::now();
        let applied = replay(&store, &TaskList, events).await?;
        let ours = applied as f64 / t.elapsed().as_secs_f64();
        check_read_model(&pool, streams, events).await?;

        let t = Instant::now();
        let read = read_only(&store, events).await?;
        let read_rate = read as f64 / t.elapsed().as_secs_f64();

        let t = Instant::now();
        let scanned = keyset_scan(&pool).await?;
        let base = scanned as f64 / t.elapsed().as_secs_f64();
        anyhow::ensure!(scanned == events, "keyset scan saw {scanned} of {events}");

        report.add(
            "read_all + project (rebuild)",
            "events/s",
            ours,
            base,
            Some(Target::AtLeast(25_000.0)),
        );
        report.add("read_all only", "events/s", read_rate, base, None);
    }
    report.note("ours: read_all (xid8 horizon, upcast, decode) + per-batch fold + UNNEST upsert + checkpoint, one tx per batch");
    report.note("baseline: raw keyset scan of the same columns, rows not decoded");
    pool.close().await;
    Ok(report)
}

/// Replays the whole log through `projector` and returns how many events it
/// applied. Stands in for `projections::rebuild` (same contract: every event
/// once, in global order, batch and checkpoint in one transaction).
async fn replay(
    store: &EventStore,
    projector: &impl SubscriptionHandler,
    expected: u64,
) -> Result<u64> {
    let mut after = GlobalPosition::default();
    let mut applied = 0u64;
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let events = store.read_all(after, BATCH).await?;
        let Some(last) = events.last() else {
            if applied >= expected {
                return Ok(applied);
            }
            // The horizon is cluster-wide: a transaction open anywhere on
            // the server can hide the tail of the log for a while.
            anyhow::ensure!(
                Instant::now() < give_up,
                "replay stalled at {applied} of {expected} events (long transaction on the server?)"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        after = GlobalPosition::of(last);
        let mut tx = store.pool().begin().await?;
        projector
            .handle(&mut tx, &events)
            .await
            .map_err(|e| anyhow!(e))?;
        sqlx::query(
            "INSERT INTO checkpoints (name, last_tx, last_pos, status)
             VALUES ('bench-rebuild', $1, $2, 'rebuilding')
             ON CONFLICT (name) DO UPDATE
             SET last_tx = EXCLUDED.last_tx, last_pos = EXCLUDED.last_pos, updated_at = now()",
        )
        .bind(after.tx_id)
        .bind(after.position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied += events.len() as u64;
    }
}

async fn read_only(store: &EventStore, expected: u64) -> Result<u64> {
    let mut after = GlobalPosition::default();
    let mut read = 0u64;
    while read < expected {
        let events = store.read_all(after, BATCH).await?;
        let Some(last) = events.last() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        after = GlobalPosition::of(last);
        read += events.len() as u64;
    }
    Ok(read)
}

async fn keyset_scan(pool: &PgPool) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    let mut last = 0i64;
    let mut scanned = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT global_position, tx_id::text::bigint AS tx_id, stream_type, stream_id,
                    version, event_id, event_type, schema_version, project_id, payload,
                    metadata, recorded_at
             FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2",
        )
        .bind(last)
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let Some(row) = rows.last() else {
            return Ok(scanned);
        };
        last = row.get("global_position");
        scanned += rows.len() as u64;
    }
}

/// A "task list" read model: one row per task with its latest title and
/// status and how many events it has seen.
struct TaskList;

struct TaskRow {
    title: String,
    status: String,
    events: i64,
    last_version: i64,
    last_position: i64,
}

#[async_trait::async_trait]
impl SubscriptionHandler for TaskList {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        // Fold per task first: ON CONFLICT DO UPDATE may touch a row only
        // once per statement, and one statement per batch is the point.
        let mut order: Vec<Uuid> = Vec::new();
        let mut rows: HashMap<Uuid, TaskRow> = HashMap::with_capacity(events.len());
        for e in events {
            let title = e.payload["title"].as_str().unwrap_or_default();
            let status = e.payload["status"].as_str().unwrap_or("open");
            let row = rows.entry(e.stream_id).or_insert_with(|| {
                order.push(e.stream_id);
                TaskRow {
                    title: String::new(),
                    status: String::new(),
                    events: 0,
                    last_version: 0,
                    last_position: 0,
                }
            });
            title.clone_into(&mut row.title);
            status.clone_into(&mut row.status);
            row.events += 1;
            row.last_version = e.version;
            row.last_position = e.global_position;
        }
        let mut titles = Vec::with_capacity(order.len());
        let mut statuses = Vec::with_capacity(order.len());
        let mut counts = Vec::with_capacity(order.len());
        let mut versions = Vec::with_capacity(order.len());
        let mut positions = Vec::with_capacity(order.len());
        for id in &order {
            let row = rows.remove(id).expect("folded row");
            titles.push(row.title);
            statuses.push(row.status);
            counts.push(row.events);
            versions.push(row.last_version);
            positions.push(row.last_position);
        }
        sqlx::query(
            "INSERT INTO bench_task_list (task_id, title, status, events, last_version, last_position)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[])
             ON CONFLICT (task_id) DO UPDATE
             SET title = EXCLUDED.title, status = EXCLUDED.status,
                 events = bench_task_list.events + EXCLUDED.events,
                 last_version = EXCLUDED.last_version, last_position = EXCLUDED.last_position",
        )
        .bind(&order)
        .bind(&titles)
        .bind(&statuses)
        .bind(&counts)
        .bind(&versions)
        .bind(&positions)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// A rebuild that silently dropped or doubled events would look fast.
async fn check_read_model(pool: &PgPool, streams: u64, events: u64) -> Result<()> {
    let (rows, total, done): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(events), 0)::bigint,
                count(*) FILTER (WHERE status = 'done' AND last_version = $1)
         FROM bench_task_list",
    )
    .bind(EVENTS_PER_STREAM as i64)
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        (rows as u64, total as u64, done as u64) == (streams, events, streams),
        "read model has {rows} rows / {total} events / {done} done, expected {streams} / {events} / {streams}"
    );
    Ok(())
}

/// Writes `events` events (a multiple of 10) with set-based SQL: all stream
/// rows first, then the events in chunks of 50k per transaction, so the log
/// spans many transaction ids like a real one.
async fn generate(pool: &PgPool, events: u64) -> Result<()> {
    let streams = (events / EVENTS_PER_STREAM) as i64;
    sqlx::query(
        "INSERT INTO streams (stream_id, stream_type, version)
         SELECT md5('bench-stream-' || k)::uuid, 'task', $2
         FROM generate_series(0, $1 - 1) AS k",
    )
    .bind(streams)
    .bind(EVENTS_PER_STREAM as i64)
    .execute(pool)
    .await?;
    // Event i belongs to stream i % streams and is its version
    // i / streams + 1: consecutive events hit different streams.
    let mut from = 0u64;
    while from < events {
        let to = (from + GENERATE_CHUNK).min(events) - 1;
        sqlx::query(
            "INSERT INTO events (stream_type, stream_id, project_id, version, event_id,
                                 event_type, schema_version, payload, metadata)
             SELECT 'task',
                    md5('bench-stream-' || (i % $3))::uuid,
                    md5('bench-project-' || (i % $3 % 100))::uuid,
                    i / $3 + 1,
                    gen_random_uuid(),
                    CASE WHEN i / $3 = 0 THEN 'task.created' ELSE 'task.updated' END,
                    1,
                    jsonb_build_object(
                        'title', 'benchmark task ' || (i % $3),
                        'status', CASE WHEN i / $3 = $4 - 1 THEN 'done' ELSE 'open' END,
                        'n', i),
                    jsonb_build_object(
                        'actor', jsonb_build_object('kind', 'system'),
                        'source', 'bench',
                        'occurred_at', now())
             FROM generate_series($1::bigint, $2::bigint) AS i
             ORDER BY i",
        )
        .bind(from as i64)
        .bind(to as i64)
        .bind(streams)
        .bind(EVENTS_PER_STREAM as i64)
        .execute(pool)
        .await?;
        from = to + 1;
    }
    pool.execute("ANALYZE events; ANALYZE streams").await?;
    Ok(())
}
