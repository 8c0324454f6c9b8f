//! `http`: latency of the real server, end to end over loopback HTTP, for a
//! write (`PATCH` a task: one appended event) and a read (a filtered page
//! of the task list), against `GET /api/healthz` at the same rate in the
//! same run as the baseline.
//!
//! The server is the release binary `paca serve` (built first with `cargo
//! build --release --bin paca`, or taken from `PACA_BIN`), started as a
//! child process on the scratch database and a free loopback port, and
//! stopped (SIGTERM) at the end, also on error and on Ctrl-C.
//!
//! Load is open loop at a fixed rate: request `i` is scheduled at
//! `t0 + i / rate` and sent then whatever the earlier ones are doing, and
//! its latency is measured from that scheduled instant, so a stalled server
//! is charged for the requests that queue behind the stall (no coordinated
//! omission). Service time, from the actual send to the last byte of the
//! response, is reported alongside. The client is `awc` with keep-alive
//! connections, on its own thread (a current-thread runtime and a
//! `LocalSet`, as awc is not `Send`), so it does not compete with the
//! database driver's runtime. Each phase starts with one unrecorded second
//! at the same rate (connections opened, caches warm).
//!
//! The server's `GET /metrics` is scraped before, halfway through and after
//! each open-loop phase (not the saturation ones): PostgreSQL round trips per request come from the deltas of
//! the phase's route in `paca_http_db_queries` (sum / count), the server's
//! resident memory idle (before the run's first phase) and under load
//! (halfway through each phase) from `paca_process_resident_memory_bytes`.
//! Before the server starts, the CPU cost of that round-trip counting is
//! measured in process (sqlx's statement logger with and without the
//! counting layer) and printed with the report.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use awc::Client;
use awc::http::{Method, StatusCode, header};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::Settings;
use crate::db::ScratchDb;
use crate::report::{Report, Target, histogram, ms, number};

/// Concurrent requests while seeding.
const SEED_CONCURRENCY: usize = 8;
/// Unrecorded lead-in of every phase, at the phase's rate.
const WARM_UP: Duration = Duration::from_secs(1);
/// The goal for both measured endpoints, at 1,000 req/s.
/// p99 at 1,000 req/s: writes (`PATCH`, `POST`) and reads (the filtered
/// page, one task) have different goals.
const P99_TARGET_MS: f64 = 10.0;
const READ_P99_TARGET_MS: f64 = 5.0;
const PAGE_SIZE: usize = 50;
/// The issue-8 goals the server's own figures are held to.
const PATCH_ROUND_TRIPS_TARGET: f64 = 4.0;
const IDLE_RSS_TARGET_MB: f64 = 80.0;
/// Per-request limit; a request that takes longer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests on the wire at once (one keep-alive connection each). Later
/// ones wait for a slot; their latency counts from their scheduled instant
/// all the same, their service time from when they got the slot.
const CONNECTIONS: usize = 256;

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    anyhow::ensure!(settings.tasks >= 1, "--tasks must be at least 1");
    let binary = server_binary().await?;
    let database_url = PgConnectOptions::from_str(&settings.database_url)
        .context("parse --database-url")?
        .database(&db.name)
        .to_url_lossy()
        .to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("find a free loopback port")?
        .port();
    let history = if settings.history {
        Some(grow_log(db, settings.events).await?)
    } else {
        None
    };
    let overhead = tokio::task::spawn_blocking(counting_overhead)
        .await
        .context("the overhead measurement panicked")??;
    println!("{}", overhead.describe());
    let mut server = Server::start(&binary, &database_url, port, &[])?;
    println!(
        "paca {} on 127.0.0.1:{port} (pid {})",
        binary.display(),
        server.pid
    );

    let (tx, rx) = oneshot::channel();
    let client = ClientSide {
        base: format!("http://127.0.0.1:{port}"),
        database_url: database_url.clone(),
        password: server.password.clone(),
        tasks: settings.tasks as usize,
        rate: settings.rate,
        phase: settings.phase,
        runs: settings.runs,
        overhead,
        history,
    };
    std::thread::Builder::new()
        .name("bench-http-client".into())
        .spawn(move || {
            let outcome = (|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                tokio::task::LocalSet::new().block_on(&rt, client.run())
            })();
            let _ = tx.send(outcome);
        })
        .context("spawn the client thread")?;

    let outcome = tokio::select! {
        outcome = rx => outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("client thread died"))),
        status = server.child.wait() => Err(match status {
            Ok(status) => anyhow::anyhow!("paca exited during the bench ({status})"),
            Err(e) => anyhow::anyhow!("waiting for paca: {e}"),
        }),
    };
    server.stop().await;
    outcome
}

/// The growth run's starting point: `events` generated domain events in the
/// log and projected into the live read models, as a server that has run
/// for a long time would find them on start. Generation and projection are
/// not measured.
async fn grow_log(db: &ScratchDb, events: u64) -> Result<String> {
    let pool = db.pool(4).await?;
    let store = eventstore::EventStore::builder(pool.clone()).build();
    projections::ensure_ready(&store)
        .await
        .map_err(|e| anyhow::anyhow!("ensure_ready: {e}"))?;
    let started = Instant::now();
    let history = crate::rebuild::generate(&pool, events).await?;
    let generated = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rebuilt = projections::rebuild(&store, &|_: u64, _: u64| {})
        .await
        .map_err(|e| anyhow::anyhow!("projections::rebuild: {e}"))?;
    let described = format!(
        "grown log: {} events of {} other projects before the server started \
         (generated in {generated:.0} s, projected in {:.0} s; not measured)",
        number(rebuilt.events as f64),
        number(history.projects as f64),
        started.elapsed().as_secs_f64(),
    );
    println!("{described}");
    pool.close().await;
    Ok(described)
}

