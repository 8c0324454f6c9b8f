//! `GET /metrics`: Prometheus text exposition (docs/operations.md, "Metrics").
//!
//! Recorded as they happen: HTTP requests (count, latency and database
//! round trips per route pattern), database round trips process-wide, and
//! appended events (a commit observer). Read at scrape time: subscription
//! lag (one indexed query), pool usage and the process's resident memory.
//!
//! Database round trips are counted from the tracing events sqlx emits for
//! every statement it executes (target `sqlx::query`) and for every pool
//! acquire (target `sqlx::pool::acquire`, enabled by the server's pool
//! options), by a tracing layer with its own filter, so the log filter
//! (`info,sqlx=warn`) does not silence it. The edge middleware scopes a
//! task-local counter around each request; the layer adds to it when the
//! event is emitted inside that request's task. See [`DbRoundTrips`] for
//! exactly what is counted.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use domain::ErrorCode;
use eventstore::{CommitObserver, RecordedEvent};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::Row;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::AppState;
use crate::error::ApiError;

pub const HTTP_REQUESTS: &str = "paca_http_requests_total";
pub const HTTP_DURATION: &str = "paca_http_request_duration_seconds";
pub const HTTP_DB_QUERIES: &str = "paca_http_db_queries";
pub const DB_QUERIES: &str = "paca_db_queries_total";
pub const EVENTS_APPENDED: &str = "paca_events_appended_total";
pub const APPEND_COMMITS: &str = "paca_append_commits_total";
pub const EVENTS_HEAD: &str = "paca_events_head_position";
pub const SUBSCRIPTION_LAG: &str = "paca_subscription_lag_events";
pub const SUBSCRIPTION_FAILURES: &str = "paca_subscription_failures";
pub const POOL_SIZE: &str = "paca_db_pool_size";
pub const POOL_IDLE: &str = "paca_db_pool_idle";
pub const POOL_MAX: &str = "paca_db_pool_max";
pub const RESIDENT_MEMORY: &str = "paca_process_resident_memory_bytes";

/// Where sqlx reports executed statements and pool acquires.
const QUERY_TARGET: &str = "sqlx::query";
const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const DB_QUERY_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 100.0,
];
/// Histogram samples wait in lock-free buckets until a scrape or an upkeep
/// folds them in; upkeep bounds that memory when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle) and starts its upkeep thread.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(HTTP_DB_QUERIES.into()), DB_QUERY_BUCKETS)
            })
            .expect("non-empty bucket lists");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "another metrics recorder is installed; GET /metrics will be empty");
        }
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by method, route pattern and status class"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its response head, by method, route pattern and status class"
    );
    describe_histogram!(
        HTTP_DB_QUERIES,
        Unit::Count,
        "PostgreSQL round trips made while handling one request (statements, BEGINs, pool acquires), by method and route pattern"
    );
    describe_counter!(
        DB_QUERIES,
        Unit::Count,
        "PostgreSQL round trips made by this process, requests and background work alike, by kind"
    );
    describe_counter!(
        EVENTS_APPENDED,
        Unit::Count,
        "Events this process appended to the log (committed), by stream type"
    );
    describe_counter!(
        APPEND_COMMITS,
        Unit::Count,
        "Append transactions this process committed"
    );
    describe_gauge!(
        EVENTS_HEAD,
        "Highest global_position in the log at scrape time"
    );
    describe_gauge!(
        SUBSCRIPTION_LAG,
        Unit::Count,
        "Log positions between the head and a subscription's checkpoint at scrape time"
    );
    describe_gauge!(
        SUBSCRIPTION_FAILURES,
        Unit::Count,
        "Consecutive failed batches of a subscription (0 when healthy)"
    );
    describe_gauge!(
        POOL_SIZE,
        Unit::Count,
        "Open connections in the PostgreSQL pool"
    );
    describe_gauge!(
        POOL_IDLE,
        Unit::Count,
        "Idle connections in the PostgreSQL pool"
    );
    describe_gauge!(
        POOL_MAX,
        Unit::Count,
        "The PostgreSQL pool's connection limit"
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident set size of this process"
    );
}

// ----------------------------------------------------------------------------
// Database round trips

