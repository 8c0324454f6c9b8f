//! PostgreSQL round trips charged to the request being served.
//!
//! The counter is a task-local set around a request (the HTTP edge) and
//! incremented by whatever observes the round trips (the gateways' sqlx
//! tracing layer). Work done in a task of its own on behalf of several
//! requests (a project's grouped task creates) is outside every request's
//! scope; its owner charges it to one of them with [`charge`], so the
//! per-request figures still add up to the round trips made.

use std::cell::Cell;

tokio::task_local! {
    static REQUEST_ROUND_TRIPS: Cell<u64>;
}

/// Runs `future` with a fresh counter and returns its output with the
/// round trips charged to it.
pub async fn counting<F: Future>(future: F) -> (F::Output, u64) {
    REQUEST_ROUND_TRIPS
        .scope(Cell::new(0), async {
            let output = future.await;
            (output, REQUEST_ROUND_TRIPS.with(Cell::get))
        })
        .await
}

/// Adds `n` round trips to the current request's count (none outside one).
pub fn charge(n: u64) {
    let _ = REQUEST_ROUND_TRIPS.try_with(|count| count.set(count.get() + n));
}