/// `PACA_BIN`, or the release binary as `cargo build` reports it (a no-op
/// when it is up to date, and never a stale binary).
pub(crate) async fn server_binary() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("PACA_BIN") {
        let path = PathBuf::from(path);
        anyhow::ensure!(path.is_file(), "PACA_BIN={} is not a file", path.display());
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    println!("building the server: cargo build --release --bin paca");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "paca",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("run cargo build --release --bin paca")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo build --release --bin paca failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "paca")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo build did not report the paca executable")
}

/// The `paca serve` child. `stop` ends it with SIGTERM; dropping it without
/// `stop` (error, Ctrl-C) does the same, synchronously.
pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) password: String,
    data_dir: PathBuf,
    /// The server's stderr (its warnings), kept if not empty.
    log: PathBuf,
    stopped: bool,
}

impl Server {
    pub(crate) fn start(
        binary: &Path,
        database_url: &str,
        port: u16,
        extra_env: &[(&str, &str)],
    ) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("paca-bench-{}", std::process::id()));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let log = std::env::temp_dir().join(format!("paca-bench-{}.log", std::process::id()));
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let child = Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("PACA_BIND", "127.0.0.1")
            .env("ADMIN_USERNAME", "admin")
            .env("ADMIN_PASSWORD", &password)
            .env("JWT_SECRET", uuid::Uuid::new_v4().simple().to_string())
            .env("JWT_ACCESS_TTL", "2h")
            .env("PACA_DATA_DIR", &data_dir)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {} serve", binary.display()))?;
        let pid = child.id().context("paca exited at once")?;
        Ok(Self {
            child,
            pid,
            password,
            data_dir,
            log,
            stopped: false,
        })
    }

    pub(crate) async fn stop(&mut self) {
        self.stopped = true;
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await;
            let exited = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
            if exited.is_err() {
                eprintln!("paca did not stop within 10 s of SIGTERM; killing it");
                let _ = self.child.kill().await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.summarize_log();
    }

    /// Says how much the server logged (at `warn`), and where.
    fn summarize_log(&self) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            let _ = std::fs::remove_file(&self.log);
            return;
        }
        println!(
            "paca logged {} line(s) at warn or above, kept in {}; first: {}",
            lines.len(),
            self.log.display(),
            lines[0]
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.summarize_log();
    }
}

/// Everything the client thread needs (all `Send`).
struct ClientSide {
    base: String,
    /// The scratch database, for the raw-commit baseline.
    database_url: String,
    password: String,
    tasks: usize,
    rate: u64,
    phase: Duration,
    runs: usize,
    overhead: Overhead,
    /// Set on a growth run: what the log held before the server started.
    history: Option<String>,
}

/// A JSON API session on the client thread.
#[derive(Clone)]
struct Api {
    client: Client,
    base: Rc<str>,
    /// `Bearer <access token>`.
    auth: Rc<str>,
}

impl Api {
    /// One request; fails unless the status is 2xx. Returns the body.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .insert_header((header::AUTHORIZATION, &*self.auth));
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        let bytes = response
            .body()
            .limit(64 << 20)
            .await
            .map_err(|e| anyhow::anyhow!("{method} {path}: reading the body: {e}"))?;
        if !response.status().is_success() {
            bail!(
                "{method} {path}: {} {}",
                response.status(),
                String::from_utf8_lossy(&bytes)
            );
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: body not JSON"))
    }
}

fn client() -> Client {
    Client::builder()
        .connector(
            awc::Connector::new()
                // Above CONNECTIONS: requests never wait inside awc.
                .limit(2 * CONNECTIONS)
                // Below the server's idle keep-alive (actix's default, 5 s):
                // a connection idle through the raw-commit phase would
                // otherwise be reused after the server closed it, and the
                // first saturation requests failed ("connector has been
                // disconnected").
                .conn_keep_alive(Duration::from_secs(4)),
        )
        .timeout(REQUEST_TIMEOUT)
        .disable_redirects()
        .finish()
}

/// One request of a load phase.
pub(crate) enum Request {
    Get {
        url: String,
        auth: bool,
    },
    Patch {
        url: String,
        body: Value,
    },
    /// Answered `201 Created`.
    Post {
        url: String,
        body: Value,
    },
}

/// What a load phase measured.
struct Phase {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// From the scheduled send instant to the end of the response, µs.
    latency: Histogram<u64>,
    /// From the actual send to the end of the response, µs.
    service: Histogram<u64>,
    /// Successful responses per second over the recorded window (until the
    /// last recorded response if that came later).
    achieved: f64,
}

struct Recorder {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    last_done: Instant,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX).max(1)
}

