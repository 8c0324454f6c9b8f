//! `subscribe`: commit-to-subscriber latency while 8 writers append at a
//! fixed total rate.
//!
//! Each writer notes the instant `append` returned (the commit as the
//! client sees it) per event id; the subscription handler notes the instant
//! it was handed each event. Latency = handed - committed, clamped at 0
//! (with the in-process wake-up a handler can see an event a hair before
//! the writer's `append` has returned).
//!
//! Baseline, running at the same time on the same log: the naive reader
//! `SELECT … WHERE global_position > $last ORDER BY global_position` polled
//! every 2 ms. It is the fastest a polling reader can be (no horizon, no
//! checkpoint transaction), and it is *wrong*: it skips events whose
//! transaction commits after a later position was read. Its lost-event
//! count is printed to show why the store does not read that way.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eventstore::subscription::HandlerError;
use eventstore::{EventStore, ExpectedVersion, RecordedEvent, StreamRef, Subscription};
use eventstore::{SubscriptionHandler, subscription::SubscriptionError};
use hdrhistogram::Histogram;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Settings;
use crate::db::{ScratchDb, new_event, reset_log};
use crate::report::{Report, Target, histogram, ms};

const WRITERS: usize = 8;
const STREAMS_PER_WRITER: usize = 1_000;
/// How long to wait, after the writers stop, for the readers to catch up.
const CATCH_UP: Duration = Duration::from_secs(10);

type Seen = Vec<(Uuid, Instant)>;

/// Notes when each event reached the handler. A real projector would write
/// to its read model here; the checkpoint update in the same transaction is
/// done by the subscription either way.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Seen>,
}

#[async_trait::async_trait]
impl SubscriptionHandler for Recorder {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("recorder lock");
        seen.extend(events.iter().map(|e| (e.event_id, now)));
        Ok(())
    }
}

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    // Writers + subscription (lock session, listener, batch reads and
    // transaction) + naive reader (the store's notifier has its own
    // connection outside the pool).
    let pool = db.pool(WRITERS as u32 + 8).await?;
    let writer_store = EventStore::builder(pool.clone()).build();
    // A second store instance has its own in-process commit signal, which
    // the writers never fire: its subscriber only hears LISTEN/NOTIFY, like
    // one in another process.
    let reader_store = if settings.via_notify {
        EventStore::builder(pool.clone()).build()
    } else {
        writer_store.clone()
    };
    let mut report = Report::new(format!(
        "subscribe ({} appends/s over {WRITERS} writers, {} s, wake-up: {})",
        settings.rate,
        settings.phase.as_secs(),
        if settings.via_notify {
            "LISTEN/NOTIFY"
        } else {
            "in-process commit signal"
        }
    ));

    for run in 1..=settings.runs {
        println!("subscribe: run {run}/{}", settings.runs);
        reset_log(&pool).await?;
        let sub = Arc::new(
            Subscription::new(
                format!("bench-subscribe-{run}"),
                reader_store.clone(),
                Recorder::default(),
            )
            .batch_size(1_000)
            .poll_interval(Duration::from_millis(100)),
        );
        let (stop, stopped) = watch::channel(false);
        let runner = tokio::spawn({
            let sub = sub.clone();
            let stopped = stopped.clone();
            async move { sub.run(stopped).await }
        });
        let naive = tokio::spawn(naive_reader(pool.clone(), stopped));
        // Let the runner take its lock and LISTEN before the first append.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let start = Instant::now();
        let deadline = start + settings.phase;
        let per_writer = settings.rate as f64 / WRITERS as f64;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(paced_writer(
                    writer_store.clone(),
                    per_writer,
                    start,
                    deadline,
                    w as u64,
                ))
            })
            .collect();
        let mut commits: HashMap<Uuid, Instant> = HashMap::new();
        for w in writers {
            commits.extend(w.await??);
        }
        let achieved = commits.len() as f64 / start.elapsed().as_secs_f64();

        let caught_up = Instant::now() + CATCH_UP;
        while sub.handler().seen.lock().expect("recorder lock").len() < commits.len()
            && Instant::now() < caught_up
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The naive reader has had the same time; a little more cannot
        // bring back what it skipped.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true)?;
        match runner.await? {
            Ok(()) => {}
            Err(SubscriptionError::Busy(name)) => anyhow::bail!("subscription {name} busy"),
            Err(error) => return Err(error).context("subscription run"),
        }
        let naive_seen = naive.await??;
        let ours_seen = std::mem::take(&mut *sub.handler().seen.lock().expect("recorder lock"));

        let (ours, ours_lost) = latencies(&commits, &ours_seen);
        let (base, base_lost) = latencies(&commits, &naive_seen);
        report.add(
            "commit->handler p50",
            "ms",
            ms(&ours, 0.50),
            ms(&base, 0.50),
            Some(Target::AtMost(3.0)),
        );
        report.add(
            "commit->handler p99",
            "ms",
            ms(&ours, 0.99),
            ms(&base, 0.99),
            Some(Target::AtMost(10.0)),
        );
        report.add(
            "commit->handler p99.9",
            "ms",
            ms(&ours, 0.999),
            ms(&base, 0.999),
            None,
        );
        report.add(
            "events never delivered",
            "count",
            ours_lost as f64,
            base_lost as f64,
            Some(Target::AtMost(0.0)),
        );
        report.note(format!(
            "run {run}: {} events committed at {:.0}/s{}; subscription missed {ours_lost}, \
             naive cursor missed {base_lost} ({:.3}%)",
            commits.len(),
            achieved,
            if achieved < 0.9 * settings.rate as f64 {
                " (writers saturated below --rate: latency measured at overload)"
            } else {
                ""
            },
            100.0 * base_lost as f64 / commits.len().max(1) as f64
        ));
    }
    report.note("ours: eventstore Subscription (gap-safe xid8 horizon, checkpoint tx per batch)");
    report.note("baseline: naive `global_position > $last` poll every 2 ms, concurrently");
    pool.close().await;
    Ok(report)
}

