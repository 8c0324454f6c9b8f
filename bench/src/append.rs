//! `append`: throughput with 1, 8 and 16 writers (one event per
//! transaction), 8 writers with 10 events per transaction, and the
//! single-writer latency.
//!
//! Baseline: the same rows written by the same number of writers with a
//! plain `BEGIN; INSERT …; COMMIT` into `bench_raw_events`, a copy of the
//! `events` table (same columns, defaults, identity, unique constraints and
//! indexes) with no `streams` row, no version check and no `RETURNING`.
//! The ratio is therefore what the event store's bookkeeping costs on top
//! of the unavoidable insert + commit.

use std::time::{Duration, Instant};

use anyhow::Result;
use eventstore::{EventStore, ExpectedVersion, StreamRef, seal};
use hdrhistogram::Histogram;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Settings;
use crate::db::{RawRows, ScratchDb, new_event, reset_log};
use crate::report::{Report, Target, histogram, ms};

/// Streams spread over the writers; each writer owns its share, so writers
/// never conflict and the version checks all succeed (a conflict would be
/// an application retry, not store throughput).
const STREAMS: usize = 10_000;

#[derive(Clone)]
enum Mode {
    Ours(EventStore),
    Raw(PgPool),
}

struct Phase {
    txs: u64,
    events: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Phase {
    fn txs_per_sec(&self) -> f64 {
        self.txs as f64 / self.elapsed.as_secs_f64()
    }
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    let pool = db.pool(16 + 2).await?;
    let store = EventStore::builder(pool.clone()).build();
    let ours = Mode::Ours(store);
    let raw = Mode::Raw(pool.clone());
    let mut report = Report::new(format!(
        "append ({} s per phase, ~60 B payload, {STREAMS} streams)",
        settings.phase.as_secs()
    ));

    for run in 1..=settings.runs {
        println!("append: run {run}/{}", settings.runs);
        for writers in [1usize, 8, 16] {
            let a = phase(&pool, &ours, writers, 1, settings.phase).await?;
            let b = phase(&pool, &raw, writers, 1, settings.phase).await?;
            let target = (writers == 8).then_some(Target::AtLeast(12_000.0));
            report.add(
                &format!("{writers} writer(s), 1 event/tx"),
                "appends/s",
                a.txs_per_sec(),
                b.txs_per_sec(),
                target,
            );
            if writers == 1 {
                report.add(
                    "1 writer latency p50",
                    "ms",
                    ms(&a.latency, 0.50),
                    ms(&b.latency, 0.50),
                    Some(Target::AtMost(0.5)),
                );
                report.add(
                    "1 writer latency p99",
                    "ms",
                    ms(&a.latency, 0.99),
                    ms(&b.latency, 0.99),
                    Some(Target::AtMost(2.0)),
                );
            }
        }
        // The same 8 writers while the log sealer chains behind them (as
        // it does in a running server): what the tamper-evident log costs
        // the write path.
        let a = sealed_phase(&pool, &ours, settings.phase).await?;
        let b = phase(&pool, &raw, 8, 1, settings.phase).await?;
        report.add(
            "8 writers, 1 event/tx, sealer running",
            "appends/s",
            a.txs_per_sec(),
            b.txs_per_sec(),
            Some(Target::AtLeast(12_000.0)),
        );
        let a = phase(&pool, &ours, 8, 10, settings.phase).await?;
        let b = phase(&pool, &raw, 8, 10, settings.phase).await?;
        report.add(
            "8 writers, 10 events/tx",
            "events/s",
            a.events_per_sec(),
            b.events_per_sec(),
            Some(Target::AtLeast(60_000.0)),
        );
    }
    report.note(
        "ours: EventStore::append without inline projectors: one statement in autocommit \
         (streams-row version check + UNNEST insert in a data-modifying CTE, RETURNING)",
    );
    report.note(
        "baseline: BEGIN; INSERT into a copy of `events` (same indexes); COMMIT - no streams row, \
         no version check; same writers",
    );
    report.note("latency: client-side, around one append/transaction");
    pool.close().await;
    Ok(report)
}

/// `writers` concurrent writers for `duration`, on an emptied log.
async fn phase(
    pool: &PgPool,
    mode: &Mode,
    writers: usize,
    batch: usize,
    duration: Duration,
) -> Result<Phase> {
    reset_log(pool).await?;
    phase_on_current_log(mode, writers, batch, duration).await
}

async fn phase_on_current_log(
    mode: &Mode,
    writers: usize,
    batch: usize,
    duration: Duration,
) -> Result<Phase> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let mode = mode.clone();
            tokio::spawn(writer(mode, STREAMS / writers, batch, w as u64, deadline))
        })
        .collect();
    let mut total = Phase {
        txs: 0,
        events: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    for task in tasks {
        let (txs, latency) = task.await??;
        total.txs += txs;
        total.latency.add(&latency)?;
    }
    total.events = total.txs * batch as u64;
    total.elapsed = start.elapsed();
    Ok(total)
}

