//! Integration tests of the event store against PostgreSQL.
//!
//! Every test gets its own database from `#[sqlx::test]` (needs
//! `DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`) with
//! the workspace migrations applied. Tests build their own pool from the
//! connect options (see `common::pool`) and close it before returning so the
//! database can be dropped.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventstore::subscription::{HandlerError, SubscriptionError};
use eventstore::{
    AppendError, EventKey, EventStore, ExpectedVersion, GlobalPosition, InlineProjector,
    RecordedEvent, StreamRef, Subscription, SubscriptionHandler, Upcaster,
};
use serde_json::{Value, json};
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;
use uuid::Uuid;

use common::{event, eventually, read_all_until, status_of};

fn stream(stream_id: Uuid) -> StreamRef<'static> {
    StreamRef {
        stream_type: "task",
        stream_id,
        project_id: None,
    }
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

// ---------------------------------------------------------------------------
// 1. Concurrent writers, slow commits, rollbacks and a live subscriber.
// ---------------------------------------------------------------------------

/// Records every delivered event into `it_received` *inside the handler
/// transaction*, so a row exists exactly when its batch's checkpoint
/// committed. `seq` is the delivery order (one runner at a time, so the
/// counter order is the order batches were applied; a rolled-back batch
/// only leaves gaps). Every `fail_every`-th call fails after writing, to
/// prove a failed batch's writes roll back and the batch is redelivered.
struct TableRecorder {
    seq: AtomicI64,
    calls: AtomicU64,
    failed: AtomicU64,
    fail_every: AtomicU64,
}

#[async_trait::async_trait]
impl SubscriptionHandler for TableRecorder {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let seqs: Vec<i64> = events
            .iter()
            .map(|_| self.seq.fetch_add(1, Ordering::SeqCst))
            .collect();
        let tx_ids: Vec<i64> = events.iter().map(|e| e.tx_id).collect();
        let positions: Vec<i64> = events.iter().map(|e| e.global_position).collect();
        sqlx::query(
            "INSERT INTO it_received (seq, event_id, tx_id, global_position)
             SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::int8[], $4::int8[])",
        )
        .bind(&seqs)
        .bind(ids(events))
        .bind(&tx_ids)
        .bind(&positions)
        .execute(&mut *tx)
        .await?;
        let every = self.fail_every.load(Ordering::SeqCst);
        if every > 0 && call.is_multiple_of(every) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(format!("injected failure on call {call}").into());
        }
        Ok(())
    }
}

#[derive(Default)]
struct WriterLog {
    committed: Vec<Uuid>,
    rolled_back: Vec<Uuid>,
    slow: usize,
}

const WRITERS: u64 = 10;
const TXS_PER_WRITER: u64 = 250;
const OWN_STREAMS: usize = 16;

