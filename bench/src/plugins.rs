//! `plugins`: the cost of the WASM plugin host.
//!
//! 1. Requests/s and p50/p99 latency of a trivial plugin route
//!    (`GET /api/v1/plugins/com.bench.ping/ping`: route match, middleware
//!    (none), envelope, one guest call, response parse) against an
//!    equivalent native actix route returning the same JSON, on the same
//!    in-process server, closed loop with the same concurrency, phases
//!    alternating within each run. The ratio is the figure.
//! 2. `HandleEvent` delivery lag: events of a subscribed type appended one
//!    at a time at a fixed rate; the plugin stamps `clock_timestamp()` into
//!    its own table on delivery; lag = stamp − commit time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, Result};
use commands::{AuthConfig, Commands};
use eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
use plugin_host::{HostConfig, PluginHost};
use serde_json::json;

use crate::Settings;
use crate::db::ScratchDb;
use crate::report::{Report, histogram, ms};

/// Concurrent closed-loop clients per phase.
const CONCURRENCY: usize = 8;

/// A trivial plugin: `HandleRequest` returns a fixed envelope whose body is
/// `{"pong":true}`; `HandleEvent` stamps the delivery time.
const PING: &str = r#"
(module
  (import "paca" "db_exec" (func $db_exec (param i64 i64 i64 i64 i64 i64 i64)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "{\"status\":200,\"headers\":{},\"body\":\"eyJwb25nIjp0cnVlfQ==\"}")
  (data (i32.const 2048) "INSERT INTO seen (at) VALUES (clock_timestamp())")
  (global $heap (mut i32) (i32.const 8192))
  (func (export "paca_malloc") (param $n i32) (result i32)
    (local $p i32)
    global.get $heap
    local.set $p
    global.get $heap
    local.get $n
    i32.add
    i32.const 7
    i32.add
    i32.const -8
    i32.and
    global.set $heap
    local.get $p)
  (func (export "ResetAllocator") i32.const 8192 global.set $heap)
  (func (export "HandleRequest") (param i32 i32) (result i64)
    i64.const 1024
    i64.const 32
    i64.shl
    i64.const 57
    i64.or)
  (func (export "HandleEvent") (param i32 i32 i32 i32)
    (call $db_exec (i64.const 2048) (i64.const 48) (i64.const 0) (i64.const 0)
      (i64.const 64) (i64.const 72) (i64.const 76)))
)
"#;

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    let pool = db.pool(16).await?;
    let store = EventStore::builder(pool.clone())
        .upcasters(commands::upcasters())
        .projector(Arc::new(commands::write_index::WriteIndex))
        .projector(Arc::new(projections::ReadModelProjector))
        .build();
    projections::ensure_ready(&store)
        .await
        .map_err(|e| anyhow::anyhow!("read models: {e}"))?;
    let commands = Commands::new(
        store.clone(),
        AuthConfig {
            jwt_secret: "bench".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(3600),
            refresh_session_ttl: Duration::from_secs(600),
            cookie_secure: false,
            agent_api_key: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("commands: {e}"))?;
    let dir = std::env::temp_dir().join(format!("paca-bench-plugins-{}", std::process::id()));
    let mut cfg = HostConfig::new(dir.join("store"));
    cfg.db_secret = b"bench".to_vec();
    cfg.limits.instances = CONCURRENCY;
    let host = PluginHost::new(cfg, commands.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    host.start().await;
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("migrations"))?;
    std::fs::write(
        src.join("plugin.json"),
        json!({"id": "com.bench.ping", "version": "1.0.0", "backend": {
            "routes": [{"method": "GET", "path": "/ping", "middlewares": []}],
            "eventSubscriptions": ["bench.tick"]}})
        .to_string(),
    )?;
    std::fs::write(src.join("backend.wat"), PING)?;
    std::fs::write(
        src.join("migrations/0001.sql"),
        "CREATE TABLE seen (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL);",
    )?;
    host.install_path(&src, true, &Metadata::system("bench"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let state = web::Data::new(gateways::AppState::new(commands, 0).with_plugins(host.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/native/ping",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"pong": true})) }),
            )
            .configure(gateways::configure(state.clone()))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .context("bind")?;
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let base = format!("http://127.0.0.1:{port}");

    let mut report = Report::new("plugins: trivial WASM route vs native actix route");
    report.note(format!(
        "closed loop, {CONCURRENCY} concurrent clients, {}s per phase, same server and run",
        settings.phase.as_secs()
    ));
    report
        .note("ours = GET /api/v1/plugins/com.bench.ping/ping; baseline = native GET /native/ping");
    let plugin_url = format!("{base}/api/v1/plugins/com.bench.ping/ping");
    let native_url = format!("{base}/native/ping");
    // Warm both paths (instances built, connections open).
    load(&plugin_url, Duration::from_secs(1)).await?;
    load(&native_url, Duration::from_secs(1)).await?;
    for _ in 0..settings.runs {
        let native = load(&native_url, settings.phase).await?;
        let plugin = load(&plugin_url, settings.phase).await?;
        report.add("requests/s", "req/s", plugin.rps, native.rps, None);
        report.add("p50 latency", "ms", plugin.p50, native.p50, None);
        report.add("p99 latency", "ms", plugin.p99, native.p99, None);
    }

    // HandleEvent delivery lag.
    let ticks = (settings.phase.as_secs() * 20).clamp(20, 400);
    let mut committed = Vec::new();
    let stream = uuid::Uuid::new_v4();
    for i in 0..ticks {
        store
            .append(
                StreamRef {
                    stream_type: "bench",
                    stream_id: stream,
                    project_id: None,
                },
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "bench.tick",
                    json!({"i": i}),
                    Metadata::system("bench"),
                )],
            )
            .await?;
        committed.push(chrono::Utc::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let stamps: Vec<chrono::DateTime<chrono::Utc>> = loop {
        let rows: Vec<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT at FROM plugin_data_com_bench_ping.seen ORDER BY id")
                .fetch_all(&pool)
                .await?;
        if rows.len() as u64 >= ticks || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    anyhow::ensure!(
        stamps.len() as u64 >= ticks,
        "only {} of {ticks} events delivered",
        stamps.len()
    );
    let mut lag = histogram();
    for (at, sent) in stamps.iter().zip(&committed) {
        let micros = (*at - *sent).num_microseconds().unwrap_or(0).max(1) as u64;
        lag.record(micros).ok();
    }
    report.note(format!(
        "HandleEvent delivery lag over {ticks} events at 20/s: p50 {:.2} ms, p99 {:.2} ms (commit -> plugin's clock_timestamp())",
        ms(&lag, 0.5),
        ms(&lag, 0.99)
    ));
    handle.stop(true).await;
    host.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

struct Phase {
    rps: f64,
    p50: f64,
    p99: f64,
}

/// `CONCURRENCY` clients each sending GETs back to back for `phase`.
async fn load(url: &str, phase: Duration) -> Result<Phase> {
    let url = url.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let outcome = (|| -> Result<Phase> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            tokio::task::LocalSet::new().block_on(&rt, async move {
                let client = awc::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .finish();
                let started = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..CONCURRENCY {
                    let client = client.clone();
                    let url = url.clone();
                    tasks.push(tokio::task::spawn_local(async move {
                        let mut h = histogram();
                        let mut n = 0u64;
                        while started.elapsed() < phase {
                            let t = Instant::now();
                            let mut res = client
                                .get(&url)
                                .send()
                                .await
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                            let _ = res.body().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                            anyhow::ensure!(
                                res.status().is_success(),
                                "{url}: HTTP {}",
                                res.status()
                            );
                            h.record(t.elapsed().as_micros().max(1) as u64).ok();
                            n += 1;
                        }
                        Ok::<_, anyhow::Error>((h, n))
                    }));
                }
                let mut all = histogram();
                let mut total = 0;
                for task in tasks {
                    let (h, n) = task.await??;
                    all.add(&h).ok();
                    total += n;
                }
                Ok(Phase {
                    rps: total as f64 / started.elapsed().as_secs_f64(),
                    p50: ms(&all, 0.5),
                    p99: ms(&all, 0.99),
                })
            })
        })();
        let _ = tx.send(outcome);
    });
    rx.await.map_err(|_| anyhow::anyhow!("load thread died"))?
}