/// Sends `make(i)` at `start + i / rate` for the warm-up and then
/// `measured`, recording only the requests scheduled after the warm-up.
async fn open_loop(
    client: &Client,
    auth: &Rc<str>,
    rate: u64,
    measured: Duration,
    mut make: impl FnMut(u64) -> Request,
) -> Phase {
    let warm_up = (WARM_UP.as_nanos() as u64 * rate).div_ceil(1_000_000_000);
    let total = warm_up + (measured.as_nanos() as u64 * rate).div_ceil(1_000_000_000);
    let start = Instant::now() + Duration::from_millis(5);
    let recorded_from = start + Duration::from_nanos(warm_up * 1_000_000_000 / rate);
    let recorder = Rc::new(RefCell::new(Recorder {
        ok: 0,
        errors: 0,
        first_error: None,
        latency: histogram(),
        service: histogram(),
        last_done: recorded_from,
    }));
    let slots = Rc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let mut inflight = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let request = make(i);
        let client = client.clone();
        let auth = auth.clone();
        let recorder = recorder.clone();
        let slots = slots.clone();
        let record = i >= warm_up;
        inflight.push(tokio::task::spawn_local(async move {
            let _slot = slots.acquire().await;
            let sent = Instant::now();
            let outcome = send(&client, &auth, request).await;
            let done = Instant::now();
            if !record {
                return;
            }
            let mut r = recorder.borrow_mut();
            match outcome {
                Ok(()) => {
                    r.ok += 1;
                    r.latency.saturating_record(micros(done - scheduled));
                    r.service.saturating_record(micros(done - sent));
                    r.last_done = r.last_done.max(done);
                }
                Err(e) => {
                    r.errors += 1;
                    r.first_error.get_or_insert(e);
                }
            }
        }));
    }
    for request in inflight {
        let _ = request.await;
    }
    let r = Rc::try_unwrap(recorder)
        .ok()
        .expect("all requests finished")
        .into_inner();
    let window = (r.last_done - recorded_from).max(measured).as_secs_f64();
    Phase {
        achieved: r.ok as f64 / window,
        ok: r.ok,
        errors: r.errors,
        first_error: r.first_error,
        latency: r.latency,
        service: r.service,
    }
}

