//! `agents`: the agent runner against a real Docker API (DOCKER_HOST or
//! DOCKER_SOCKET) with the stand-in agent-server image (AGENT_SERVER_IMAGE,
//! see tests/agent-sandbox/podman.sh).
//!
//! Per run:
//! 1. baseline: bare sandbox start: create + start the same image and poll
//!    its `/ready` until it answers, then remove it (the runner's own
//!    container code, no conversation);
//! 2. ours: `--tasks` chat conversations committed at once (trigger in the
//!    outbox), consumed by the in-process runner (outbox relay -> local
//!    queue -> runner, fixed `WORKER_CONCURRENCY`); per conversation the
//!    overhead from `conversation.started` to its first agent event (create
//!    container -> ready -> create conversation -> message -> run -> first
//!    event recorded), and triggers/s from the first commit to the last
//!    `running`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_runner::agent_server::AgentServer;
use agent_runner::bus::{self, Bus, LocalQueue};
use agent_runner::runner::{self, RunnerConfig, Source};
use agent_runner::sandbox::{self, PortPool, SandboxSpec};
use anyhow::{Context, Result};
use commands::{AuthConfig, Commands};
use eventstore::{EventStore, Metadata};
use uuid::Uuid;

use crate::Settings;
use crate::db::ScratchDb;
use crate::report::{Report, median};

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    // reqwest (the agent-server client) is built without a default TLS
    // provider; the server binary installs this one at start-up.
    gateways::install_tls_provider();
    let endpoint = sandbox::docker_endpoint().context(
        "bench agents needs DOCKER_HOST or DOCKER_SOCKET (tests/agent-sandbox/podman.sh)",
    )?;
    let docker = sandbox::connect(&endpoint)?;
    docker
        .ping()
        .await
        .context("the Docker API does not answer")?;
    let mut config = RunnerConfig::from_env();
    anyhow::ensure!(
        std::env::var("AGENT_SERVER_IMAGE").is_ok(),
        "set AGENT_SERVER_IMAGE (the stand-in image of tests/agent-sandbox/podman.sh)"
    );
    config.port_pool_start = 13000;
    config.port_pool_size = 64;
    let conversations = settings.tasks.clamp(1, 64) as usize;

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
    let meta = Metadata::system("bench");
    let project_id = commands
        .create_project(
            &meta,
            Uuid::now_v7(),
            commands::projects::NewProject {
                name: "Agents bench".into(),
                description: String::new(),
                task_id_prefix: None,
                is_public: false,
                settings: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("project: {e}"))?;
    let project = commands
        .load_typed::<domain::project::ProjectEvent, domain::project::Project>(
            project_id,
            domain::project::Project::evolve,
        )
        .await
        .map_err(|e| anyhow::anyhow!("project: {e}"))?
        .state;
    let editor_role = project
        .roles
        .iter()
        .find(|(_, r)| r.name == "Editor")
        .map(|(id, _)| *id)
        .context("the seeded Editor role")?;
    let (agent_id, _) = commands
        .create_agent(
            &meta,
            project_id,
            commands::agents::NewAgent {
                handle: "bench-bot".into(),
                project_role_id: editor_role,
                settings: domain::agent::SettingsInput {
                    name: Some("Bench Bot".into()),
                    llm_provider: Some("openai".into()),
                    llm_model: Some("stand-in".into()),
                    ..Default::default()
                },
                llm_api_key: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("agent: {e}"))?;

    // The runner, in-process on the local queue.
    let queue = LocalQueue::new();
    let (shutdown, watcher) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(bus::relay(
        store.clone(),
        Bus::Local(queue.clone()),
        watcher.clone(),
    ));
    let runner_task = tokio::spawn(runner::run(
        commands.clone(),
        docker.clone(),
        config.clone(),
        Source::Local {
            queue,
            store: store.clone(),
        },
        watcher,
    ));

    let mut report = Report::new(format!(
        "agents: {conversations} conversations, WORKER_CONCURRENCY={}, image {}",
        config.concurrency, config.image
    ));
    report.note(format!("Docker API {endpoint}"));
    report.note("ours = conversation.started -> first agent event (container create, ready, create conversation, message, run, first event); baseline = bare container create+start -> /ready of the same image");
    report.note("triggers/s = conversations / (first trigger commit -> last conversation.started); its baseline column is containers/s started one after another");
    let ports = PortPool::new(14000, 16);
    for _ in 0..settings.runs {
        // Baseline: bare starts, one after another.
        let mut bare = Vec::new();
        let bare_started = Instant::now();
        for _ in 0..conversations.min(8) {
            let port = ports.take().context("no free port for the baseline")?;
            let key = sandbox::random_hex(16);
            let spec = SandboxSpec {
                conversation_id: Uuid::now_v7(),
                image: config.image.clone(),
                port,
                session_key: key.clone(),
                env: vec![],
            };
            let t0 = Instant::now();
            let id = sandbox::start(&docker, &spec).await?;
            let server = AgentServer::new(format!("http://{}:{port}", config.sandbox_host), key);
            let ready = server.wait_ready(config.ready_timeout).await;
            bare.push(t0.elapsed().as_secs_f64() * 1000.0);
            sandbox::remove(&docker, &id).await;
            ports.give_back(port);
            ready?;
        }
        let bare_rate = bare.len() as f64 / bare_started.elapsed().as_secs_f64();

        // Ours: all triggers committed at once.
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for i in 0..conversations {
            let (_, cid) = commands
                .start_chat(
                    &meta,
                    project_id,
                    agent_id,
                    format!("bench {i} scenario:success"),
                )
                .await
                .map_err(|e| anyhow::anyhow!("chat: {e}"))?;
            ids.push(cid);
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let mut settled = 0;
            for id in &ids {
                if matches!(commands.conversation_settled(*id).await, Ok(Some(s)) if s.is_settled())
                {
                    settled += 1;
                }
            }
            if settled == ids.len() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "conversations did not settle in 300 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed_total = t0.elapsed();
        // (conversation, created, started, first agent event) in epoch seconds.
        type Times = (Uuid, Option<f64>, Option<f64>, Option<f64>);
        let rows: Vec<Times> = sqlx::query_as(
            "SELECT stream_id,
                    EXTRACT(EPOCH FROM MIN(recorded_at) FILTER (WHERE event_type = 'conversation.created'))::float8,
                    EXTRACT(EPOCH FROM MIN(recorded_at) FILTER (WHERE event_type = 'conversation.started'))::float8,
                    EXTRACT(EPOCH FROM MIN(recorded_at) FILTER (WHERE event_type = 'conversation.agent_event'))::float8
             FROM events WHERE stream_id = ANY($1) GROUP BY stream_id",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await?;
        let mut overhead = Vec::new();
        let (mut first_commit, mut last_running) = (f64::MAX, 0f64);
        for (_, created, started, first) in rows {
            if let (Some(c), Some(s)) = (created, started) {
                first_commit = first_commit.min(c);
                last_running = last_running.max(s);
            }
            if let (Some(s), Some(f)) = (started, first) {
                overhead.push((f - s) * 1000.0);
            }
        }
        let rate = ids.len() as f64 / (last_running - first_commit).max(1e-3);
        report.add(
            "per-conversation overhead (median)",
            "ms",
            median(&overhead),
            median(&bare),
            None,
        );
        report.add("triggers/s to running", "/s", rate, bare_rate, None);
        report.note(format!(
            "run: {} conversations settled in {:.1} s",
            ids.len(),
            elapsed_total.as_secs_f64()
        ));
    }
    let _ = shutdown.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), runner_task).await;
    relay.abort();
    Ok(report)
}
