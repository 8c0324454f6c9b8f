//! The tamper-evident chain (`eventstore::seal`) and operator control of
//! subscriptions (reset, pause), against PostgreSQL.

#[allow(dead_code)] // the helpers other test files use
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventstore::seal::{self, Sealer, Verdict};
use eventstore::subscription::HandlerError;
use eventstore::{
    EventStore, ExpectedVersion, GlobalPosition, RecordedEvent, StreamRef, Subscription,
    SubscriptionHandler,
};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use common::event;

async fn setup(connect: PgConnectOptions) -> (PgPool, EventStore) {
    let pool = common::pool(connect, 8).await;
    let store = EventStore::builder(pool.clone()).build();
    (pool, store)
}

async fn append(store: &EventStore, n: usize) -> Vec<Uuid> {
    let mut streams = Vec::new();
    for i in 0..n {
        let id = Uuid::now_v7();
        store
            .append(
                StreamRef {
                    stream_type: "task",
                    stream_id: id,
                    project_id: None,
                },
                ExpectedVersion::NoStream,
                vec![event(
                    "task.created",
                    json!({"title": format!("t{i}"), "n": i}),
                )],
            )
            .await
            .expect("append");
        streams.push(id);
    }
    // The horizon is cluster-wide: another test's open transaction can hold
    // these back from gap-safe readers for a moment.
    common::eventually(
        "appends below the horizon",
        std::time::Duration::from_secs(10),
        || async {
            let (_, visible) = store.head().await.unwrap();
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
                .fetch_one(store.pool())
                .await
                .unwrap();
            (visible == total).then_some(())
        },
    )
    .await;
    streams
}

async fn seal_all(store: &EventStore) -> usize {
    Subscription::new(seal::SEALER, store.clone(), Sealer)
        .headers_only()
        .batch_size(4)
        .drain()
        .await
        .expect("seal")
}