/// One request, its response read to the end; anything but 200 is an error.
pub(crate) async fn send(client: &Client, auth: &str, request: Request) -> Result<(), String> {
    let mut expected = StatusCode::OK;
    let sent = match request {
        Request::Get { url, auth: false } => client.get(url).send().await,
        Request::Get { url, auth: true } => {
            client
                .get(url)
                .insert_header((header::AUTHORIZATION, auth))
                .send()
                .await
        }
        Request::Patch { url, body } => {
            client
                .patch(url)
                .insert_header((header::AUTHORIZATION, auth))
                .send_json(&body)
                .await
        }
        Request::Post { url, body } => {
            expected = StatusCode::CREATED;
            client
                .post(url)
                .insert_header((header::AUTHORIZATION, auth))
                .send_json(&body)
                .await
        }
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let body = response
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != expected {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "{} {}",
            response.status(),
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(())
}

/// Runs `work(0..n)` on `workers` concurrent local tasks.
async fn in_parallel<F, Fut>(n: usize, workers: usize, work: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Clone + 'static,
    Fut: Future<Output = Result<()>> + 'static,
{
    let next = Rc::new(Cell::new(0usize));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let next = next.clone();
        let work = work.clone();
        handles.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                next.set(i + 1);
                work(i).await?;
            }
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

/// splitmix64: enough to pick tasks, with no dependency.
fn next_random(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn describe(name: &str, p: &Phase) -> String {
    let mut line = format!(
        "{name:<18} {:>7.0} req/s  p50 {:>7.3}  p99 {:>7.3}  p99.9 {:>7.3} ms  (service p99 {:.3} ms)  ok {}  errors {}",
        p.achieved,
        ms(&p.latency, 0.5),
        ms(&p.latency, 0.99),
        ms(&p.latency, 0.999),
        ms(&p.service, 0.99),
        p.ok,
        p.errors
    );
    if let Some(e) = &p.first_error {
        line.push_str(&format!("  first error: {e}"));
    }
    line
}

impl ClientSide {
    async fn run(self) -> Result<Report> {
        let client = client();
        let base: Rc<str> = self.base.clone().into();
        wait_healthy(&client, &base).await?;
        let auth: Rc<str> = login(&client, &base, &self.password).await?.into();
        let at_start = scrape(&client, &base).await;
        match &at_start {
            Some(m) => println!(
                "server RSS at start (idle, before seeding): {:.1} MB",
                m.rss_mb()
            ),
            None => println!("GET /metrics unavailable: no round-trip or RSS figures"),
        }
        let api = Api {
            client: client.clone(),
            base: base.clone(),
            auth: auth.clone(),
        };
        if self.history.is_some() {
            self.wait_caught_up().await?;
        }
        let seeded = self.seed(&api).await?;

        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load_before = load_average();
        let mut report = Report::new(format!(
            "http ({} req/s per endpoint, open loop, {} s each after a {} s warm-up, {} tasks)",
            number(self.rate as f64),
            self.phase.as_secs(),
            WARM_UP.as_secs(),
            number(self.tasks as f64),
        ));
        let random = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()),
        );
        let counter = Cell::new(0u64);
        let healthz_url = format!("{base}/api/healthz");
        let tasks_url = format!("{base}/api/v1/projects/{}/tasks", seeded.project_id);
        let list_url = format!(
            "{tasks_url}?status_id={}&page_size={PAGE_SIZE}",
            seeded.status_id
        );
        let mut saturated = Vec::new();
        for run in 1..=self.runs {
            println!("run {run}/{}:", self.runs);
            // Each run writes thousands of rows; with autovacuum off
            // nothing else would vacuum them between runs.
            self.between_phases().await;
            self.vacuum().await?;
            let observed = Observer::start(&client, &base, self.phase).await;
            let healthz = open_loop(&client, &auth, self.rate, self.phase, |_| Request::Get {
                url: healthz_url.clone(),
                auth: false,
            })
            .await;
            let healthz_server = observed.finish("GET").await;
            println!("  {}", describe("GET /api/healthz", &healthz));
            healthz_server.print("GET /api/healthz");
            let observed = Observer::start(&client, &base, self.phase).await;
            let patch = open_loop(&client, &auth, self.rate, self.phase, |_| {
                let task = &seeded.task_ids[next_random(&random) as usize % seeded.task_ids.len()];
                let n = counter.get();
                counter.set(n + 1);
                Request::Patch {
                    url: format!("{tasks_url}/{task}"),
                    body: json!({ "title": format!("t-{n}") }),
                }
            })
            .await;
            let patch_server = observed.finish("PATCH").await;
            println!("  {}", describe("PATCH task", &patch));
            patch_server.print("PATCH task");
            self.between_phases().await;
            let observed = Observer::start(&client, &base, self.phase).await;
            let list = open_loop(&client, &auth, self.rate, self.phase, |_| Request::Get {
                url: list_url.clone(),
                auth: true,
            })
            .await;
            let list_server = observed.finish("GET").await;
            println!("  {}", describe("GET filtered list", &list));
            list_server.print("GET filtered list");
            let observed = Observer::start(&client, &base, self.phase).await;
            let one = open_loop(&client, &auth, self.rate, self.phase, |_| {
                let task = &seeded.task_ids[next_random(&random) as usize % seeded.task_ids.len()];
                Request::Get {
                    url: format!("{tasks_url}/{task}"),
                    auth: true,
                }
            })
            .await;
            let one_server = observed.finish("GET").await;
            println!("  {}", describe("GET task", &one));
            one_server.print("GET task");
            let observed = Observer::start(&client, &base, self.phase).await;
            let post = open_loop(&client, &auth, self.rate, self.phase, |i| Request::Post {
                url: tasks_url.clone(),
                body: json!({ "title": format!("new {run}-{i}") }),
            })
            .await;
            let post_server = observed.finish("POST").await;
            println!("  {}", describe("POST task", &post));
            post_server.print("POST task");
            self.between_phases().await;
            let observed = Observer::start(&client, &base, self.phase).await;
            let comment = open_loop(&client, &auth, self.rate, self.phase, |i| {
                let task = &seeded.task_ids[next_random(&random) as usize % seeded.task_ids.len()];
                Request::Post {
                    url: format!("{tasks_url}/{task}/activities/comments"),
                    body: json!({ "content": { "text": format!("comment {run}-{i}") } }),
                }
            })
            .await;
            let comment_server = observed.finish("POST").await;
            println!("  {}", describe("POST comment", &comment));
            comment_server.print("POST comment");
            self.between_phases().await;
            for (name, ours) in [
                ("PATCH task", &patch),
                ("GET filtered list", &list),
                ("GET task", &one),
                ("POST task", &post),
                ("POST comment", &comment),
            ] {
                add_figures(&mut report, name, ours, &healthz);
            }
            add_server_figures(
                &mut report,
                &healthz_server,
                &[
                    ("PATCH task", &patch_server),
                    ("GET filtered list", &list_server),
                    ("GET task", &one_server),
                    ("POST task", &post_server),
                    ("POST comment", &comment_server),
                ],
            );

            // Saturation: closed-loop clients against raw commits on the
            // same database, measured just before.
            let raw = crate::saturation::raw_commits(&self.database_url, self.phase).await?;
            println!(
                "  raw commits ({} connections, UPDATE + INSERT per transaction): {} tx/s",
                crate::saturation::CLIENTS,
                number(raw)
            );
            let task_ids = seeded.task_ids.clone();
            let url = tasks_url.clone();
            let random_patch = Cell::new(next_random(&random));
            let patch_sat = crate::saturation::closed_loop(&client, &auth, self.phase, move |n| {
                let task = &task_ids[next_random(&random_patch) as usize % task_ids.len()];
                Request::Patch {
                    url: format!("{url}/{task}"),
                    body: json!({ "title": format!("s-{n}") }),
                }
            })
            .await;
            self.between_phases().await;
            let url = tasks_url.clone();
            let post_sat = crate::saturation::closed_loop(&client, &auth, self.phase, move |n| {
                Request::Post {
                    url: url.clone(),
                    body: json!({ "title": format!("sat {run}-{n}") }),
                }
            })
            .await;
            self.between_phases().await;
            let task_ids = seeded.task_ids.clone();
            let url = tasks_url.clone();
            let random_comment = Cell::new(next_random(&random));
            let comment_sat =
                crate::saturation::closed_loop(&client, &auth, self.phase, move |n| {
                    let task = &task_ids[next_random(&random_comment) as usize % task_ids.len()];
                    Request::Post {
                        url: format!("{url}/{task}/activities/comments"),
                        body: json!({ "content": { "text": format!("sat {run}-{n}") } }),
                    }
                })
                .await;
            for (name, sat) in [
                ("PATCH task", &patch_sat),
                ("POST task", &post_sat),
                ("POST comment", &comment_sat),
            ] {
                println!(
                    "  {name} saturation ({} clients): {} req/s = {:.2} x raw, p99 {:.1} ms, {} error(s){}",
                    crate::saturation::CLIENTS,
                    number(sat.throughput),
                    sat.throughput / raw,
                    ms(&sat.latency, 0.99),
                    sat.errors,
                    sat.first_error
                        .as_deref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                );
                report.add(
                    &format!("{name} saturation, {} clients", crate::saturation::CLIENTS),
                    "req/s",
                    sat.throughput,
                    raw,
                    None,
                );
                report.add(
                    &format!("{name} saturation / raw commits"),
                    "ratio",
                    sat.throughput / raw,
                    1.0,
                    Some(Target::AtLeast(0.5)),
                );
            }
            for (name, phase) in [
                ("GET /api/healthz", &healthz),
                ("PATCH task", &patch),
                ("GET filtered list", &list),
                ("GET task", &one),
                ("POST task", &post),
                ("POST comment", &comment),
            ] {
                if phase.achieved < 0.95 * self.rate as f64 || phase.errors > 0 {
                    saturated.push(format!(
                        "run {run}: {name} did not keep up: {} of {} req/s answered 200, {} error(s); \
                         its latencies are mostly queueing",
                        number(phase.achieved),
                        number(self.rate as f64),
                        phase.errors
                    ));
                }
            }
        }
        report.note(
            "baseline: GET /api/healthz (no auth, no database) at the same rate, in the same run, just before; \
             the ratio column of p99 is p99(ours) / p99(healthz)",
        );
        report.note(format!(
            "latency from each request's scheduled send instant (open loop, no coordinated omission); \
             service time from the actual send (after waiting, if need be, for one of the client's {CONNECTIONS} connections); \
             both to the last byte of the response"
        ));
        report.note(format!(
            "PATCH /api/v1/projects/:id/tasks/:taskId {{\"title\": \"t-<n>\"}} on a random one of {} tasks (one event each); \
             GET /api/v1/projects/:id/tasks?status_id=<2nd status>&page_size={PAGE_SIZE} ({} of the tasks match)",
            number(self.tasks as f64),
            number(seeded.in_status as f64),
        ));
        report.note(format!(
            "targets: p99 <= {P99_TARGET_MS} ms for writes and <= {READ_P99_TARGET_MS} ms for reads at 1,000 req/s; client, server (paca, default workers) and PostgreSQL share this machine's {cpus} CPU(s); load average before {load_before}, after {}",
            load_average()
        ));
        report.note(
            "db round trips: PostgreSQL round trips per request of the phase's route, from the server's GET /metrics \
             (delta of paca_http_db_queries_sum / delta of its _count; statements, BEGINs and pool acquires, see docs/operations.md); \
             baseline: GET /api/healthz; RSS: paca_process_resident_memory_bytes, idle before each run's first phase \
             (after seeding), under load the highest of the mid-phase scrapes, baseline the idle figure",
        );
        report.note(self.overhead.describe());
        if let Some(history) = &self.history {
            report.note(history.clone());
        }
        for note in saturated {
            report.note(note);
        }
        Ok(report)
    }

    /// On a grown log the server's subscriptions (the log sealer, the
    /// relay, notifications, agent triggers) start behind the generated
    /// events, as they never are on a server that was running when they
    /// were written: wait until each has caught up, so their first pass
    /// over the history is neither in the seeding nor in the figures.
    async fn wait_caught_up(&self) -> Result<()> {
        let waited = self.settle(Duration::from_secs(1800)).await?;
        println!(
            "the server's subscriptions caught up with the grown log in {:.0} s (not measured)",
            waited.as_secs_f64()
        );
        Ok(())
    }

    /// [`Self::settle`] after a write phase, for at most a minute; a
    /// backlog that outlasts it is reported, and the next phase runs
    /// with it.
    async fn between_phases(&self) {
        match self.settle(Duration::from_secs(60)).await {
            Ok(waited) if waited >= Duration::from_millis(100) => println!(
                "  the log's consumers caught up in {:.1} s (not measured)",
                waited.as_secs_f64()
            ),
            Ok(_) => {}
            Err(e) => println!("  the next phase starts with a backlog: {e:#}"),
        }
    }

    /// Waits until every subscription's checkpoint has reached the log's
    /// last event in read order `(tx_id, global_position)`, at most
    /// `limit`. Between phases: an open-loop write phase that ran above
    /// its saturation leaves the log's consumers (sealer, relay,
    /// notifications, triggers) working through its events, and the next
    /// phase would measure that backlog instead of its own endpoint.
    async fn settle(&self, limit: Duration) -> Result<Duration> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.database_url).await?;
        let started = Instant::now();
        loop {
            let (subscriptions, behind): (i64, i64) = sqlx::query_as(
                "WITH tail AS (SELECT tx_id::text::bigint AS tx, global_position AS pos
                                 FROM events ORDER BY tx_id DESC, global_position DESC LIMIT 1)
                 SELECT count(*),
                        count(*) FILTER (WHERE (c.last_tx, c.last_pos) < (t.tx, t.pos))
                   FROM checkpoints c LEFT JOIN tail t ON true",
            )
            .fetch_one(&mut conn)
            .await?;
            if subscriptions > 0 && behind == 0 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "{behind} of the server's {subscriptions} subscriptions did not catch up with the log in {} s",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        conn.close().await?;
        Ok(started.elapsed())
    }

    /// What autovacuum does after such a load, done before each run's
    /// figures so they do not depend on whether (or when) it ran: this
    /// machine's PostgreSQL runs with `autovacuum = off`, where tables that
    /// were never analysed get plans that scan a project's tasks for a
    /// lookup by id.
    async fn vacuum(&self) -> Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.database_url).await?;
        let started = Instant::now();
        sqlx::query("VACUUM (ANALYZE)").execute(&mut conn).await?;
        println!(
            "  VACUUM (ANALYZE) in {:.1} s (not measured)",
            started.elapsed().as_secs_f64()
        );
        conn.close().await?;
        Ok(())
    }

    async fn seed(&self, api: &Api) -> Result<Seeded> {
        let project = api
            .call(
                Method::POST,
                "/api/v1/projects",
                Some(&json!({ "name": "Bench" })),
            )
            .await?;
        let project_id = project["data"]["id"]
            .as_str()
            .context("project id in the response")?
            .to_owned();
        let statuses = api
            .call(
                Method::GET,
                &format!("/api/v1/projects/{project_id}/task-statuses"),
                None,
            )
            .await?;
        let status_id = statuses["data"]["items"]
            .get(1)
            .and_then(|s| s["id"].as_str())
            .context("the project has fewer than two task statuses")?
            .to_owned();

        let started = Instant::now();
        let ids = Rc::new(RefCell::new(vec![String::new(); self.tasks]));
        in_parallel(self.tasks, SEED_CONCURRENCY, {
            let api = api.clone();
            let ids = ids.clone();
            let path = format!("/api/v1/projects/{project_id}/tasks");
            move |i| {
                let api = api.clone();
                let ids = ids.clone();
                let path = path.clone();
                async move {
                    let body = json!({ "title": format!("task {i}"), "importance": i % 5 });
                    let task = api.call(Method::POST, &path, Some(&body)).await?;
                    ids.borrow_mut()[i] = task["data"]["id"]
                        .as_str()
                        .context("task id in the response")?
                        .to_owned();
                    Ok(())
                }
            }
        })
        .await?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "seeded {} tasks in {took:.1} s ({} tasks/s, {SEED_CONCURRENCY} concurrent requests)",
            number(self.tasks as f64),
            number(self.tasks as f64 / took),
        );
        let task_ids: Vec<String> = Rc::try_unwrap(ids)
            .map_err(|_| anyhow::anyhow!("seeding still running"))?
            .into_inner();

        let moved: Vec<String> = task_ids.iter().step_by(3).cloned().collect();
        let started = Instant::now();
        in_parallel(moved.len(), SEED_CONCURRENCY, {
            let api = api.clone();
            let moved = Rc::new(moved.clone());
            let project_id = project_id.clone();
            let body = json!({ "status_id": status_id });
            move |i| {
                let api = api.clone();
                let path = format!("/api/v1/projects/{project_id}/tasks/{}", moved[i]);
                let body = body.clone();
                async move {
                    api.call(Method::PATCH, &path, Some(&body)).await?;
                    Ok(())
                }
            }
        })
        .await?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "moved {} tasks (every 3rd) to the second status in {took:.1} s ({} req/s)",
            number(moved.len() as f64),
            number(moved.len() as f64 / took),
        );

        // The filtered page the load phase asks for: full, and filtered.
        let page = api
            .call(
                Method::GET,
                &format!(
                    "/api/v1/projects/{project_id}/tasks?status_id={status_id}&page_size={PAGE_SIZE}"
                ),
                None,
            )
            .await?;
        let items = page["data"]["items"]
            .as_array()
            .context("items in the task list")?;
        anyhow::ensure!(
            items.len() == PAGE_SIZE.min(moved.len()),
            "the filtered page has {} items, expected {}",
            items.len(),
            PAGE_SIZE.min(moved.len())
        );
        anyhow::ensure!(
            items.iter().all(|t| t["status_id"] == status_id.as_str()),
            "the filtered page has tasks of another status"
        );
        Ok(Seeded {
            project_id,
            status_id,
            in_status: moved.len(),
            task_ids,
        })
    }
}