/// One writer: a seeded mix of fast appends (70%), slow transactions that
/// sleep after appending and before committing (15%), and transactions
/// that append and then roll back (15%). 20% of appends go to a few hot
/// streams shared by every writer (`Any`, so they contend on the streams
/// row lock); the rest to the writer's own streams with an exact version.
async fn writer(store: EventStore, w: u64, hot: Arc<Vec<Uuid>>) -> WriterLog {
    let mut rng = common::Rng::new(w + 1);
    let mut own: Vec<(Uuid, i64)> = (0..OWN_STREAMS).map(|_| (Uuid::now_v7(), 0)).collect();
    let mut log = WriterLog::default();
    for i in 0..TXS_PER_WRITER {
        let n = 1 + rng.below(4) as usize;
        let events: Vec<_> = (0..n)
            .map(|k| event("it.happened", json!({ "w": w, "i": i, "k": k })))
            .collect();
        let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();

        let own_index = rng.below(OWN_STREAMS as u64) as usize;
        let (target, expected) = if rng.below(100) < 20 {
            let h = hot[rng.below(hot.len() as u64) as usize];
            (h, ExpectedVersion::Any)
        } else {
            let (id, version) = own[own_index];
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            (id, expected)
        };
        let roll = rng.below(100);
        let sleep_secs = (1 + rng.below(20)) as f64 / 1000.0;

        if roll < 70 {
            store
                .append(stream(target), expected, events)
                .await
                .unwrap();
        } else {
            let mut tx = store.begin().await.unwrap();
            tx.append(stream(target), expected, events).await.unwrap();
            // The events hold their identity values and xid while this
            // transaction sleeps; faster writers commit later positions
            // meanwhile, which is exactly what a naive cursor would skip.
            sqlx::query("SELECT pg_sleep($1)")
                .bind(sleep_secs)
                .execute(tx.conn())
                .await
                .unwrap();
            if roll < 85 {
                tx.commit().await.unwrap();
                log.slow += 1;
            } else {
                drop(tx); // rolls back
                log.rolled_back.extend(event_ids);
                continue;
            }
        }
        log.committed.extend(event_ids);
        if expected != ExpectedVersion::Any {
            own[own_index].1 += n as i64;
        }
    }
    log
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_slow_and_rolled_back_writers_lose_nothing(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 24).await;
    sqlx::query(
        "CREATE TABLE it_received (seq BIGINT PRIMARY KEY, event_id UUID NOT NULL,
                                   tx_id BIGINT NOT NULL, global_position BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let store = EventStore::builder(pool.clone()).build();

    let sub = Arc::new(
        Subscription::new(
            "it-all",
            store.clone(),
            TableRecorder {
                seq: AtomicI64::new(0),
                calls: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                fail_every: AtomicU64::new(17),
            },
        )
        .batch_size(50)
        .poll_interval(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(20)),
    );
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn({
        let sub = sub.clone();
        async move { sub.run(stopped).await }
    });

    let hot: Arc<Vec<Uuid>> = Arc::new((0..4).map(|_| Uuid::now_v7()).collect());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(store.clone(), w, hot.clone())))
        .collect();
    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    let mut slow = 0;
    for handle in writers {
        let log = handle.await.expect("writer panicked");
        committed.extend(log.committed);
        rolled_back.extend(log.rolled_back);
        slow += log.slow;
    }
    assert!(
        slow > 0 && !rolled_back.is_empty(),
        "the mix must exercise both"
    );

    // The runner must have been delivering while the writers ran, not only
    // in the final drain.
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM it_received")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(live > 0, "the running subscriber delivered nothing");

    stop.send(true).unwrap();
    runner.await.unwrap().expect("subscription run failed");
    assert!(
        sub.handler().failed.load(Ordering::SeqCst) > 0,
        "no handler failure was injected; the retry path went untested"
    );
    sub.handler().fail_every.store(0, Ordering::SeqCst);
    eventually(
        "every committed event delivered",
        Duration::from_secs(15),
        || async {
            // Straight after `run()` returned: it released its lock, so
            // this is never `Busy`.
            sub.drain().await.expect("drain after run() returned");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM it_received")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n as usize >= committed.len()).then_some(())
        },
    )
    .await;

    let received: Vec<(Uuid, i64, i64)> =
        sqlx::query_as("SELECT event_id, tx_id, global_position FROM it_received ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let received_ids: HashSet<Uuid> = received.iter().map(|r| r.0).collect();
    assert_eq!(
        received_ids.len(),
        received.len(),
        "an event was delivered twice"
    );
    let committed_ids: HashSet<Uuid> = committed.iter().copied().collect();
    assert_eq!(
        received_ids, committed_ids,
        "delivered set != committed set"
    );

    let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored, committed_ids, "stored set != committed set");
    assert!(
        rolled_back.iter().all(|id| !stored.contains(id)),
        "a rolled-back event is stored"
    );

    for pair in received.windows(2) {
        assert!(
            (pair[0].1, pair[0].2) < (pair[1].1, pair[1].2),
            "delivery out of (tx_id, global_position) order: {pair:?}"
        );
    }
    let matching: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM it_received r JOIN events e USING (event_id)
         WHERE e.tx_id::text::bigint = r.tx_id AND e.global_position = r.global_position",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        matching as usize,
        received.len(),
        "delivered positions differ"
    );

    // Rolled-back appends must not leave a version bump behind: every
    // stream's version is its number of events, numbered 1..=version.
    let bad_streams: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM streams s
         WHERE s.version <> (SELECT count(*) FROM events e WHERE e.stream_id = s.stream_id)
            OR s.version <> (SELECT max(version) FROM events e WHERE e.stream_id = s.stream_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(bad_streams, 0);

    let status = status_of(&store, "it-all").await.unwrap();
    let last = received.last().unwrap();
    assert_eq!(
        status.checkpoint,
        GlobalPosition {
            tx_id: last.1,
            position: last.2
        }
    );
    assert_eq!(status.failures, 0);
    assert!(status.last_error.is_none());

    // Diagnostics: how often delivery order differs from position order,
    // i.e. how many places a `global_position > last` cursor could have
    // gone wrong in this run.
    let inversions = received.windows(2).filter(|p| p[1].2 < p[0].2).count();
    eprintln!(
        "{} committed ({} slow txs), {} rolled back, {} position inversions, {} handler calls",
        committed.len(),
        slow,
        rolled_back.len(),
        inversions,
        sub.handler().calls.load(Ordering::SeqCst)
    );
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 1b. The horizon: a later commit stays invisible behind an open transaction.
// ---------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn open_transaction_holds_back_later_commits(_: PgPoolOptions, connect: PgConnectOptions) {
    let pool = common::pool(connect, 8).await;
    let store = EventStore::builder(pool.clone()).build();

    // `slow` takes the lower xid and position 1, then stays open; `fast`
    // commits position 2 first. A position cursor would read 2 and never
    // come back for 1.
    let mut slow = store.begin().await.unwrap();
    let a = event("it.slow", json!({}));
    let a_id = a.event_id;
    slow.append(stream(Uuid::now_v7()), ExpectedVersion::NoStream, vec![a])
        .await
        .unwrap();
    let fast = store
        .append(
            stream(Uuid::now_v7()),
            ExpectedVersion::NoStream,
            vec![event("it.fast", json!({}))],
        )
        .await
        .unwrap();
    let b_id = fast.events[0].event_id;
    assert!(fast.events[0].global_position > 1);

    let early = store
        .read_all(GlobalPosition::default(), 100)
        .await
        .unwrap();
    assert!(
        early.is_empty(),
        "read_all returned events past an in-flight transaction: {early:?}"
    );

    slow.commit().await.unwrap();
    let all = read_all_until(&store, 2).await;
    assert_eq!(ids(&all), vec![a_id, b_id]);
    assert!(all[0].tx_id < all[1].tx_id);
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 2. Optimistic concurrency.
// ---------------------------------------------------------------------------

fn assert_conflict(
    result: Result<eventstore::AppendResult, AppendError>,
    stream_id: Uuid,
    expected: ExpectedVersion,
    actual: Option<i64>,
) {
    match result {
        Err(AppendError::VersionConflict {
            stream_id: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!((s, e, a), (stream_id, expected, actual));
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn optimistic_concurrency_conflicts_append_nothing(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 12).await;
    let store = EventStore::builder(pool.clone()).build();
    let id = Uuid::now_v7();
    let first = store
        .append(
            stream(id),
            ExpectedVersion::NoStream,
            vec![event("it.e", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(first.stream_version, 1);
    assert_eq!(first.events[0].version, 1);
    let mut kept = vec![first.events[0].event_id];
    let mut rejected = Vec::new();

    // Two writers at the same expected version, genuinely overlapping: `a`
    // has updated the streams row and holds its lock; `b` blocks on it and
    // must re-check the version once `a` commits.
    let mut a = store.begin().await.unwrap();
    let a_event = event("it.a", json!({}));
    kept.push(a_event.event_id);
    a.append(stream(id), ExpectedVersion::Exact(1), vec![a_event])
        .await
        .unwrap();
    let b_event = event("it.b", json!({}));
    rejected.push(b_event.event_id);
    let b = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(stream(id), ExpectedVersion::Exact(1), vec![b_event])
                .await
        }
    });
    eventually(
        "b to wait on the row lock",
        Duration::from_secs(10),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
    a.commit().await.unwrap();
    assert_conflict(b.await.unwrap(), id, ExpectedVersion::Exact(1), Some(2));

    // NoStream on an existing stream; a stale and a future exact version;
    // an exact version on a stream that does not exist.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(5),
    ] {
        let e = event("it.late", json!({}));
        rejected.push(e.event_id);
        assert_conflict(
            store.append(stream(id), expected, vec![e]).await,
            id,
            expected,
            Some(2),
        );
    }
    let missing = Uuid::now_v7();
    let e = event("it.late", json!({}));
    rejected.push(e.event_id);
    assert_conflict(
        store
            .append(stream(missing), ExpectedVersion::Exact(3), vec![e])
            .await,
        missing,
        ExpectedVersion::Exact(3),
        None,
    );

    // A race of several appends at the same version: exactly one wins.
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            let e = event("it.race", json!({ "i": i }));
            let event_id = e.event_id;
            let handle = tokio::spawn(async move {
                store
                    .append(stream(id), ExpectedVersion::Exact(2), vec![e])
                    .await
            });
            (event_id, handle)
        })
        .collect();
    let mut winners = 0;
    for (event_id, handle) in racers {
        match handle.await.unwrap() {
            Ok(result) => {
                winners += 1;
                assert_eq!(result.stream_version, 3);
                kept.push(event_id);
            }
            Err(AppendError::VersionConflict { actual, .. }) => {
                assert_eq!(actual, Some(3));
                rejected.push(event_id);
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(winners, 1);

    let events = store.read_stream(id, 0).await.unwrap();
    assert_eq!(ids(&events), kept);
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let stored_rejected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
            .bind(&rejected)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored_rejected, 0);
    let streams: i64 = sqlx::query_scalar("SELECT count(*) FROM streams")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(streams, 1, "a conflicting append created a stream");
    // The version check runs before the events insert, so a conflict does
    // not even consume an identity value: positions have no holes.
    let (min, max, n): (i64, i64, i64) =
        sqlx::query_as("SELECT min(global_position), max(global_position), count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((min, max, n), (1, 3, 3));
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 3. Idempotent re-appends.
// ---------------------------------------------------------------------------

fn assert_duplicate(result: Result<eventstore::AppendResult, AppendError>, id: Uuid) {
    match result {
        Err(AppendError::DuplicateEventIds(ids)) => assert!(ids.contains(&id), "{ids:?}"),
        other => panic!("expected DuplicateEventIds, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn re_appending_the_same_event_ids_is_idempotent(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 4).await;
    let store = EventStore::builder(pool.clone()).build();
    let id = Uuid::now_v7();
    let batch = vec![event("it.one", json!(1)), event("it.two", json!(2))];
    let (e1, e2) = (batch[0].event_id, batch[1].event_id);

    let first = store
        .append(stream(id), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert!(!first.idempotent);
    assert_eq!(first.stream_version, 2);

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
    ] {
        let again = store
            .append(stream(id), expected, batch.clone())
            .await
            .unwrap();
        assert!(again.idempotent, "{expected:?}");
        assert_eq!(again.stream_version, 2);
        assert!(again.events.is_empty());
    }

    let third = event("it.three", json!(3));
    let e3 = third.event_id;
    let appended = store
        .append(stream(id), ExpectedVersion::Exact(2), vec![third.clone()])
        .await
        .unwrap();
    assert_eq!(appended.stream_version, 3);
    for expected in [ExpectedVersion::Exact(2), ExpectedVersion::Any] {
        let again = store
            .append(stream(id), expected, vec![third.clone()])
            .await
            .unwrap();
        assert!(again.idempotent, "{expected:?}");
        assert_eq!(again.stream_version, 3);
    }

    // The same id in a different stream is not a retry.
    let other = Uuid::now_v7();
    let reused = batch[0].clone();
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        assert_duplicate(
            store
                .append(stream(other), expected, vec![reused.clone()])
                .await,
            e1,
        );
    }
    // Nor is a batch that mixes stored and new ids.
    let fresh = event("it.fresh", json!(4));
    assert_duplicate(
        store
            .append(
                stream(id),
                ExpectedVersion::Any,
                vec![batch[1].clone(), fresh.clone()],
            )
            .await,
        e2,
    );
    assert_duplicate(
        store
            .append(
                stream(id),
                ExpectedVersion::Exact(3),
                vec![fresh.clone(), batch[0].clone()],
            )
            .await,
        e1,
    );

    let (n, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((n, distinct), (3, 3));
    assert_eq!(
        ids(&store.read_stream(id, 0).await.unwrap()),
        vec![e1, e2, e3]
    );
    let streams: Vec<(Uuid, i64)> = sqlx::query_as("SELECT stream_id, version FROM streams")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        streams,
        vec![(id, 3)],
        "a rejected append left a stream row"
    );
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 4. Upcasting on read.
// ---------------------------------------------------------------------------

/// `task.created` v1 had `title`; v2 calls it `name` and adds `priority`.
struct TitleToName;

impl Upcaster for TitleToName {
    fn event_type(&self) -> &str {
        "task.created"
    }
    fn from_version(&self) -> i16 {
        1
    }
    fn upcast(&self, payload: Value) -> Value {
        json!({ "name": payload["title"], "priority": "normal" })
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn old_payloads_are_upcast_on_read_and_never_rewritten(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 4).await;
    let id = Uuid::now_v7();
    let old_id = Uuid::now_v7();
    // Written "by an older release": straight into the tables.
    sqlx::query("INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, 'task', 1)")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type,
                             schema_version, payload, metadata)
         VALUES ('task', $1, 1, $2, 'task.created', 1, '{\"title\": \"Old\"}', '{}')",
    )
    .bind(id)
    .bind(old_id)
    .execute(&pool)
    .await
    .unwrap();

    let store = EventStore::builder(pool.clone())
        .upcaster(Arc::new(TitleToName))
        .build();
    let mut current = event("task.created", json!({ "name": "New", "priority": "high" }));
    current.schema_version = 2;
    // Same schema version as the old row, different type: not upcast.
    let renamed = event("task.renamed", json!({ "title": "Kept" }));
    store
        .append(
            stream(id),
            ExpectedVersion::Exact(1),
            vec![current.clone(), renamed],
        )
        .await
        .unwrap();

    let check = |events: &[RecordedEvent]| {
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_id, old_id);
        assert_eq!(events[0].schema_version, 2);
        assert_eq!(
            events[0].payload,
            json!({ "name": "Old", "priority": "normal" })
        );
        assert_eq!(events[1].schema_version, 2);
        assert_eq!(events[1].payload, current.payload);
        assert_eq!(events[2].schema_version, 1);
        assert_eq!(events[2].payload, json!({ "title": "Kept" }));
    };
    check(&store.read_stream(id, 0).await.unwrap());
    check(&read_all_until(&store, 3).await);
    let one = store
        .read_event(EventKey::Id(old_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.schema_version, 2);
    assert_eq!(one.payload["name"], "Old");

    let (version, payload): (i16, Value) =
        sqlx::query_as("SELECT schema_version, payload FROM events WHERE event_id = $1")
            .bind(old_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((version, payload), (1, json!({ "title": "Old" })));

    // Without the upcaster the raw v1 payload comes back: the change above
    // is the store's doing, not the fixture's.
    let plain = EventStore::builder(pool.clone()).build();
    let raw = plain.read_stream(id, 0).await.unwrap();
    assert_eq!(raw[0].schema_version, 1);
    assert_eq!(raw[0].payload, json!({ "title": "Old" }));
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 5. Inline projectors run inside the append transaction.
// ---------------------------------------------------------------------------

/// Writes one row per event, then fails if any event asks it to: `"rust"`
/// returns an error after its own writes, `"sql"` runs a failing statement
/// (which also aborts the transaction).
struct TableProjector;

#[async_trait::async_trait]
impl InlineProjector for TableProjector {
    fn name(&self) -> &str {
        "it-table"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
        let positions: Vec<i64> = events.iter().map(|e| e.global_position).collect();
        sqlx::query(
            "INSERT INTO it_projection (event_id, stream_id, version, global_position)
             SELECT u.id, $2, u.v, u.p FROM UNNEST($1::uuid[], $3::int8[], $4::int8[]) AS u(id, v, p)",
        )
        .bind(ids(events))
        .bind(events[0].stream_id)
        .bind(&versions)
        .bind(&positions)
        .execute(&mut *conn)
        .await?;
        for e in events {
            match e.payload["fail"].as_str() {
                Some("rust") => return Err("projector refused the event".into()),
                Some("sql") => {
                    sqlx::query("SELECT 1 / 0").execute(&mut *conn).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

async fn count(pool: &sqlx::PgPool, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn inline_projector_commits_and_fails_with_the_append(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 6).await;
    sqlx::query(
        "CREATE TABLE it_projection (event_id UUID PRIMARY KEY, stream_id UUID NOT NULL,
                                     version BIGINT NOT NULL, global_position BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let store = EventStore::builder(pool.clone())
        .projector(Arc::new(TableProjector))
        .build();
    let events_in = "SELECT count(*) FROM events WHERE stream_id = $1";
    let rows_in = "SELECT count(*) FROM it_projection WHERE stream_id = $1";

    let id = Uuid::now_v7();
    let ok = store
        .append(
            stream(id),
            ExpectedVersion::NoStream,
            vec![event("it.a", json!({})), event("it.b", json!({}))],
        )
        .await
        .unwrap();
    let projected: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT event_id, version, global_position FROM it_projection ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let appended: Vec<(Uuid, i64, i64)> = ok
        .events
        .iter()
        .map(|e| (e.event_id, e.version, e.global_position))
        .collect();
    assert_eq!(
        projected, appended,
        "projector saw other events than stored"
    );

    // Inside an AppendTx the projection is written but not yet visible to
    // others; rolling back removes both.
    let mut tx = store.begin().await.unwrap();
    let pending = event("it.pending", json!({}));
    let pending_id = pending.event_id;
    tx.append(stream(id), ExpectedVersion::Exact(2), vec![pending])
        .await
        .unwrap();
    let inside: i64 = sqlx::query_scalar("SELECT count(*) FROM it_projection WHERE event_id = $1")
        .bind(pending_id)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(inside, 1);
    assert_eq!(count(&pool, rows_in, id).await, 2);
    drop(tx);
    assert_eq!(count(&pool, rows_in, id).await, 2);
    assert_eq!(count(&pool, events_in, id).await, 2);

    // A failing projector fails the append and leaves nothing behind.
    let result = store
        .append(
            stream(id),
            ExpectedVersion::Exact(2),
            vec![
                event("it.c", json!({})),
                event("it.d", json!({ "fail": "rust" })),
            ],
        )
        .await;
    match result {
        Err(AppendError::Projector { projector, .. }) => assert_eq!(projector, "it-table"),
        other => panic!("expected a projector error, got {other:?}"),
    }
    assert_eq!(count(&pool, events_in, id).await, 2);
    assert_eq!(count(&pool, rows_in, id).await, 2);
    assert_eq!(store.read_stream(id, 0).await.unwrap().len(), 2);
    let version: i64 = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(version, 2, "a failed append advanced the stream version");

    let fresh = Uuid::now_v7();
    let result = store
        .append(
            stream(fresh),
            ExpectedVersion::NoStream,
            vec![event("it.e", json!({ "fail": "sql" }))],
        )
        .await;
    assert!(
        matches!(result, Err(AppendError::Projector { .. })),
        "{result:?}"
    );
    assert_eq!(count(&pool, events_in, fresh).await, 0);
    assert_eq!(count(&pool, rows_in, fresh).await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM streams WHERE stream_id = $1",
            fresh
        )
        .await,
        0
    );

    // The stream is still writable at its real version.
    store
        .append(
            stream(id),
            ExpectedVersion::Exact(2),
            vec![event("it.f", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(count(&pool, rows_in, id).await, 3);
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 6. Subscription handler failures, single runner, standby takeover.
// ---------------------------------------------------------------------------

/// Fails its first `fail_first` calls, remembering which batch each failed
/// attempt carried; records what it applied afterwards.
struct Flaky {
    fail_first: u64,
    calls: AtomicU64,
    failed_batches: Mutex<Vec<Uuid>>,
    delivered: Mutex<Vec<Uuid>>,
}

impl Flaky {
    fn new(fail_first: u64) -> Self {
        Self {
            fail_first,
            calls: AtomicU64::new(0),
            failed_batches: Mutex::default(),
            delivered: Mutex::default(),
        }
    }

    fn delivered(&self) -> Vec<Uuid> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl SubscriptionHandler for Flaky {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.fail_first {
            self.failed_batches.lock().unwrap().push(events[0].event_id);
            return Err(format!("injected failure {call}").into());
        }
        self.delivered.lock().unwrap().extend(ids(events));
        Ok(())
    }
}

async fn append_round(store: &EventStore, streams: &[Uuid], per_stream: usize) -> Vec<Uuid> {
    let mut appended = Vec::new();
    for &s in streams {
        let batch: Vec<_> = (0..per_stream)
            .map(|i| event("it.n", json!({ "i": i })))
            .collect();
        appended.extend(batch.iter().map(|e| e.event_id));
        store
            .append(stream(s), ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    appended
}

#[sqlx::test(migrations = "../migrations")]
async fn failing_handler_is_retried_and_one_runner_holds_a_subscription(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 16).await;
    let store = EventStore::builder(pool.clone()).build();
    let streams: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut expected = append_round(&store, &streams, 5).await;

    let name = "it-flaky";
    let make = |fail_first| {
        Arc::new(
            Subscription::new(name, store.clone(), Flaky::new(fail_first))
                .batch_size(7)
                .poll_interval(Duration::from_millis(20))
                .max_backoff(Duration::from_millis(300)),
        )
    };
    let spawn_run = |sub: Arc<Subscription<Flaky>>| {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(async move { sub.run(stopped).await });
        (stop, handle)
    };

    let a = make(3);
    let (stop_a, run_a) = spawn_run(a.clone());

    let retrying = eventually("a retrying status", Duration::from_secs(10), || async {
        status_of(&store, name)
            .await
            .filter(|s| s.status == "retrying" && s.failures >= 1)
    })
    .await;
    assert!(
        retrying
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("injected failure")),
        "{retrying:?}"
    );
    assert_eq!(retrying.checkpoint, GlobalPosition::default());

    // While `a` holds the subscription, a drain under the same name is
    // refused and does not call its handler.
    let intruder = make(0);
    let error = intruder.drain().await.unwrap_err();
    assert!(error.is_busy(), "{error}");
    assert_eq!(intruder.handler().calls.load(Ordering::SeqCst), 0);

    eventually("all events delivered", Duration::from_secs(15), || async {
        (a.handler().delivered().len() >= expected.len()).then_some(())
    })
    .await;
    // Delivered in log order, each once, nothing skipped by the failures,
    // and every failed attempt was the same first batch (retried, not
    // skipped).
    assert_eq!(a.handler().delivered(), expected);
    // 3 failures plus at least ceil(20 / 7) batches (more if the horizon,
    // which other tests' transactions also hold back, split a batch).
    assert!(a.handler().calls.load(Ordering::SeqCst) >= 3 + 3);
    assert_eq!(
        *a.handler().failed_batches.lock().unwrap(),
        vec![expected[0]; 3]
    );
    let healthy = eventually("a healthy status", Duration::from_secs(10), || async {
        status_of(&store, name)
            .await
            .filter(|s| s.status == "running" && s.lag == 0)
    })
    .await;
    assert_eq!(healthy.failures, 0);
    assert!(healthy.last_error.is_none());

    // A second runner waits as a standby while `a` is alive...
    let b = make(0);
    let (stop_b, run_b) = spawn_run(b.clone());
    let round = append_round(&store, &streams[..1], 3).await;
    expected.extend(&round);
    eventually(
        "a to get the new round",
        Duration::from_secs(10),
        || async { (a.handler().delivered() == expected).then_some(()) },
    )
    .await;
    // b tries the lock after the round is committed and is refused (twice,
    // so at least one refusal came after the round was visible to it):
    // a standby that could deliver would have by then.
    let rounds = b.standby_rounds();
    eventually(
        "b to be refused as a standby",
        Duration::from_secs(10),
        || async { (b.standby_rounds() >= rounds + 2).then_some(()) },
    )
    .await;
    assert!(
        b.handler().delivered().is_empty(),
        "standby delivered events"
    );

    // ...and takes over from the checkpoint once `a` stops.
    stop_a.send(true).unwrap();
    run_a.await.unwrap().unwrap();
    let round = append_round(&store, &streams[1..2], 4).await;
    eventually("b to take over", Duration::from_secs(10), || async {
        (b.handler().delivered().len() >= round.len()).then_some(())
    })
    .await;
    assert_eq!(b.handler().delivered(), round, "b redelivered or skipped");
    assert_eq!(a.handler().delivered(), expected, "a ran after stopping");

    stop_b.send(true).unwrap();
    run_b.await.unwrap().unwrap();
    let status = status_of(&store, name).await.unwrap();
    assert_eq!(status.status, "stopped");

    // With no runner, drain works at once (the runner released its lock
    // when `run()` returned) and finds nothing new.
    assert_eq!(
        intruder
            .drain()
            .await
            .expect("drain right after run() returned"),
        0
    );
    pool.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn drain_errors_are_typed_and_every_exit_releases_the_lock(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 8).await;
    let store = EventStore::builder(pool.clone()).build();
    let streams: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    let expected = append_round(&store, &streams, 3).await;
    read_all_until(&store, expected.len()).await;
    let name = "it-drain";
    let sub = Arc::new(
        Subscription::new(name, store.clone(), Flaky::new(1))
            .batch_size(100)
            .poll_interval(Duration::from_millis(20)),
    );

    // A handler failure is its own variant, recorded in the checkpoint row.
    match sub.drain().await {
        Err(SubscriptionError::Handler(error)) => {
            assert!(error.to_string().contains("injected failure 1"), "{error}")
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    let status = status_of(&store, name).await.unwrap();
    assert_eq!(status.status, "retrying");
    assert_eq!(status.checkpoint, GlobalPosition::default());

    // The failed drain released its lock: the next drain is not `Busy`.
    let drained = sub.drain().await.expect("drain after a failed drain");
    assert_eq!(drained, expected.len());
    assert_eq!(sub.handler().delivered(), expected);

    // A runner holds the lock while it runs...
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn({
        let sub = sub.clone();
        async move { sub.run(stopped).await }
    });
    eventually(
        "the runner to hold the lock",
        Duration::from_secs(10),
        || async {
            match sub.drain().await {
                Err(error) if error.is_busy() => Some(()),
                Ok(_) => None,
                Err(error) => panic!("drain failed: {error}"),
            }
        },
    )
    .await;
    // ...and hands it over the moment `run()` returns.
    stop.send(true).unwrap();
    runner.await.unwrap().expect("subscription run failed");
    assert_eq!(sub.drain().await.expect("drain right after run()"), 0);
    let round = append_round(&store, &streams[..1], 2).await;
    eventually("the new round drained", Duration::from_secs(10), || async {
        sub.drain().await.expect("drain");
        (sub.handler().delivered().len() == expected.len() + round.len()).then_some(())
    })
    .await;
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 7. A read_all batch costs its batch, not the rest of the log.
// ---------------------------------------------------------------------------

/// Heap tuples this backend has read from `events` and not yet reported.
/// PostgreSQL 15 keeps earlier transactions' unreported counts in the
/// "xact" view too, so callers take a difference within one transaction
/// (nothing is reported while a transaction is open).
async fn tuples_read(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0)::bigint
         FROM pg_stat_xact_user_tables WHERE relname = 'events'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// Regression guard for `read_all_in` sorting the whole tail of the log on
/// every batch (an `ORDER BY tx_id` that bound to the output alias
/// `tx_id::text::bigint AS tx_id` instead of the column, or a generic plan
/// that chose bitmap scan + sort): a rebuild or catch-up then becomes
/// quadratic in the backlog. Without a clock: it counts the heap tuples the
/// query read, from `pg_stat_xact_user_tables` inside the reading
/// transaction.
#[sqlx::test(migrations = "../migrations")]
async fn read_all_batch_reads_only_its_batch(_: PgPoolOptions, connect: PgConnectOptions) {
    let pool = common::pool(connect, 4).await;
    let store = EventStore::builder(pool.clone()).build();
    sqlx::query(
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
         SELECT 'task', md5('s' || (i % 1000))::uuid, i / 1000 + 1, gen_random_uuid(),
                'it.bulk', jsonb_build_object('i', i), '{}'
         FROM generate_series(0, 19999) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
    let middle = read_all_until(&store, 10_000).await[9_999].clone();

    for after in [GlobalPosition::default(), GlobalPosition::of(&middle)] {
        let mut tx = pool.begin().await.unwrap();
        // Parallel workers report their reads elsewhere; keep it in-backend.
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await
            .unwrap();
        let before = tuples_read(&mut tx).await;
        let batch = store.read_all_in(&mut tx, after, 10, None).await.unwrap();
        assert_eq!(batch.len(), 10);
        let read = tuples_read(&mut tx).await - before;
        assert!(
            read < 1_000,
            "a 10-event read_all after {after:?} read {read} rows of the log"
        );
        tx.rollback().await.unwrap();
    }
    pool.close().await;
}

async fn append_user_event(store: &EventStore, user: Uuid) {
    let stream = StreamRef {
        stream_type: "user",
        stream_id: user,
        project_id: None,
    };
    let events = vec![event("it.user", json!({}))];
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
}

/// A reader of rare stream types (the directory, a typed subscription)
/// moves past the other types' events below the horizon, so its next read
/// walks only what is new, not everything since its last match; the read
/// is planned once per connection (the generic plan is kept); and a paused
/// subscription moves nowhere, the horizon included.
#[sqlx::test(migrations = "../migrations")]
async fn typed_reads_skip_other_types_once_and_keep_one_plan(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect, 4).await;
    let store = EventStore::builder(pool.clone()).build();
    let user = Uuid::now_v7();
    append_user_event(&store, user).await;
    // Then 5,000 events of another type, in 50 transactions.
    for round in 0..50 {
        sqlx::query(
            "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
             SELECT 'task', gen_random_uuid(), 1, gen_random_uuid(), 'it.bulk',
                    jsonb_build_object('round', $1::int), '{}'
             FROM generate_series(1, 100)",
        )
        .bind(round)
        .execute(&pool)
        .await
        .unwrap();
    }
    let all = read_all_until(&store, 5_001).await;
    let newest = GlobalPosition::of(all.last().unwrap());
    let users = vec!["user".to_owned()];

    let mut conn = pool.acquire().await.unwrap();
    let batch = store
        .read_types_in(&mut conn, GlobalPosition::default(), 100, &users)
        .await
        .unwrap();
    assert_eq!(ids(&batch.events), [all[0].event_id]);
    assert!(!batch.full());
    assert_eq!(batch.horizon, Some(newest));
    let next = batch.next_after(GlobalPosition::default());
    assert_eq!(
        next, newest,
        "the cursor moves past the other types' events"
    );

    // A full batch does not skip: matches may remain below the horizon.
    let batch = store
        .read_types_in(&mut conn, GlobalPosition::default(), 1, &users)
        .await
        .unwrap();
    assert!(batch.full());
    assert_eq!(
        batch.next_after(GlobalPosition::default()),
        GlobalPosition::of(&all[0])
    );

    // A read costs its matches, not the 5,000 other events behind them,
    // from the start of the log as from the horizon.
    for after in [GlobalPosition::default(), next] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await
            .unwrap();
        let before = tuples_read(&mut tx).await;
        let batch = store
            .read_types_in(&mut tx, after, 100, &users)
            .await
            .unwrap();
        assert_eq!(
            batch.events.len(),
            usize::from(after == GlobalPosition::default())
        );
        let read = tuples_read(&mut tx).await - before;
        assert!(
            read < 100,
            "a read after {after:?} read {read} rows of the log"
        );
        tx.rollback().await.unwrap();
    }
    // Planned once: after PostgreSQL's five custom plans it keeps the
    // generic one (a cursor visible to the planner would keep it
    // re-planning, and probing the index's end, on every read).
    for _ in 0..8 {
        store
            .read_types_in(&mut conn, next, 100, &users)
            .await
            .unwrap();
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE '%AS horizon%' ORDER BY generic_plans DESC LIMIT 1",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(
        generic >= 4,
        "generic plans {generic}, custom plans {custom}"
    );
    drop(conn);

    // A typed subscription checkpoints past the other types' events with
    // its batch, and a paused one moves nowhere.
    struct Count(AtomicU64);
    #[async_trait::async_trait]
    impl SubscriptionHandler for Count {
        async fn handle(
            &self,
            _tx: &mut PgConnection,
            events: &[RecordedEvent],
        ) -> Result<(), HandlerError> {
            self.0.fetch_add(events.len() as u64, Ordering::SeqCst);
            Ok(())
        }
    }
    let sub = Arc::new(
        Subscription::new("it-users", store.clone(), Count(AtomicU64::new(0)))
            .stream_types(users)
            .poll_interval(Duration::from_secs(30)),
    );
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn({
        let sub = Arc::clone(&sub);
        async move { sub.run(stopped).await }
    });
    eventually(
        "the user event delivered",
        Duration::from_secs(10),
        || async {
            let status = status_of(&store, "it-users").await?;
            (sub.handler().0.load(Ordering::SeqCst) == 1 && status.checkpoint == newest)
                .then_some(())
        },
    )
    .await;

    // Paused while events arrive: the runner reads on every wake-up, and
    // none of those reads may move it past the user event it must deliver
    // once resumed.
    store.pause_subscription("it-users", true).await.unwrap();
    append_user_event(&store, user).await;
    for _ in 0..5 {
        append_round(&store, &[Uuid::now_v7()], 10).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sub.handler().0.load(Ordering::SeqCst), 1);
    let newest = GlobalPosition::of(read_all_until(&store, 5_052).await.last().unwrap());
    store.pause_subscription("it-users", false).await.unwrap();
    eventually(
        "the second user event delivered",
        Duration::from_secs(10),
        || async {
            let status = status_of(&store, "it-users").await?;
            (sub.handler().0.load(Ordering::SeqCst) == 2 && status.checkpoint == newest)
                .then_some(())
        },
    )
    .await;
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    pool.close().await;
}

// ---------------------------------------------------------------------------
// 8. Other processes hear one coalesced NOTIFY per burst of commits; the
//    store's own sessions end with its pool.
// ---------------------------------------------------------------------------

#[sqlx::test(migrations = "../migrations")]
async fn commits_are_notified_coalesced_and_sessions_end_with_the_pool(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = common::pool(connect.clone(), 16).await;
    let store = EventStore::builder(pool.clone()).build();
    // What a subscriber in another process listens to.
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen(eventstore::NOTIFY_CHANNEL).await.unwrap();

    // One commit: one notification, promptly.
    let started = std::time::Instant::now();
    append_round(&store, &[Uuid::now_v7()], 1).await;
    tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("no NOTIFY after a commit")
        .unwrap();
    eprintln!("append -> NOTIFY received: {:?}", started.elapsed());

    // A burst of 200 commits from concurrent writers: at most one NOTIFY
    // per 2 ms window (plus one at each end), not one per commit.
    let started = std::time::Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = Uuid::now_v7();
                for i in 0..25 {
                    let expected = if i == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(i)
                    };
                    store
                        .append(
                            stream(id),
                            expected,
                            vec![event("it.burst", json!({ "i": i }))],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let burst = started.elapsed();
    let mut notifications = 0u32;
    while let Ok(received) = tokio::time::timeout(Duration::from_millis(200), listener.recv()).await
    {
        received.unwrap();
        notifications += 1;
    }
    let bound = (burst.as_millis() as u32 / 2 + 2).min(199);
    eprintln!("{notifications} notifications for 200 commits in {burst:?}");
    assert!(
        (1..=bound).contains(&notifications),
        "{notifications} notifications for 200 commits in {burst:?} (bound {bound})"
    );
    drop(listener);

    // A subscription that ran and stopped leaves no session behind either.
    let sub = Subscription::new("it-sessions", store.clone(), Flaky::new(0));
    let (stop, stopped) = watch::channel(false);
    stop.send(true).unwrap();
    sub.run(stopped).await.unwrap();
    sub.drain().await.unwrap();

    pool.close().await;
    // The notifier's connection and lock sessions are outside the pool;
    // they must end with it, or the test database could not be dropped.
    let mut observer = <PgConnection as sqlx::Connection>::connect_with(&connect)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut observer)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{others} sessions outlived the pool"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::Connection::close(observer).await.unwrap();
}