/// Latency histogram over the events both sides know, and how many
/// committed events the reader never saw.
fn latencies(commits: &HashMap<Uuid, Instant>, seen: &Seen) -> (Histogram<u64>, usize) {
    let mut histogram = histogram();
    let mut delivered = HashSet::with_capacity(seen.len());
    for (id, at) in seen {
        if let Some(committed) = commits.get(id) {
            let micros = at.saturating_duration_since(*committed).as_micros() as u64;
            histogram.saturating_record(micros.max(1));
            delivered.insert(*id);
        }
    }
    (histogram, commits.len() - delivered.len())
}

/// Appends single events at `rate` per second (open loop: a writer that
/// fell behind catches up at once instead of lowering the rate) and returns
/// when each append returned.
async fn paced_writer(
    store: EventStore,
    rate: f64,
    start: Instant,
    deadline: Instant,
    w: u64,
) -> Result<Seen> {
    let mut streams: Vec<(Uuid, i64)> = (0..STREAMS_PER_WRITER)
        .map(|_| (Uuid::now_v7(), 0))
        .collect();
    let mut committed = Vec::with_capacity((rate * 70.0) as usize);
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate) as u64;
        if sent >= due {
            let next = start + Duration::from_secs_f64((sent + 1) as f64 / rate);
            tokio::time::sleep_until(next.min(deadline).into()).await;
            continue;
        }
        let slot = sent as usize % streams.len();
        let (stream_id, version) = streams[slot];
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        let event = new_event((w << 40) + sent);
        let id = event.event_id;
        let stream = StreamRef {
            stream_type: "task",
            stream_id,
            project_id: None,
        };
        let result = store.append(stream, expected, vec![event]).await?;
        committed.push((id, Instant::now()));
        streams[slot].1 = result.stream_version;
        sent += 1;
    }
    Ok(committed)
}

/// The reader the store must never be: a position cursor with no horizon.
async fn naive_reader(pool: PgPool, mut stop: watch::Receiver<bool>) -> Result<Seen> {
    let mut conn = pool.acquire().await?;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = 0i64;
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let rows: Vec<(i64, Uuid)> = sqlx::query_as(
            "SELECT global_position, event_id FROM events
             WHERE global_position > $1 ORDER BY global_position LIMIT 10000",
        )
        .bind(last)
        .fetch_all(&mut *conn)
        .await?;
        let now = Instant::now();
        for (position, id) in rows {
            last = position;
            seen.push((id, now));
        }
    }
    Ok(seen)
}
