//! Wiring of the agent machinery into `paca serve`: the encryption key,
//! the trigger subscription, and the outbox relay to Valkey (or the
//! in-process queue).

use std::time::Duration;

use agent_runner::bus::{self, Bus, LocalQueue};
use agent_runner::runner::{self, RunnerConfig};
use agent_runner::sandbox;
use anyhow::{Context, Result};
use commands::Commands;
use commands::secrets::SecretBox;
use commands::triggers::{SUBSCRIPTION, TriggerHandler};
use eventstore::{EventStore, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, Config};

/// `ENCRYPTION_KEY` from the environment, else from `<data_dir>/encryption_key`
/// (generated, mode 0600, like `JWT_SECRET`). An invalid key disables agent
/// secrets with a warning (seed page 19).
pub fn secret_box(config: &Config) -> Result<Option<SecretBox>> {
    let (key, generated) = config::secret(
        config::ENCRYPTION_KEY,
        &config.data_dir,
        "encryption_key",
        || config::random_hex(32),
    )?;
    if generated {
        tracing::info!(
            path = %config.data_dir.join("encryption_key").display(),
            "generated ENCRYPTION_KEY for agent secrets"
        );
    }
    match SecretBox::from_hex(&key) {
        Ok(secrets) => Ok(Some(secrets)),
        Err(error) => {
            tracing::warn!(%error, "ENCRYPTION_KEY is invalid: agent LLM keys and MCP secrets cannot be stored or read");
            Ok(None)
        }
    }
}

/// The background tasks `serve` runs for agents, stopped on shutdown.
pub struct Background {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// A fresh trigger subscription starts at the log's current head: agents
/// react to what happens from now on, not to every assignment in history.
async fn init_checkpoint(store: &EventStore) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (name, last_tx, last_pos)
         SELECT $1, COALESCE(MAX(tx_id::text::bigint), 0), COALESCE(MAX(global_position), 0)
         FROM (SELECT tx_id, global_position FROM events
               WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
               ORDER BY tx_id DESC, global_position DESC LIMIT 1) head
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(SUBSCRIPTION)
    .execute(store.pool())
    .await
    .context("initialising the agent trigger checkpoint")?;
    Ok(())
}

/// The Docker API the runner uses, checked with a ping; `Err` says why
/// there is none (logged once by the caller).
pub async fn docker() -> std::result::Result<(String, bollard::Docker), String> {
    let Some(endpoint) = sandbox::docker_endpoint() else {
        return Err("neither DOCKER_HOST nor DOCKER_SOCKET is set".into());
    };
    let docker = sandbox::connect(&endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok((endpoint, docker)),
        Ok(Err(e)) => Err(format!("{endpoint} does not answer: {e}")),
        Err(_) => Err(format!("{endpoint} does not answer within 5 s")),
    }
}

/// `paca agent-runner`: the runner alone, on Valkey, until SIGINT/SIGTERM.
pub async fn run_standalone(config: &Config, store: &EventStore, commands: Commands) -> Result<()> {
    let url = config
        .redis_url
        .as_deref()
        .context("paca agent-runner needs REDIS_URL (the trigger stream)")?;
    let (endpoint, docker) = docker()
        .await
        .map_err(|why| anyhow::anyhow!("no Docker API: {why}"))?;
    let runner_config = RunnerConfig::from_env();
    let source = runner::valkey_source(url, runner_config.claim_idle)
        .await
        .with_context(|| format!("connecting to {} (REDIS_URL)", redact(url)))?;
    let _ = store;
    tracing::info!(docker = %endpoint, "agent runner using the Docker API");
    let (shutdown, watcher) = watch::channel(false);
    let task = tokio::spawn(runner::run(
        commands,
        docker,
        runner_config,
        source,
        watcher,
    ));
    crate::shutdown_signal().await;
    let _ = shutdown.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    Ok(())
}

pub async fn start(config: &Config, store: &EventStore, commands: &Commands) -> Result<Background> {
    let (shutdown, watcher) = watch::channel(false);
    let bus = match &config.redis_url {
        Some(url) => Bus::Valkey(
            bus::connect(url)
                .await
                .with_context(|| format!("connecting to {} (REDIS_URL)", redact(url)))?,
        ),
        None => {
            tracing::info!("no REDIS_URL: agent triggers use an in-process queue");
            Bus::Local(LocalQueue::new())
        }
    };
    init_checkpoint(store).await?;
    let mut tasks = Vec::new();
    let subscription = Subscription::new(
        SUBSCRIPTION,
        store.clone(),
        TriggerHandler::new(commands.clone()),
    )
    .stream_types(commands::triggers::stream_types())
    // Under a burst of writes, batches of ~20 ms instead of a read and a
    // transaction per commit; an isolated event is still handled at once.
    .coalesce(std::time::Duration::from_millis(20));
    let rx = watcher.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = subscription.run(rx).await {
            tracing::error!(%error, "agent trigger subscription stopped");
        }
    }));
    tasks.push(tokio::spawn(bus::relay(
        store.clone(),
        bus.clone(),
        watcher.clone(),
    )));
    // The in-process runner, when a Docker API answers (said once why not).
    let wanted = std::env::var("PACA_AGENT_RUNNER").unwrap_or_default();
    let available = if wanted.trim().eq_ignore_ascii_case("off") {
        Err("PACA_AGENT_RUNNER=off".to_owned())
    } else {
        docker().await
    };
    match available {
        Err(why) => tracing::info!("agent runner not started in-process: {why}"),
        Ok((endpoint, docker)) => {
            let runner_config = RunnerConfig::from_env();
            let source = match (&bus, &config.redis_url) {
                (Bus::Valkey(_), Some(url)) => runner::valkey_source(url, runner_config.claim_idle)
                    .await
                    .ok(),
                (Bus::Local(queue), _) => Some(runner::Source::Local {
                    queue: queue.clone(),
                    store: store.clone(),
                }),
                _ => None,
            };
            match source {
                None => {
                    tracing::warn!("agent runner not started: cannot connect its Valkey intake")
                }
                Some(source) => {
                    tracing::info!(docker = %endpoint, "agent runner started in-process");
                    tasks.push(tokio::spawn(runner::run(
                        commands.clone(),
                        docker,
                        runner_config,
                        source,
                        watcher.clone(),
                    )));
                }
            }
        }
    }
    Ok(Background { shutdown, tasks })
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
