//! Event store benchmarks: the goals of shared/EVENT-STORE.md measured side
//! by side with a baseline taken in the same run on the same database.
//!
//! ```text
//! cargo run --release -p bench -- append    [--seconds 10] [--runs 3]
//! cargo run --release -p bench -- subscribe [--seconds 10] [--rate 10000] [--via-notify]
//! cargo run --release -p bench -- rebuild   [--events 1000000]
//! cargo run --release -p bench -- http      [--tasks 10000] [--rate 1000] [--seconds 10]
//! cargo run --release -p bench -- plugins   [--seconds 5] [--runs 3]
//! cargo run --release -p bench -- realtime  [--clients 1000] [--rate 20] [--seconds 10] [--redis-url ...]
//! cargo run --release -p bench -- agents    [--tasks 8] [--runs 3]   (DOCKER_HOST, AGENT_SERVER_IMAGE)
//! ```
//!
//! Each invocation creates a scratch database `paca_bench_<pid>`, applies the
//! migrations, and drops it at the end (also on error and on Ctrl-C).

mod agents;
mod append;
mod db;
mod http;
mod plugins;
mod realtime;
mod rebuild;
mod report;
mod saturation;
mod subscribe;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use db::ScratchDb;

#[derive(Parser, Debug)]
#[command(about = "Event store benchmarks (targets from EVENT-STORE.md)")]
struct Cli {
    /// Server to benchmark on; a scratch database is created there.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        global = true
    )]
    database_url: String,

    /// Repetitions; the figures printed are medians over the runs.
    #[arg(long, default_value_t = 3, global = true)]
    runs: usize,

    /// Duration of each timed phase (append, subscribe, http).
    #[arg(long, default_value_t = 10, global = true)]
    seconds: u64,

    /// subscribe: total appends per second, spread over 8 writers
    /// (default 10,000); http: requests per second per endpoint (default
    /// 1,000).
    #[arg(long, global = true)]
    rate: Option<u64>,

    /// http: tasks seeded through the API before measuring.
    #[arg(long, default_value_t = 10_000, global = true)]
    tasks: u64,

    /// subscribe: wake the subscriber only through LISTEN/NOTIFY (as a
    /// subscriber in another process would be) instead of the in-process
    /// commit signal.
    #[arg(long, global = true)]
    via_notify: bool,

    /// rebuild: number of events in the log; http with --history: events
    /// generated into the log before the server starts.
    #[arg(long, default_value_t = 1_000_000, global = true)]
    events: u64,

    /// http: start from a grown log. `--events` real domain events (as
    /// `rebuild` generates them: 10 per project, a user per 100 projects)
    /// are bulk-inserted and projected with `projections::rebuild` before
    /// the server starts, so the measured project shares the log and the
    /// read models with them (the issue's growth run).
    #[arg(long, global = true)]
    history: bool,

    /// realtime: connected Socket.IO clients.
    #[arg(long, default_value_t = 1_000, global = true)]
    clients: usize,

    /// realtime: the Valkey/Redis the server and the baseline use.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    redis_url: String,

    /// Keep the scratch database at the end (to inspect it).
    #[arg(long, global = true)]
    keep_db: bool,

    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Append throughput (1/8/16 writers, batched) and single-writer latency.
    Append,
    /// Commit-to-subscriber latency at a fixed append rate.
    Subscribe,
    /// Replaying a log of real domain events with `projections::rebuild`.
    Rebuild,
    /// All three, one after another.
    All,
    /// Latency of the release server over HTTP (PATCH a task, a filtered
    /// task list) against GET /api/healthz; not part of `all`.
    Http,
    /// A trivial WASM plugin route against the same native actix route,
    /// and HandleEvent delivery lag; not part of `all`.
    Plugins,
    /// Commit -> Socket.IO receipt latency with many clients, against raw
    /// Valkey PUBLISH -> SUBSCRIBE; not part of `all`.
    Realtime,
    /// The agent runner with the stand-in agent-server through a real
    /// Docker API: triggers/s to running and the per-conversation overhead
    /// against bare container starts; not part of `all`.
    Agents,
}

pub struct Settings {
    pub runs: usize,
    pub phase: Duration,
    pub rate: u64,
    pub via_notify: bool,
    pub events: u64,
    pub history: bool,
    pub tasks: u64,
    pub database_url: String,
    pub clients: usize,
    pub redis_url: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(cli.seconds >= 1, "--seconds must be at least 1");
    let settings = Settings {
        runs: cli.runs,
        phase: Duration::from_secs(cli.seconds),
        rate: cli
            .rate
            .unwrap_or(if cli.scenario == Scenario::Realtime {
                20
            } else if cli.scenario == Scenario::Http {
                1_000
            } else {
                10_000
            })
            .max(1),
        via_notify: cli.via_notify,
        events: cli.events.max(10),
        history: cli.history,
        tasks: cli.tasks,
        database_url: cli.database_url.clone(),
        clients: cli.clients.max(1),
        redis_url: cli.redis_url.clone(),
    };

    let scratch = ScratchDb::create(&cli.database_url).await?;
    println!(
        "scratch database {} on {}",
        scratch.name,
        scratch.server_version().await?
    );
    let outcome = tokio::select! {
        outcome = run(cli.scenario, &scratch, &settings) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if cli.keep_db {
        println!("kept database {}", scratch.name);
    } else {
        scratch.drop_db().await?;
    }
    outcome
}

async fn run(scenario: Scenario, db: &ScratchDb, settings: &Settings) -> Result<()> {
    let all = scenario == Scenario::All;
    if all || scenario == Scenario::Append {
        append::run(db, settings).await?.print();
    }
    if all || scenario == Scenario::Subscribe {
        subscribe::run(db, settings).await?.print();
    }
    if all || scenario == Scenario::Rebuild {
        rebuild::run(db, settings).await?.print();
    }
    if scenario == Scenario::Http {
        http::run(db, settings).await?.print();
    }
    if scenario == Scenario::Agents {
        agents::run(db, settings).await?.print();
    }
    if scenario == Scenario::Plugins {
        plugins::run(db, settings).await?.print();
    }
    if scenario == Scenario::Realtime {
        realtime::run(db, settings, settings.clients, &settings.redis_url)
            .await?
            .print();
    }
    Ok(())
}
