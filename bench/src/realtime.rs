//! `realtime`: commit → Socket.IO receipt latency with many connected
//! clients, against raw Valkey `PUBLISH` → `SUBSCRIBE` latency measured in
//! the same run as the baseline.
//!
//! The server is `paca serve` (release build or `PACA_BIN`) on the scratch
//! database and `--redis-url` (default `REDIS_URL` or
//! redis://127.0.0.1:6379). `--clients` Socket.IO clients (default 1,000)
//! connect over WebSocket (engine.io v4 / socket.io v5 framing, spoken
//! directly on tokio-tungstenite), authenticate with the admin's access JWT
//! and join the project. One writer then PATCHes one task at `--rate`
//! writes per second (default 20) for `--seconds`; the instant each PATCH
//! is sent is matched, by the task version in the `task.updated` payload,
//! with the instant each client receives it. This is the write request's
//! whole path (HTTP, command, commit, relay wake-up, Valkey, fan-out), so
//! an upper bound on commit → receipt; the PATCH's own round trip is
//! reported next to it.
//!
//! Baseline: a publisher and a subscriber connection on the same Valkey,
//! one message per publish at the same rate, send → receive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fred::prelude::*;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::Settings;
use crate::db::ScratchDb;
use crate::http::{Server, server_binary};
use crate::report::{Report, Target};

const P99_TARGET_MS: f64 = 20.0;
const CONNECT_CONCURRENCY: usize = 64;
/// How long after the last write receipts are still awaited.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn run(
    db: &ScratchDb,
    settings: &Settings,
    clients: usize,
    redis_url: &str,
) -> Result<Report> {
    let binary = server_binary().await?;
    let database_url = PgConnectOptions::from_str(&settings.database_url)
        .context("parse --database-url")?
        .database(&db.name)
        .to_url_lossy()
        .to_string();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free loopback port")
            .map(|a| a.port())
    };
    let port = free_port()?;
    // Clients connect where the gateway sends `/ws/`: the dedicated
    // Socket.IO listener (REALTIME_PORT), as deploy/ runs it.
    let rt_port = free_port()?;
    let rt_port_text = rt_port.to_string();
    let mut server = Server::start(
        &binary,
        &database_url,
        port,
        &[("REDIS_URL", redis_url), ("REALTIME_PORT", &rt_port_text)],
    )?;
    println!(
        "paca {} on 127.0.0.1:{port}, Socket.IO on :{rt_port} (pid {}), Valkey {redis_url}",
        binary.display(),
        server.pid
    );
    let outcome = measure(
        port,
        rt_port,
        &server.password,
        settings,
        clients,
        redis_url,
    )
    .await;
    server.stop().await;
    outcome
}