/// [`phase`] with 8 writers and `log_sealer` running beside them; fails
/// unless the sealer keeps up (everything sealed within seconds of the end).
async fn sealed_phase(pool: &PgPool, mode: &Mode, duration: Duration) -> Result<Phase> {
    let Mode::Ours(store) = mode else {
        anyhow::bail!("the sealer runs on our store");
    };
    reset_log(pool).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sealer = seal::subscription(store.clone());
    let sealing = tokio::spawn(async move { sealer.run(stopped).await });
    let result = phase_on_current_log(mode, 8, 1, duration).await;
    let appended = store.head().await?.1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seal::head(pool).await?.map_or(0, |h| h.seq) < appended {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sealer fell behind by more than 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    sealing.await??;
    result
}

async fn writer(
    mode: Mode,
    streams: usize,
    batch: usize,
    w: u64,
    deadline: Instant,
) -> Result<(u64, Histogram<u64>)> {
    let project = Some(Uuid::now_v7());
    let mut own: Vec<(Uuid, i64)> = (0..streams).map(|_| (Uuid::now_v7(), 0)).collect();
    let mut latency = histogram();
    let mut txs = 0u64;
    let mut n = w << 40;
    while Instant::now() < deadline {
        let slot = txs as usize % own.len();
        let (stream_id, version) = own[slot];
        let events: Vec<_> = (0..batch)
            .map(|_| {
                n += 1;
                new_event(n)
            })
            .collect();
        let started = Instant::now();
        let new_version = match &mode {
            Mode::Ours(store) => {
                let expected = if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                };
                let stream = StreamRef {
                    stream_type: "task",
                    stream_id,
                    project_id: project,
                };
                store.append(stream, expected, events).await?.stream_version
            }
            Mode::Raw(pool) => {
                raw_insert(pool, stream_id, project, version + 1, events).await?;
                version + batch as i64
            }
        };
        latency.saturating_record(started.elapsed().as_micros() as u64);
        own[slot].1 = new_version;
        txs += 1;
    }
    Ok((txs, latency))
}

async fn raw_insert(
    pool: &PgPool,
    stream_id: Uuid,
    project: Option<Uuid>,
    first_version: i64,
    events: Vec<eventstore::NewEvent>,
) -> Result<()> {
    let rows = RawRows::from_events(first_version, events);
    let mut tx = pool.begin().await?;
    if rows.versions.len() == 1 {
        // The cheapest single-row form: plain VALUES.
        sqlx::query(
            "INSERT INTO bench_raw_events (stream_type, stream_id, project_id, version, event_id,
                                           event_type, schema_version, payload, metadata)
             VALUES ('task', $1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(stream_id)
        .bind(project)
        .bind(rows.versions[0])
        .bind(rows.event_ids[0])
        .bind(&rows.types[0])
        .bind(rows.schema_versions[0])
        .bind(&rows.payloads[0])
        .bind(&rows.metadata[0])
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO bench_raw_events (stream_type, stream_id, project_id, version, event_id,
                                           event_type, schema_version, payload, metadata)
             SELECT 'task', $1, $2, u.* FROM UNNEST($3::bigint[], $4::uuid[], $5::text[],
                                                    $6::int2[], $7::jsonb[], $8::jsonb[]) AS u",
        )
        .bind(stream_id)
        .bind(project)
        .bind(&rows.versions)
        .bind(&rows.event_ids)
        .bind(&rows.types)
        .bind(&rows.schema_versions)
        .bind(&rows.payloads)
        .bind(&rows.metadata)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