struct Seeded {
    project_id: String,
    status_id: String,
    in_status: usize,
    task_ids: Vec<String>,
}

fn add_figures(report: &mut Report, name: &str, ours: &Phase, base: &Phase) {
    let p99_target = if name.starts_with("GET") {
        READ_P99_TARGET_MS
    } else {
        P99_TARGET_MS
    };
    report.add(
        &format!("{name} achieved"),
        "req/s",
        ours.achieved,
        base.achieved,
        None,
    );
    for (label, q, target) in [
        ("p50", 0.5, None),
        ("p99", 0.99, Some(Target::AtMost(p99_target))),
        ("p99.9", 0.999, None),
    ] {
        report.add(
            &format!("{name} {label}"),
            "ms",
            ms(&ours.latency, q),
            ms(&base.latency, q),
            target,
        );
    }
    report.add(
        &format!("{name} service p99"),
        "ms",
        ms(&ours.service, 0.99),
        ms(&base.service, 0.99),
        None,
    );
    report.add(
        &format!("{name} errors"),
        "count",
        ours.errors as f64,
        base.errors as f64,
        None,
    );
}

async fn wait_healthy(client: &Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let url = format!("{base}/api/healthz");
    loop {
        if let Ok(mut response) = client.get(&url).send().await
            && response.status() == StatusCode::OK
            && let Ok(body) = response.body().await
            && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["status"] == "ok")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("paca did not answer {url} with {{\"status\":\"ok\"}} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logs in as the admin; returns `Bearer <access token>` (the token comes
/// as the `access_token` cookie).
async fn login(client: &Client, base: &str, password: &str) -> Result<String> {
    let mut response = client
        .post(format!("{base}/api/v1/auth/login"))
        .send_json(&json!({ "username": "admin", "password": password }))
        .await
        .map_err(|e| anyhow::anyhow!("login: {e}"))?;
    let body = response.body().await.unwrap_or_default();
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "login: {} {}",
        response.status(),
        String::from_utf8_lossy(&body)
    );
    let token = response
        .headers()
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("access_token="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .filter(|t| !t.is_empty())
        .context("login: no access_token cookie")?;
    Ok(format!("Bearer {token}"))
}

// ----------------------------------------------------------------------------
// The server's own figures, from GET /metrics

/// One sample line: `name{labels} value`.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One scrape of `GET /metrics`.
struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Self { samples }
    }

    /// Sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
            .sum()
    }

    /// The `route` labels of the samples of `name` with this `method`.
    fn routes(&self, name: &str, method: &str) -> Vec<String> {
        let mut routes: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.label("method") == Some(method))
            .filter_map(|s| s.label("route").map(str::to_owned))
            .collect();
        routes.sort();
        routes.dedup();
        routes
    }

    fn rss_mb(&self) -> f64 {
        self.sum("paca_process_resident_memory_bytes", &[]) / (1 << 20) as f64
    }
}

