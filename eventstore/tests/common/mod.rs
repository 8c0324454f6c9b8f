//! Helpers shared by the event store integration tests.

use std::future::Future;
use std::time::{Duration, Instant};

use eventstore::{
    EventStore, GlobalPosition, Metadata, NewEvent, RecordedEvent, SubscriptionStatus,
};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A pool on the per-test database that is *not* a child of sqlx's master
/// test pool: the master pool caps every test at 5 connections, and a
/// subscription alone holds three (advisory-lock session, listener, batch).
pub async fn pool(connect: PgConnectOptions, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connect)
        .await
        .expect("connect to the test database")
}

pub fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent::new(event_type, payload, Metadata::system("test"))
}

/// Deterministic pseudo-random numbers (SplitMix64): the concurrency test
/// wants varied but reproducible schedules without a `rand` dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
///
/// The read horizon (`pg_snapshot_xmin`) is cluster-wide: a transaction
/// open in *another* test's database holds back what this test can read.
/// Every "eventually visible" assertion therefore polls instead of reading
/// once; a genuinely lost event still fails at the timeout.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `read_all` from the start until at least `n` events are visible.
pub async fn read_all_until(store: &EventStore, n: usize) -> Vec<RecordedEvent> {
    eventually(
        &format!("{n} events visible to read_all"),
        Duration::from_secs(10),
        || async {
            let events = store
                .read_all(GlobalPosition::default(), 10_000)
                .await
                .unwrap();
            (events.len() >= n).then_some(events)
        },
    )
    .await
}

pub async fn status_of(store: &EventStore, name: &str) -> Option<SubscriptionStatus> {
    store
        .subscription_status()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
}