async fn measure(
    port: u16,
    rt_port: u16,
    password: &str,
    settings: &Settings,
    clients: usize,
    redis_url: &str,
) -> Result<Report> {
    let base = format!("http://127.0.0.1:{port}");
    // reqwest is built without a default TLS provider (plain HTTP here,
    // but the client wants one installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    wait_healthy(&http, &base).await?;
    let token = login(&http, &base, password).await?;
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
    };
    let project: Value = api(reqwest::Method::POST, "/projects")
        .json(&json!({"name": "realtime bench"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let project_id = project["data"]["id"]
        .as_str()
        .context("project id")?
        .to_owned();
    let task: Value = api(
        reqwest::Method::POST,
        &format!("/projects/{project_id}/tasks"),
    )
    .json(&json!({"title": "bench"}))
    .send()
    .await?
    .error_for_status()?
    .json()
    .await?;
    let task_id = task["data"]["id"].as_str().context("task id")?.to_owned();

    let mut report = Report::new(format!(
        "realtime: commit -> Socket.IO receipt, {clients} clients, {} writes/s",
        settings.rate
    ));
    report.note(format!(
        "ours: task.updated received by each of {clients} Socket.IO clients (WebSocket, on the dedicated REALTIME_PORT listener) through the relay and Valkey, from the event's recorded time (append transaction; ~commit) and from the PATCH being sent; baseline: raw Valkey PUBLISH -> SUBSCRIBE, same rate"
    ));

    // Connect every client (bounded concurrency), each joined to the project.
    let (receipts_tx, mut receipts_rx) = mpsc::unbounded_channel::<Receipt>();
    let started = Instant::now();
    let mut connected = Vec::with_capacity(clients);
    let ws_url = format!("ws://127.0.0.1:{rt_port}/ws/socket.io/?EIO=4&transport=websocket");
    for chunk in (0..clients).collect::<Vec<_>>().chunks(CONNECT_CONCURRENCY) {
        let mut joins = Vec::new();
        for _ in chunk {
            let url = ws_url.clone();
            let token = token.clone();
            let project_id = project_id.clone();
            let tx = receipts_tx.clone();
            joins.push(tokio::spawn(async move {
                SioClient::connect(&url, &token, &project_id, tx).await
            }));
        }
        for join in joins {
            connected.push(join.await.context("client task")??);
        }
    }
    drop(receipts_tx);
    println!(
        "{} Socket.IO clients connected and joined in {:.1} s",
        connected.len(),
        started.elapsed().as_secs_f64()
    );

    for run in 0..settings.runs {
        // --- ours
        let sent: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
        let mut patch_rtt = Histogram::<u64>::new(3)?;
        let interval = Duration::from_secs_f64(1.0 / settings.rate as f64);
        let writes = (settings.phase.as_secs_f64() * settings.rate as f64).ceil() as u64;
        let t0 = Instant::now();
        let mut versions = Vec::new();
        for i in 0..writes {
            let due = t0 + interval * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let at = Instant::now();
            let response: Value = api(
                reqwest::Method::PATCH,
                &format!("/projects/{project_id}/tasks/{task_id}"),
            )
            .json(&json!({"title": format!("bench {run} {i}")}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
            patch_rtt.record(at.elapsed().as_micros() as u64)?;
            let version = response["data"]["version"].as_i64().context("version")?;
            sent.lock().await.insert(version, at);
            versions.push(version);
        }
        // Collect receipts until every client has every write, or DRAIN.
        let expected = versions.len() * connected.len();
        let mut latency = Histogram::<u64>::new(3)?;
        let mut got = 0usize;
        let mut early: Vec<Receipt> = Vec::new();
        let mut from_commit = Histogram::<u64>::new(3)?;
        let deadline = tokio::time::Instant::now() + DRAIN;
        let sent = sent.lock().await.clone();
        while got < expected {
            match tokio::time::timeout_at(deadline, receipts_rx.recv()).await {
                Ok(Some(receipt)) => early.push(receipt),
                Ok(None) | Err(_) => break,
            }
            for (version, at, recorded_us) in early.drain(..) {
                if let Some(sent_at) = sent.get(&version) {
                    from_commit.record(recorded_us.max(0) as u64)?;
                    latency.record(at.saturating_duration_since(*sent_at).as_micros() as u64)?;
                    got += 1;
                }
            }
        }
        println!(
            "run {}: {writes} writes, {got}/{expected} receipts ({:.2}%)",
            run + 1,
            100.0 * got as f64 / expected.max(1) as f64
        );
        if got < expected {
            report.note(format!(
                "run {}: {} receipt(s) missing after {DRAIN:?}",
                run + 1,
                expected - got
            ));
        }

        // --- baseline
        let baseline = redis_baseline(redis_url, settings.rate, settings.phase).await?;

        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        report.add(
            "p50 PATCH sent -> receipt",
            "ms",
            ms(&latency, 0.5),
            ms(&baseline, 0.5),
            None,
        );
        report.add(
            "p50 event recorded -> receipt",
            "ms",
            ms(&from_commit, 0.5),
            ms(&baseline, 0.5),
            None,
        );
        report.add(
            "p99 event recorded -> receipt",
            "ms",
            ms(&from_commit, 0.99),
            ms(&baseline, 0.99),
            Some(Target::AtMost(P99_TARGET_MS)),
        );
        report.add(
            "p99 PATCH sent -> receipt",
            "ms",
            ms(&latency, 0.99),
            ms(&baseline, 0.99),
            None,
        );
        report.add(
            "max PATCH sent -> receipt",
            "ms",
            ms(&latency, 1.0),
            ms(&baseline, 1.0),
            None,
        );
        report.add(
            "p50 PATCH round trip (ours only)",
            "ms",
            ms(&patch_rtt, 0.5),
            0.0,
            None,
        );
        report.add(
            "receipts delivered",
            "%",
            100.0 * got as f64 / expected.max(1) as f64,
            100.0,
            Some(Target::AtLeast(100.0)),
        );
    }
    for client in connected {
        client.close();
    }
    Ok(report)
}

/// A Socket.IO `event` frame, decoded only as far as the receipt needs
/// (the rest of the payload is skipped, not built into a tree). With
/// connection-state recovery on, the server appends the packet's offset as
/// a last argument.
#[derive(serde::Deserialize)]
struct Frame<'a>(
    #[serde(borrow)] &'a str,
    #[serde(borrow)] Event<'a>,
    #[expect(dead_code, reason = "only skipped: the recovery offset")]
    #[serde(default)]
    Option<serde::de::IgnoredAny>,
);

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    payload: Payload<'a>,
}

#[derive(serde::Deserialize)]
struct Payload<'a> {
    version: Option<i64>,
    #[serde(borrow)]
    created_at: Option<&'a str>,
}

/// (task version, receipt instant, µs from the event's recorded time).
type Receipt = (i64, Instant, i64);

/// One Socket.IO client over a raw WebSocket.
struct SioClient {
    task: tokio::task::JoinHandle<()>,
}

impl SioClient {
    async fn connect(
        url: &str,
        token: &str,
        project_id: &str,
        receipts: mpsc::UnboundedSender<Receipt>,
    ) -> Result<Self> {
        // 4 KiB read buffers, as tungstenite advises for many connections:
        // with its 128 KiB default every read zeroes 128 KiB, and a thousand
        // clients spent a third of the load generator's CPU in memset (on
        // the two cores the server needs), which the receipt times counted.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async_with_config(url, Some(config), false),
        )
        .await
        .context("websocket connect timed out")??;
        let (mut sink, mut stream) = ws.split();
        // engine.io open packet, then the namespace connect with auth.
        let open = next_text(&mut stream).await?;
        anyhow::ensure!(
            open.starts_with('0'),
            "expected the engine.io open packet, got {open}"
        );
        sink.send(WsMessage::text(format!("40{}", json!({"token": token}))))
            .await?;
        loop {
            let reply = next_text(&mut stream).await?;
            // The server's heartbeat may come first.
            if reply == "2" {
                sink.send(WsMessage::text("3")).await?;
                continue;
            }
            anyhow::ensure!(
                reply.starts_with("40"),
                "socket.io connect refused: {reply}"
            );
            break;
        }
        sink.send(WsMessage::text(format!(
            "420{}",
            json!(["join", {"projectId": project_id}])
        )))
        .await?;
        loop {
            let ack = next_text(&mut stream).await?;
            if ack.starts_with("430") {
                anyhow::ensure!(ack.contains("\"tasks\":true"), "join refused: {ack}");
                break;
            }
            if ack == "2" {
                sink.send(WsMessage::text("3")).await?;
            }
        }
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let WsMessage::Text(text) = message else {
                    continue;
                };
                // Both clocks first: with 1,000 clients on two cores, the
                // time this client spends decoding is time every other
                // client waits, but it is not this receipt's latency.
                let at = Instant::now();
                let wall = chrono::Utc::now();
                let text = text.as_str();
                if text == "2" {
                    if sink.send(WsMessage::text("3")).await.is_err() {
                        break;
                    }
                    continue;
                }
                if let Some(body) = text.strip_prefix("42")
                    && let Ok(Frame(name, event, _)) = serde_json::from_str::<Frame>(body)
                    && name == "event"
                    && event.kind == "task.updated"
                    && let Some(version) = event.payload.version
                {
                    // The event's recorded time (set in the append
                    // transaction) to the receipt, on the same clock.
                    let recorded_us = event
                        .payload
                        .created_at
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| {
                            (wall - t.with_timezone(&chrono::Utc))
                                .num_microseconds()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0);
                    let _ = receipts.send((version, at, recorded_us));
                }
            }
        });
        Ok(Self { task })
    }

    fn close(self) {
        self.task.abort();
    }
}