/// `name{k="v",...} value` (labels optional); `None` for anything else.
fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Sample {
            name: series.to_owned(),
            labels: Vec::new(),
            value,
        });
    };
    let mut labels = Vec::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

async fn scrape(client: &Client, base: &str) -> Option<Scrape> {
    let mut response = client.get(format!("{base}/metrics")).send().await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body = response.body().limit(16 << 20).await.ok()?;
    Some(Scrape::parse(&String::from_utf8_lossy(&body)))
}

/// Scrapes around one load phase: before, halfway through, after.
struct Observer {
    client: Client,
    base: String,
    before: Option<Scrape>,
    halfway: tokio::task::JoinHandle<Option<Scrape>>,
}

/// What the server said about one phase.
struct ServerSide {
    /// Route pattern and PostgreSQL round trips per request.
    round_trips: Option<(String, f64)>,
    rss_before_mb: Option<f64>,
    rss_under_load_mb: Option<f64>,
}

impl Observer {
    /// Scrapes now, and schedules the halfway scrape.
    async fn start(client: &Client, base: &str, phase: Duration) -> Self {
        let before = scrape(client, base).await;
        let halfway = {
            let client = client.clone();
            let base = base.to_owned();
            let wait = WARM_UP + phase / 2;
            tokio::task::spawn_local(async move {
                tokio::time::sleep(wait).await;
                scrape(&client, &base).await
            })
        };
        Self {
            client: client.clone(),
            base: base.to_owned(),
            before,
            halfway,
        }
    }