async fn position_of(pool: &PgPool, n: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY tx_id, global_position OFFSET $1 LIMIT 1",
    )
    .bind(n)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn broken_at(verdict: Verdict) -> (i64, String) {
    match verdict {
        Verdict::Broken { position, problem } => (position, problem),
        intact => panic!("expected a broken chain, got {intact:?}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_chain_names_the_changed_missing_or_moved_event(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect).await;
    append(&store, 10).await;
    assert_eq!(seal_all(&store).await, 10);
    // Sealing again seals nothing twice.
    assert_eq!(seal_all(&store).await, 0);
    let head = seal::head(&pool).await.unwrap().expect("a head");
    assert_eq!(head.seq, 10);
    let intact = seal::verify(&pool, Some((head.seq, head.hash)))
        .await
        .unwrap();
    assert_eq!(
        intact,
        Verdict::Intact {
            sealed: 10,
            unsealed: 0,
            head: Some(head.clone())
        }
    );

    // New events are unsealed until the sealer runs, and that is no fault.
    append(&store, 2).await;
    match seal::verify(&pool, None).await.unwrap() {
        Verdict::Intact {
            sealed, unsealed, ..
        } => assert_eq!((sealed, unsealed), (10, 2)),
        broken => panic!("{broken:?}"),
    }
    seal_all(&store).await;

    // An anchor from elsewhere must match.
    let (_, problem) = broken_at(
        seal::verify(&pool, Some((head.seq, [7; 32])))
            .await
            .unwrap(),
    );
    assert!(problem.contains("anchor mismatch"), "{problem}");

    // Each tampering is committed (verify reads through its own
    // connection), checked, and undone from a saved copy of the rows.
    async fn tamper(pool: &PgPool, positions: &[i64], sql: &str) {
        for sql in [
            "DROP TABLE IF EXISTS it_saved",
            "CREATE TABLE it_saved AS SELECT * FROM events WHERE false",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        sqlx::query("INSERT INTO it_saved SELECT * FROM events WHERE global_position = ANY($1)")
            .bind(positions)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(positions)
            .execute(pool)
            .await
            .unwrap();
    }
    async fn restore(pool: &PgPool) {
        sqlx::query(
            "DELETE FROM events WHERE global_position IN (SELECT global_position FROM it_saved)",
        )
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM it_saved")
            .execute(pool)
            .await
            .unwrap();
    }

    // One payload edited in place.
    let fourth = position_of(&pool, 3).await;
    tamper(
        &pool,
        &[fourth],
        "UPDATE events SET payload = jsonb_set(payload, '{title}', '\"forged\"')
         WHERE global_position = ANY($1)",
    )
    .await;
    let (position, problem) = broken_at(seal::verify(&pool, None).await.unwrap());
    assert_eq!(position, fourth, "{problem}");
    assert!(problem.contains("changed"), "{problem}");
    restore(&pool).await;

    // Even a change of the recorded time alone.
    tamper(
        &pool,
        &[fourth],
        "UPDATE events SET recorded_at = recorded_at + interval '1 microsecond'
         WHERE global_position = ANY($1)",
    )
    .await;
    let (position, _) = broken_at(seal::verify(&pool, None).await.unwrap());
    assert_eq!(position, fourth);
    restore(&pool).await;

    // A sealed event deleted: a gap naming it.
    let sixth = position_of(&pool, 5).await;
    tamper(
        &pool,
        &[sixth],
        "DELETE FROM events WHERE global_position = ANY($1)",
    )
    .await;
    let (position, problem) = broken_at(seal::verify(&pool, None).await.unwrap());
    assert_eq!(position, sixth, "{problem}");
    assert!(problem.starts_with("gap"), "{problem}");
    restore(&pool).await;

    // The newest event deleted (nothing after it to notice): still a gap.
    let last = position_of(&pool, 11).await;
    tamper(
        &pool,
        &[last],
        "DELETE FROM events WHERE global_position = ANY($1)",
    )
    .await;
    let (position, problem) = broken_at(seal::verify(&pool, None).await.unwrap());
    assert_eq!(position, last, "{problem}");
    assert!(problem.starts_with("gap"), "{problem}");
    restore(&pool).await;

    // Two events swapped in the order (their transaction ids exchanged).
    let (a, b) = (position_of(&pool, 1).await, position_of(&pool, 2).await);
    tamper(
        &pool,
        &[a, b],
        "UPDATE events e SET tx_id = o.tx_id FROM events o
         WHERE e.global_position = ANY($1) AND o.global_position = ANY($1)
           AND e.global_position <> o.global_position",
    )
    .await;
    let (position, problem) = broken_at(seal::verify(&pool, None).await.unwrap());
    assert_eq!(position, a, "{problem}");
    assert!(problem.starts_with("reordered"), "{problem}");
    restore(&pool).await;

    // After all the rolled-back tampering, the log verifies again.
    assert!(matches!(
        seal::verify(&pool, None).await.unwrap(),
        Verdict::Intact { sealed: 12, .. }
    ));
}

/// Counts deliveries per event id.
#[derive(Clone, Default)]
struct Counter(
    Arc<std::sync::Mutex<std::collections::HashMap<Uuid, usize>>>,
    Arc<AtomicUsize>,
);

#[async_trait::async_trait]
impl SubscriptionHandler for Counter {
    async fn handle(
        &self,
        _: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let mut seen = self.0.lock().unwrap();
        for e in events {
            *seen.entry(e.event_id).or_default() += 1;
        }
        self.1.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn reset_replays_from_a_position_and_pause_holds_delivery(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect).await;
    append(&store, 6).await;
    let counter = Counter::default();
    let sub = Subscription::new("it-replay", store.clone(), counter.clone()).batch_size(2);
    assert_eq!(sub.drain().await.unwrap(), 6);

    // Replay after the third event: the last three again.
    let third = position_of(&pool, 2).await;
    let key = store
        .order_key_of(third)
        .await
        .unwrap()
        .expect("the third event");
    assert!(store.reset_subscription("it-replay", key).await.unwrap());
    assert_eq!(sub.drain().await.unwrap(), 3);
    assert_eq!(counter.1.load(Ordering::SeqCst), 9);
    // From the start: everything once more.
    store
        .reset_subscription("it-replay", GlobalPosition::default())
        .await
        .unwrap();
    assert_eq!(sub.drain().await.unwrap(), 6);
    assert!(counter.0.lock().unwrap().values().all(|n| *n >= 2));
    assert!(!store.reset_subscription("nope", key).await.unwrap());
    assert_eq!(store.order_key_of(999_999).await.unwrap(), None);

    // Paused: nothing delivered, checkpoint kept; resumed: delivered.
    assert!(store.pause_subscription("it-replay", true).await.unwrap());
    append(&store, 2).await;
    assert_eq!(sub.drain().await.unwrap(), 0);
    let status = store
        .subscription_status()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "it-replay")
        .unwrap();
    assert!(status.paused);
    assert_eq!(status.lag, 2);
    store.pause_subscription("it-replay", false).await.unwrap();
    assert_eq!(sub.drain().await.unwrap(), 2);

    // A time before everything is the start of the log; the types after
    // it are what a dry run reports.
    let start = store
        .order_key_before(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(start, GlobalPosition::default());
    assert_eq!(
        store.types_after(start).await.unwrap(),
        vec![("task.created".to_owned(), 8)]
    );
}