/// Process-wide round trips by kind, exported at scrape time: a relaxed
/// atomic add per statement instead of a registry lookup.
static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static BEGINS: AtomicU64 = AtomicU64::new(0);
static ACQUIRES: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// HTTP requests answered and PostgreSQL statements run since start: a
/// cheap measure of how busy the process is (for `paca serve`'s memory
/// trimmer, which waits for a quiet spell).
pub fn activity() -> (u64, u64) {
    (
        REQUESTS.load(Ordering::Relaxed),
        STATEMENTS.load(Ordering::Relaxed),
    )
}

/// Runs `future` with a fresh per-request round-trip counter and returns
/// its output with the count.
pub async fn counting_round_trips<F: Future>(future: F) -> (F::Output, u64) {
    eventstore::round_trips::counting(future).await
}

/// Counts PostgreSQL round trips from sqlx's tracing events.
///
/// Counted, one each:
/// - every statement sqlx executes (`sqlx::query`, emitted at `TRACE` by
///   the server's connect options), `COMMIT` and `ROLLBACK` included;
/// - the `BEGIN` (or `SAVEPOINT`) behind every `COMMIT`, `ROLLBACK` and
///   `RELEASE SAVEPOINT`: sqlx sends `BEGIN` as a round trip of its own but
///   does not report it, so it is counted when its transaction ends;
/// - every pool acquire (`sqlx::pool::acquire`): sqlx pings an idle
///   connection before handing it out (`test_before_acquire`), or opens a
///   new one.
///
/// Not counted: the extra round trip that prepares a statement the first
/// time a connection runs it (then cached per connection), and the
/// `BEGIN` of a transaction dropped without commit or rollback (its
/// `ROLLBACK` is queued and rides on the connection's next use).
pub struct DbRoundTrips;

/// The layer with its own filter (only sqlx's statement and acquire
/// events reach it, whatever the log filter says). Compose it beside the
/// log layer, whose filter must be per-layer too (`with_filter`), not
/// global.
pub fn db_round_trips<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    DbRoundTrips.with_filter(
        Targets::new()
            .with_target(QUERY_TARGET, Level::TRACE)
            .with_target(ACQUIRE_TARGET, Level::TRACE),
    )
}

/// Finds whether a statement event ends a transaction (sqlx's `summary`
/// field is the statement's first four words).
struct EndsTransaction(bool);

impl Visit for EndsTransaction {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value.starts_with("COMMIT")
                || value.starts_with("ROLLBACK")
                || value.starts_with("RELEASE SAVEPOINT");
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for DbRoundTrips {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let n = if event.metadata().target() == ACQUIRE_TARGET {
            ACQUIRES.fetch_add(1, Ordering::Relaxed);
            1
        } else {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
            let mut ends = EndsTransaction(false);
            event.record(&mut ends);
            if ends.0 {
                BEGINS.fetch_add(1, Ordering::Relaxed);
                2
            } else {
                1
            }
        };
        eventstore::round_trips::charge(n);
    }
}

// ----------------------------------------------------------------------------
// HTTP requests

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Records one answered request. `route` is the matched route pattern
/// (`/api/v1/projects/{project_id}/tasks/{task_id}`), never the raw path,
/// so ids do not multiply the series; `None` (no route matched, a CORS
/// preflight) is recorded as `unmatched`.
pub fn record_request(
    method: &Method,
    route: Option<String>,
    status: u16,
    elapsed: Duration,
    db_round_trips: u64,
) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let method = method_label(method);
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let status = status_class(status);
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route.clone(), "status" => status)
        .record(elapsed.as_secs_f64());
    histogram!(HTTP_DB_QUERIES, "method" => method, "route" => route).record(db_round_trips as f64);
}

// ----------------------------------------------------------------------------
// Appends

/// Counts committed appends (register with `EventStore::observe_commits`).
pub struct AppendMetrics;

impl CommitObserver for AppendMetrics {
    fn committed(&self, events: &[RecordedEvent]) {
        counter!(APPEND_COMMITS).increment(1);
        // Usually one stream type per commit: one registry lookup each.
        let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
        for event in events {
            *by_type.entry(event.stream_type.as_str()).or_default() += 1;
        }
        for (stream_type, n) in by_type {
            counter!(EVENTS_APPENDED, "stream_type" => stream_type.to_owned()).increment(n);
        }
    }
}