    async fn finish(self, method: &str) -> ServerSide {
        let halfway = self.halfway.await.ok().flatten();
        let after = scrape(&self.client, &self.base).await;
        let round_trips = match (&self.before, &after) {
            (Some(before), Some(after)) => round_trips(before, after, method),
            _ => None,
        };
        ServerSide {
            round_trips,
            rss_before_mb: self.before.as_ref().map(Scrape::rss_mb),
            rss_under_load_mb: halfway.as_ref().map(Scrape::rss_mb),
        }
    }
}

/// The route of `method` whose request count grew most between the two
/// scrapes (the phase's own), and its round trips per request.
fn round_trips(before: &Scrape, after: &Scrape, method: &str) -> Option<(String, f64)> {
    const COUNT: &str = "paca_http_db_queries_count";
    const SUM: &str = "paca_http_db_queries_sum";
    let delta = |name: &str, route: &str| {
        let labels = [("method", method), ("route", route)];
        after.sum(name, &labels) - before.sum(name, &labels)
    };
    let (route, requests) = after
        .routes(COUNT, method)
        .into_iter()
        .map(|route| {
            let n = delta(COUNT, &route);
            (route, n)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (requests > 0.0).then(|| {
        let per_request = delta(SUM, &route) / requests;
        (route, per_request)
    })
}

impl ServerSide {
    fn print(&self, name: &str) {
        let trips = match &self.round_trips {
            Some((route, n)) => format!("{n:.2} db round trips/request ({route})"),
            None => "db round trips: n/a".to_owned(),
        };
        let mb = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} MB"));
        println!(
            "  {:<18} {trips}; server RSS {} before, {} under load",
            name,
            mb(self.rss_before_mb),
            mb(self.rss_under_load_mb)
        );
    }
}

fn add_server_figures(report: &mut Report, healthz: &ServerSide, phases: &[(&str, &ServerSide)]) {
    let base_trips = healthz.round_trips.as_ref().map_or(f64::NAN, |(_, n)| *n);
    for (name, phase) in phases {
        let target = (*name == "PATCH task").then_some(Target::AtMost(PATCH_ROUND_TRIPS_TARGET));
        report.add(
            &format!("{name} db round trips"),
            "/req",
            phase.round_trips.as_ref().map_or(f64::NAN, |(_, n)| *n),
            base_trips,
            target,
        );
    }
    let idle = healthz.rss_before_mb.unwrap_or(f64::NAN);
    let under_load = std::iter::once(healthz)
        .chain(phases.iter().map(|(_, p)| *p))
        .filter_map(|p| p.rss_under_load_mb)
        .fold(f64::NAN, f64::max);
    report.add(
        "server RSS idle",
        "MB",
        idle,
        f64::NAN,
        Some(Target::AtMost(IDLE_RSS_TARGET_MB)),
    );
    report.add("server RSS under load", "MB", under_load, idle, None);
}

// ----------------------------------------------------------------------------
// What counting round trips costs

/// Statements logged per sample of the overhead measurement.
const OVERHEAD_STATEMENTS: u32 = 100_000;
const OVERHEAD_ROUNDS: usize = 5;
const RECORD_CALLS: u32 = 100_000;

/// CPU cost of the server's round-trip counting, measured in this process.
struct Overhead {
    /// CPU of sqlx's per-statement logger without / with the counting
    /// layer, µs per statement.
    plain_us: f64,
    counted_us: f64,
    /// CPU of the per-request metrics (`record_request`), µs.
    record_us: f64,
}

impl Overhead {
    fn describe(&self) -> String {
        format!(
            "round-trip counting cost (in process, CPU, median of {OVERHEAD_ROUNDS} x {} statements of {STATEMENT_CHARS} characters through sqlx's statement logger): \
             {:.3} µs per statement without the counting layer, {:.3} µs with it (+{:.3} µs); request metrics {:.3} µs per request",
            number(f64::from(OVERHEAD_STATEMENTS)),
            self.plain_us,
            self.counted_us,
            self.counted_us - self.plain_us,
            self.record_us
        )
    }
}

/// This thread's CPU time, ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("read /proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parse /proc/thread-self/schedstat")
}