async fn next_text<S>(stream: &mut S) -> Result<String>
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("timed out waiting for the server")?;
        match next {
            Some(Ok(WsMessage::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("websocket: {e}"),
            None => bail!("websocket closed"),
        }
    }
}

/// Raw PUBLISH -> SUBSCRIBE latency at `rate` for `phase`.
async fn redis_baseline(url: &str, rate: u64, phase: Duration) -> Result<Histogram<u64>> {
    let config = Config::from_url(url)?;
    let publisher = Builder::from_config(config.clone()).build()?;
    publisher.init().await?;
    let subscriber = Builder::from_config(config)
        .with_performance_config(|p| p.broadcast_channel_capacity = 65_536)
        .build()?;
    subscriber.init().await?;
    let channel = format!("paca.bench.{}", std::process::id());
    let mut messages = subscriber.message_rx();
    subscriber.subscribe(channel.as_str()).await?;
    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let count = (phase.as_secs_f64() * rate as f64).ceil() as u64;
    let collector = tokio::spawn(async move {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        let mut seen = 0u64;
        while seen < count {
            let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_secs(5), messages.recv()).await
            else {
                break;
            };
            let at = Instant::now();
            if let Some(text) = message.value.as_str()
                && let Ok(sent_us) = text.parse::<u64>()
            {
                let sent = t0 + Duration::from_micros(sent_us);
                let _ = h.record(at.saturating_duration_since(sent).as_micros() as u64);
                seen += 1;
            }
        }
        h
    });
    for i in 0..count {
        tokio::time::sleep_until((t0 + interval * i as u32).into()).await;
        let at = t0.elapsed().as_micros() as u64;
        let _: i64 = publisher.publish(channel.as_str(), at.to_string()).await?;
    }
    let histogram = collector.await.context("baseline collector")?;
    let _ = subscriber.quit().await;
    let _ = publisher.quit().await;
    Ok(histogram)
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{base}/ws/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("paca did not answer /ws/healthz within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(http: &reqwest::Client, base: &str, password: &str) -> Result<String> {
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "login: {}",
        response.status()
    );
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("access_token="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .filter(|t| !t.is_empty())
        .context("login: no access_token cookie")
}