// ----------------------------------------------------------------------------
// Scrape

/// The head of the log (an index-only backward scan of the primary key)
/// beside every checkpoint: one round trip, constant in the log's size.
const LAG_SQL: &str = "SELECT h.head, c.name, c.last_pos, c.failures
     FROM (SELECT coalesce(max(global_position), 0) AS head FROM events) h
     LEFT JOIN checkpoints c ON true
     ORDER BY c.name";

/// Resident set size, from `/proc/self/status` (`VmRSS`, in kB: no page
/// size to assume).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn observe_log(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(LAG_SQL).fetch_all(pool).await?;
    for row in rows {
        let head: i64 = row.try_get("head")?;
        gauge!(EVENTS_HEAD).set(head as f64);
        let Some(name) = row.try_get::<Option<String>, _>("name")? else {
            continue;
        };
        let last_pos: i64 = row.try_get("last_pos")?;
        let failures: i32 = row.try_get("failures")?;
        gauge!(SUBSCRIPTION_LAG, "subscription" => name.clone())
            .set((head - last_pos).max(0) as f64);
        gauge!(SUBSCRIPTION_FAILURES, "subscription" => name).set(f64::from(failures));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`. Open like `/api/healthz` unless `METRICS_TOKEN` is set,
/// in which case it wants `Authorization: Bearer <METRICS_TOKEN>`.
pub async fn scrape(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = state.metrics_token.as_deref() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            return Err(ApiError::new(
                ErrorCode::AUTH_UNAUTHENTICATED,
                "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>",
            ));
        }
    }
    let handle = install();
    if let Err(error) = observe_log(&state.pool).await {
        // The rest is still worth serving; the lag gauges keep their last values.
        tracing::warn!(%error, "metrics: reading subscription checkpoints failed");
    }
    gauge!(POOL_SIZE).set(f64::from(state.pool.size()));
    gauge!(POOL_IDLE).set(state.pool.num_idle() as f64);
    gauge!(POOL_MAX).set(f64::from(state.pool.options().get_max_connections()));
    if let Some(rss) = resident_memory_bytes() {
        gauge!(RESIDENT_MEMORY).set(rss as f64);
    }
    counter!(DB_QUERIES, "kind" => "statement").absolute(STATEMENTS.load(Ordering::Relaxed));
    counter!(DB_QUERIES, "kind" => "begin").absolute(BEGINS.load(Ordering::Relaxed));
    counter!(DB_QUERIES, "kind" => "acquire").absolute(ACQUIRES.load(Ordering::Relaxed));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap()),
            "OTHER"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    /// What a transaction costs in counted round trips: the acquire (ping),
    /// BEGIN (counted at COMMIT), the statement, COMMIT.
    #[tokio::test]
    async fn counts_begin_commit_and_acquire() {
        use tracing::instrument::WithSubscriber;
        use tracing_subscriber::layer::SubscriberExt;

        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let options = sqlx::ConnectOptions::log_statements(options, log::LevelFilter::Trace);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_time_level(log::LevelFilter::Trace)
            .connect_with(options)
            .await
            .unwrap();
        let subscriber =
            tracing::Dispatch::new(tracing_subscriber::registry().with(db_round_trips()));
        // Warm the connection up (its statements are prepared once).
        let warm = async {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        };
        counting_round_trips(warm)
            .with_subscriber(subscriber.clone())
            .await;

        let work = async {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
            sqlx::query("SELECT 2").execute(&pool).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SELECT 3").execute(&mut *tx).await.unwrap();
            tx.rollback().await.unwrap();
        };
        let ((), n) = counting_round_trips(work).with_subscriber(subscriber).await;
        // tx 1: acquire, BEGIN, SELECT, COMMIT = 4; SELECT 2 on the pool:
        // acquire, SELECT = 2; tx 2: acquire, BEGIN, SELECT, ROLLBACK = 4.
        assert_eq!(n, 10);
        pool.close().await;
    }
}