/// Length of the statement the overhead measurement logs (the server's
/// statements are of this order; the logger copies the text).
const STATEMENT_CHARS: usize = 400;

/// What counting adds to a statement: sqlx's statement logger (the code
/// that runs when a statement finishes, at the server's settings) under the
/// server's log layer alone and with the counting layer beside it, inside
/// a request's counting scope. No database: its round trip is the same
/// either way and would only add noise. Runs on this (blocking) thread so
/// that thread's CPU time is the cost.
fn counting_overhead() -> Result<Overhead> {
    use sqlx::SqlSafeStr;
    use sqlx_core::connection::LogSettings;
    use sqlx_core::logger::QueryLogger;
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::prelude::*;

    let log = || {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
    };
    let plain = tracing::Dispatch::new(tracing_subscriber::registry().with(log()));
    let counted = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(log())
            .with(gateways::metrics::db_round_trips()),
    );
    let mut statement = "SELECT".to_owned();
    for i in 0.. {
        if statement.len() >= STATEMENT_CHARS {
            break;
        }
        statement.push_str(&format!(" ${i}::text AS column_{i},"));
    }
    statement.truncate(STATEMENT_CHARS);
    let sql = sqlx::AssertSqlSafe(statement).into_sql_str();
    // The server's settings (src/main.rs).
    let mut settings = LogSettings::default();
    settings.log_statements(log::LevelFilter::Trace);
    settings.log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (mut plain_us, mut counted_us) = (Vec::new(), Vec::new());
        for round in 0..=OVERHEAD_ROUNDS {
            for (dispatch, out) in [(&plain, &mut plain_us), (&counted, &mut counted_us)] {
                let started = thread_cpu_ns()?;
                let (_, n) = gateways::metrics::counting_round_trips(
                    async {
                        for _ in 0..OVERHEAD_STATEMENTS {
                            drop(QueryLogger::new(sql.clone(), settings.clone()));
                        }
                    }
                    .with_subscriber(dispatch.clone()),
                )
                .await;
                let cpu = thread_cpu_ns()? - started;
                anyhow::ensure!(
                    n == 0 || n == u64::from(OVERHEAD_STATEMENTS),
                    "counted {n} of {OVERHEAD_STATEMENTS} statements"
                );
                // Round 0 warms up (allocator, callsite registration).
                if round > 0 {
                    out.push(cpu as f64 / 1e3 / f64::from(OVERHEAD_STATEMENTS));
                }
            }
        }

        gateways::metrics::install();
        let route = "/api/v1/projects/{project_id}/tasks/{task_id}";
        let started = thread_cpu_ns()?;
        for _ in 0..RECORD_CALLS {
            gateways::metrics::record_request(
                &Method::PATCH,
                Some(route.to_owned()),
                200,
                Duration::from_micros(1500),
                13,
            );
        }
        let record_us = (thread_cpu_ns()? - started) as f64 / 1e3 / f64::from(RECORD_CALLS);
        Ok(Overhead {
            plain_us: crate::report::median(&plain_us),
            counted_us: crate::report::median(&counted_us),
            record_us,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_samples() {
        let text = "# HELP x y\n\
            paca_http_db_queries_sum{method=\"PATCH\",route=\"/api/v1/projects/{project_id}/tasks/{task_id}\"} 65\n\
            paca_http_db_queries_count{method=\"PATCH\",route=\"/api/v1/projects/{project_id}/tasks/{task_id}\"} 5\n\
            odd{a=\"x\\\"y,z\"} 1.5\n\
            paca_process_resident_memory_bytes 73400320\n";
        let scrape = Scrape::parse(text);
        assert_eq!(scrape.samples.len(), 4);
        let route = "/api/v1/projects/{project_id}/tasks/{task_id}";
        assert_eq!(
            scrape.routes("paca_http_db_queries_count", "PATCH"),
            [route]
        );
        assert_eq!(
            scrape.sum(
                "paca_http_db_queries_sum",
                &[("method", "PATCH"), ("route", route)]
            ),
            65.0
        );
        assert_eq!(scrape.sum("odd", &[("a", "x\"y,z")]), 1.5);
        assert_eq!(scrape.rss_mb(), 70.0);
        let before = Scrape::parse("");
        let (r, per_request) = round_trips(&before, &scrape, "PATCH").unwrap();
        assert_eq!((r.as_str(), per_request), (route, 13.0));
    }
}
