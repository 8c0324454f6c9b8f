//! Saturation throughput for `bench http`: closed-loop clients (each sends
//! its next request as soon as the last one answered) against the server,
//! and the same number of connections committing raw transactions on the
//! same database in the same run, the ceiling a write endpoint is compared
//! with.
//!
//! The raw transaction is what one task write minimally is: `BEGIN`, an
//! `UPDATE` of one row of a 10,000-row table, an `INSERT` of an event-sized
//! row (a small JSON payload and metadata), `COMMIT`, each statement its
//! own round trip as `pgbench` sends them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use awc::Client;
use hdrhistogram::Histogram;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

use crate::http::{Request, send};
use crate::report::histogram;

/// Concurrent clients and raw connections.
pub const CLIENTS: usize = 8;
const RAW_ROWS: i64 = 10_000;

pub struct Saturation {
    /// Successful requests per second.
    pub throughput: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per-request latency at saturation, µs.
    pub latency: Histogram<u64>,
}

/// `CLIENTS` closed-loop clients for `duration`, each sending `make(n)`
/// (n counts requests across clients) and waiting for the answer (the
/// status each kind of request expects is a success).
pub async fn closed_loop(
    client: &Client,
    auth: &str,
    duration: Duration,
    make: impl Fn(u64) -> Request + 'static,
) -> Saturation {
    let make = Rc::new(make);
    let counter = Rc::new(std::cell::Cell::new(0u64));
    let state = Rc::new(RefCell::new((0u64, 0u64, None::<String>, histogram())));
    let until = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (client, auth, make, counter, state) = (
            client.clone(),
            auth.to_owned(),
            make.clone(),
            counter.clone(),
            state.clone(),
        );
        workers.push(tokio::task::spawn_local(async move {
            while Instant::now() < until {
                let n = counter.get();
                counter.set(n + 1);
                let call = make(n);
                let sent = Instant::now();
                let outcome = send(&client, &auth, call).await;
                let took = sent.elapsed().as_micros().max(1) as u64;
                let mut s = state.borrow_mut();
                match outcome {
                    Ok(()) => {
                        s.0 += 1;
                        s.3.saturating_record(took);
                    }
                    Err(e) => {
                        s.1 += 1;
                        s.2.get_or_insert(e);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, errors, first_error, latency) = match Rc::try_unwrap(state) {
        Ok(state) => state.into_inner(),
        Err(_) => unreachable!("every worker has finished"),
    };
    Saturation {
        throughput: ok as f64 / elapsed,
        errors,
        first_error,
        latency,
    }
}

/// Raw commits per second from `CLIENTS` connections on `database_url`
/// for `duration` (tables created and dropped here).
pub async fn raw_commits(database_url: &str, duration: Duration) -> Result<f64> {
    let pool = PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect(database_url)
        .await
        .context("connect for the raw baseline")?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_raw_rows, bench_raw_events;
         CREATE TABLE bench_raw_rows (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, title TEXT NOT NULL);
         CREATE TABLE bench_raw_events (
             position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             stream_id BIGINT NOT NULL, version BIGINT NOT NULL, event_type TEXT NOT NULL,
             payload JSONB NOT NULL, metadata JSONB NOT NULL,
             recorded_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO bench_raw_rows SELECT i, 0, 'task ' || i FROM generate_series(1, $1) i",
    )
    .bind(RAW_ROWS)
    .execute(&pool)
    .await?;
    let until = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let pool = pool.clone();
        workers.push(tokio::task::spawn_local(async move {
            let mut commits = 0u64;
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64) << 32;
            while Instant::now() < until {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let id = (seed % RAW_ROWS as u64) as i64 + 1;
                let payload = json!({"changes": [{"field": "title", "old": format!("t-{commits}"), "new": format!("t-{}", commits + 1)}]});
                let metadata = json!({"actor": {"kind": "user", "user_id": "019ae3c4-5b6a-7c8d-9e0f-123456789abc"},
                                      "source": "rest", "request_id": "0123456789abcdef", "occurred_at": "2026-12-03T12:00:00.000000Z"});
                let mut tx = pool.begin().await?;
                let version: i64 = sqlx::query_scalar(
                    "UPDATE bench_raw_rows SET n = n + 1, title = $2 WHERE id = $1 RETURNING n",
                )
                .bind(id)
                .bind(format!("t-{commits}"))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO bench_raw_events (stream_id, version, event_type, payload, metadata)
                     VALUES ($1, $2, 'task.updated', $3, $4)",
                )
                .bind(id)
                .bind(version)
                .bind(payload)
                .bind(metadata)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                commits += 1;
            }
            Ok::<u64, sqlx::Error>(commits)
        }));
    }
    let mut commits = 0;
    for w in workers {
        commits += w.await.context("raw worker")??;
    }
    let rate = commits as f64 / started.elapsed().as_secs_f64();
    sqlx::raw_sql("DROP TABLE bench_raw_rows, bench_raw_events")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(rate)
}
