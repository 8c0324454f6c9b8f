//! The runner: takes triggers from the intake, runs each conversation in
//! its own sandbox (docs/agents.md "The runner"), writes every agent event
//! and status change through the command handlers, and acknowledges a
//! trigger only once its conversation is settled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use commands::Commands;
use commands::conversations::{EVENTS_STREAM, TRIGGERS_STREAM, WORKER_GROUP};
use domain::conversation::{AgentServerEvent, ConversationCommand, Status};
use eventstore::{Actor, EventStore, Metadata};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value as RValue};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use crate::agent_server::{self, AgentServer, SKIPPED_KINDS};
use crate::bus::{Delivery, LocalQueue};
use crate::intake::{Intake, consumer_name};
use crate::sandbox::{self, PortPool, SandboxSpec};

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub image: String,
    pub port_pool_start: u16,
    pub port_pool_size: u16,
    pub concurrency: usize,
    /// Pending entries idle this long are taken over (a dead runner's).
    pub claim_idle: Duration,
    pub ready_timeout: Duration,
    /// Bound on the whole stop sequence (interrupt, reconcile, delete,
    /// container stop).
    pub stop_timeout: Duration,
    /// Host the sandboxes' published ports are reached on.
    pub sandbox_host: String,
    /// The Paca API as seen from inside a sandbox (the built-in MCP server).
    pub paca_api_url: String,
    pub agent_api_key: Option<String>,
    /// Length of one `timeout_minutes` minute (60 s; tests shorten it).
    pub minute: Duration,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    env_var(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl RunnerConfig {
    /// Seed page 19's ai-agent variables, plus the runner's own timing
    /// knobs (docs/agents.md).
    pub fn from_env() -> Self {
        Self {
            image: env_var("AGENT_SERVER_IMAGE")
                .unwrap_or_else(|| "ghcr.io/openhands/agent-server:latest-python".into()),
            port_pool_start: env_num("PORT_POOL_START", 10000),
            port_pool_size: env_num("PORT_POOL_SIZE", 100),
            concurrency: env_num("WORKER_CONCURRENCY", 4usize).max(1),
            claim_idle: Duration::from_secs_f64(env_num("AGENT_CLAIM_IDLE_SECS", 60.0f64).max(0.5)),
            ready_timeout: Duration::from_secs_f64(
                env_num("AGENT_READY_TIMEOUT_SECS", 120.0f64).max(1.0),
            ),
            stop_timeout: Duration::from_secs_f64(
                env_num("AGENT_STOP_TIMEOUT_SECS", 20.0f64).max(2.0),
            ),
            sandbox_host: env_var("AGENT_SANDBOX_HOST").unwrap_or_else(|| "127.0.0.1".into()),
            paca_api_url: env_var("PACA_API_URL").unwrap_or_else(|| {
                format!(
                    "http://host.containers.internal:{}",
                    env_var("PORT").unwrap_or_else(|| "3000".into())
                )
            }),
            agent_api_key: env_var("AGENT_API_KEY"),
            minute: Duration::from_secs_f64(env_num("PACA_TEST_MINUTE_SECS", 60.0f64).max(0.1)),
        }
    }
}

/// Where triggers come from.
pub enum Source {
    /// `read` is dedicated to the blocking XREADGROUP; `control` serves
    /// XACK / XCLAIM / XADD for the conversation tasks.
    Valkey { read: Intake, control: Arc<Intake> },
    Local {
        queue: LocalQueue,
        store: EventStore,
    },
}

#[derive(Clone)]
enum Acker {
    Valkey(Arc<Intake>),
    Local(LocalQueue, EventStore),
}

impl Acker {
    async fn ack(&self, id: &str) {
        let result = match self {
            Acker::Valkey(intake) => intake.ack(id).await,
            Acker::Local(queue, store) => queue.ack(store, id).await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, entry = id, "cannot acknowledge a trigger");
        }
    }

    async fn touch(&self, id: &str) {
        if let Acker::Valkey(intake) = self
            && let Err(error) = intake.touch(id).await
        {
            tracing::warn!(%error, entry = id, "cannot keep a trigger claimed");
        }
    }

    fn client(&self) -> Option<Client> {
        match self {
            Acker::Valkey(intake) => Some(intake.client().clone()),
            Acker::Local(..) => None,
        }
    }
}

struct Shared {
    commands: Commands,
    docker: Docker,
    config: RunnerConfig,
    ports: PortPool,
    acker: Acker,
    worker: String,
    /// Conversations running here -> their stop signal.
    running: Mutex<HashMap<Uuid, watch::Sender<bool>>>,
}

fn meta(worker: &str) -> Metadata {
    Metadata {
        actor: Actor {
            kind: "system".into(),
            ..Actor::default()
        },
        source: "runner".into(),
        correlation_id: Some(worker.to_owned()),
        ..Metadata::default()
    }
}

/// Connects the Valkey intake (two dedicated clients).
pub async fn valkey_source(
    url: &str,
    claim_idle: Duration,
) -> Result<Source, crate::bus::BusError> {
    let consumer = consumer_name();
    let read = Intake::new(
        crate::bus::connect(url).await?,
        TRIGGERS_STREAM,
        WORKER_GROUP,
        consumer.clone(),
        claim_idle,
    )
    .await?;
    let control = Intake::new(
        crate::bus::connect(url).await?,
        TRIGGERS_STREAM,
        WORKER_GROUP,
        consumer,
        claim_idle,
    )
    .await?;
    Ok(Source::Valkey {
        read,
        control: Arc::new(control),
    })
}

/// Removes managed containers whose conversation is settled or unknown
/// (left by a runner that died); running ones may be another runner's.
pub async fn cleanup(commands: &Commands, docker: &Docker) -> Result<usize, sandbox::SandboxError> {
    let mut removed = 0;
    for (id, conversation) in sandbox::managed(docker).await? {
        let settled = match conversation {
            None => true,
            Some(c) => match commands.conversation_settled(c).await {
                Ok(None) => true,
                Ok(Some(status)) => status.is_settled(),
                Err(error) => {
                    tracing::warn!(%error, conversation = %c, "cannot read a conversation; keeping its sandbox");
                    false
                }
            },
        };
        if settled {
            sandbox::remove(docker, &id).await;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Runs until `shutdown`: intake, one task per conversation.
pub async fn run(
    commands: Commands,
    docker: Docker,
    config: RunnerConfig,
    source: Source,
    mut shutdown: watch::Receiver<bool>,
) {
    match cleanup(&commands, &docker).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed sandboxes of settled conversations"),
        Err(error) => tracing::warn!(%error, "cannot list managed sandboxes"),
    }
    let acker = match &source {
        Source::Valkey { control, .. } => Acker::Valkey(control.clone()),
        Source::Local { queue, store } => Acker::Local(queue.clone(), store.clone()),
    };
    let worker = consumer_name();
    let shared = Arc::new(Shared {
        commands,
        docker,
        ports: PortPool::new(config.port_pool_start, config.port_pool_size),
        config: config.clone(),
        acker,
        worker: worker.clone(),
        running: Mutex::new(HashMap::new()),
    });
    tracing::info!(worker = %worker, image = %config.image, concurrency = config.concurrency, "agent runner started");
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Wait for a free slot (or shutdown) before reading more.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let free = slots.available_permits() + 1;
        let batch = tokio::select! {
            b = next_batch(&source, free) => b,
            _ = shutdown.changed() => break,
        };
        drop(permit);
        let deliveries = match batch {
            Ok(d) => {
                failures = 0;
                d
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%error, "agent trigger intake failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        for delivery in deliveries {
            let kind = delivery.fields.get("type").cloned().unwrap_or_default();
            let Some(conversation_id) = delivery
                .fields
                .get("conversation_id")
                .and_then(|c| c.parse::<Uuid>().ok())
            else {
                tracing::warn!(entry = %delivery.id, "trigger without a conversation id; acknowledged");
                shared.acker.ack(&delivery.id).await;
                continue;
            };
            if matches!(
                kind.as_str(),
                "agent.stop" | "agent.pause" | "agent.heartbeat"
            ) {
                if kind != "agent.heartbeat"
                    && let Some(stop) = shared
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&conversation_id)
                {
                    let _ = stop.send(true);
                }
                shared.acker.ack(&delivery.id).await;
                continue;
            }
            // A reclaimed entry of a conversation this runner is running.
            if shared
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&conversation_id)
            {
                continue;
            }
            let permit = match slots.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            };
            let shared = shared.clone();
            let (stop_tx, stop_rx) = watch::channel(false);
            shared
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(conversation_id, stop_tx);
            tasks.spawn(async move {
                let entry = delivery.id.clone();
                let settled = conversation(&shared, conversation_id, &entry, stop_rx).await;
                shared
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&conversation_id);
                if settled {
                    shared.acker.ack(&entry).await;
                }
                drop(permit);
            });
        }
    }
    // Shutdown: running conversations stay pending and are taken over by
    // the next runner; their tasks are dropped here.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn next_batch(source: &Source, count: usize) -> Result<Vec<Delivery>, crate::bus::BusError> {
    match source {
        Source::Valkey { read, .. } => read.next(count, Duration::from_secs(2)).await,
        Source::Local { queue, .. } => Ok(queue
            .next(Duration::from_secs(2))
            .await
            .into_iter()
            .collect()),
    }
}

/// How a run ended.
#[derive(Debug)]
enum End {
    /// The agent-server's final execution status.
    Server(String),
    /// The conversation was stopped (API or control message).
    Stopped,
    Timeout(i64),
}

/// Runs one conversation; true when it is settled (the trigger may be
/// acknowledged).
async fn conversation(
    shared: &Arc<Shared>,
    id: Uuid,
    entry: &str,
    stop: watch::Receiver<bool>,
) -> bool {
    let commands = &shared.commands;
    let meta = meta(&shared.worker);
    match commands.conversation_settled(id).await {
        Ok(None) => {
            tracing::warn!(conversation = %id, "trigger for an unknown conversation; acknowledged");
            return true;
        }
        Ok(Some(status)) if status.is_settled() => {
            tracing::info!(conversation = %id, status = status.as_str(), "conversation already settled; acknowledged");
            return true;
        }
        Ok(Some(_)) => {}
        Err(error) => {
            tracing::warn!(%error, conversation = %id, "cannot read the conversation; left pending");
            return false;
        }
    }
    if let Err(error) = commands
        .conversation_command(
            &meta,
            id,
            ConversationCommand::Start {
                worker: shared.worker.clone(),
            },
        )
        .await
    {
        // Stopped between the check and now: settled.
        tracing::info!(%error, conversation = %id, "conversation cannot start");
        return matches!(commands.conversation_settled(id).await, Ok(Some(s)) if s.is_settled());
    }
    // Keep the entry ours while the conversation runs.
    let toucher = {
        let acker = shared.acker.clone();
        let entry = entry.to_owned();
        let every = (shared.config.claim_idle / 3).max(Duration::from_millis(200));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                acker.touch(&entry).await;
            }
        })
    };
    let result = drive(shared, id, stop, &meta).await;
    toucher.abort();
    let outcome = match result {
        Ok(end) => finish(shared, id, &meta, end).await,
        Err(message) => {
            tracing::warn!(conversation = %id, error = %message, "conversation failed");
            command(
                shared,
                id,
                &meta,
                ConversationCommand::Fail {
                    error_message: message,
                },
            )
            .await
        }
    };
    match outcome {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, conversation = %id, "cannot record the end of a conversation; left pending");
            matches!(commands.conversation_settled(id).await, Ok(Some(s)) if s.is_settled())
        }
    }
}

/// A status command; a refusal because the conversation is already
/// terminal (stopped by the API meanwhile) is fine.
async fn command(
    shared: &Shared,
    id: Uuid,
    meta: &Metadata,
    command: ConversationCommand,
) -> Result<(), commands::CommandError> {
    match shared
        .commands
        .conversation_command(meta, id, command)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => match shared.commands.conversation_settled(id).await {
            Ok(Some(s)) if s.is_terminal() => Ok(()),
            _ => Err(error),
        },
    }
}

async fn finish(
    shared: &Shared,
    id: Uuid,
    meta: &Metadata,
    end: End,
) -> Result<(), commands::CommandError> {
    let chat = shared
        .commands
        .conversation_state(id)
        .await
        .map(|c| c.origin.trigger_type == "chat_message")
        .unwrap_or(false);
    let next = match end {
        End::Stopped => ConversationCommand::Stop,
        End::Timeout(minutes) => ConversationCommand::Fail {
            error_message: format!("timeout: the conversation ran longer than {minutes} minutes"),
        },
        End::Server(status) => match status.as_str() {
            "finished" | "idle" if chat => ConversationCommand::Pause,
            "finished" | "idle" => ConversationCommand::Finish,
            "paused" => ConversationCommand::Pause,
            other => ConversationCommand::Fail {
                error_message: other.to_owned(),
            },
        },
    };
    match next {
        // Stop is refused once terminal (the API wrote `stopped` already).
        ConversationCommand::Stop => {
            let _ = shared.commands.conversation_command(meta, id, next).await;
            Ok(())
        }
        next => command(shared, id, meta, next).await,
    }
}

/// The agent's per-trigger prompt field (seed page 12): a mention in a doc
/// comment uses `doc_comment_trigger_prompt`, one in a task comment the
/// task prompt.
fn trigger_prompt<'a>(
    settings: &'a domain::agent::AgentSettings,
    origin: &domain::conversation::Origin,
) -> Option<&'a String> {
    match origin.trigger_type.as_str() {
        "task_assigned" => Some(&settings.task_trigger_prompt),
        "comment_mention" if origin.doc_id.is_some() => Some(&settings.doc_comment_trigger_prompt),
        "comment_mention" => Some(&settings.task_trigger_prompt),
        "chat_message" => Some(&settings.chat_trigger_prompt),
        "description_write" => Some(&settings.description_write_trigger_prompt),
        _ => None,
    }
}

/// The agent's first message: the trigger's text, or the assigned task.
async fn initial_message(shared: &Shared, spec: &commands::conversations::RunSpec) -> String {
    let origin = &spec.conversation.origin;
    let prompt = spec
        .agent
        .settings
        .as_ref()
        .and_then(|settings| trigger_prompt(settings, origin))
        .cloned()
        .unwrap_or_default();
    let mut text = String::new();
    if let Some(message) = &origin.message {
        text.push_str(message);
    } else if let Some(task_id) = origin.task_id
        && let Ok(task) = shared
            .commands
            .load_typed::<domain::task::TaskEvent, domain::task::Task>(
                task_id,
                domain::task::Task::evolve,
            )
            .await
    {
        let task = task.state;
        text.push_str(&format!(
            "You have been assigned task #{} \"{}\" (id {task_id}).",
            task.task_number, task.fields.title
        ));
        if let Some(description) = &task.fields.description {
            text.push_str(&format!("\n\nDescription:\n{description}"));
        }
    }
    if text.is_empty() {
        text.push_str("Continue.");
    }
    if prompt.trim().is_empty() {
        text
    } else {
        format!("{prompt}\n\n{text}")
    }
}

/// The create-conversation payload (AGENT-SERVER.md §1): the agent's LLM
/// (its key decrypted here, in memory only), skills, MCP servers (its own
/// plus the built-in Paca server), and the system-prompt suffix.
async fn create_payload(
    shared: &Shared,
    id: Uuid,
    spec: &commands::conversations::RunSpec,
) -> Result<Value, String> {
    let agent = &spec.agent;
    let origin = &spec.conversation.origin;
    let settings = agent
        .settings
        .clone()
        .ok_or_else(|| "runner: the agent has no settings (deleted?)".to_owned())?;
    let secrets = shared
        .commands
        .agent_secrets(origin.agent_id)
        .await
        .map_err(|e| format!("secrets: {e}"))?;
    let model = match (&settings.llm_base_url, settings.llm_provider.trim()) {
        (Some(_), _) | (None, "") => format!("openai/{}", settings.llm_model),
        (None, provider) => format!("{provider}/{}", settings.llm_model),
    };
    let mut llm = json!({"model": model, "stream": true, "usage_id": "default"});
    if let Some(key) = &secrets.llm_api_key {
        llm["api_key"] = json!(key);
    }
    if let Some(base) = &settings.llm_base_url {
        llm["base_url"] = json!(base);
    }
    let mut skills: Vec<Value> = agent
        .skills
        .values()
        .filter(|s| s.is_enabled)
        .map(|s| {
            let trigger = if s.triggers.is_empty() {
                Value::Null
            } else {
                json!({"type": "keyword", "keywords": s.triggers})
            };
            json!({"name": s.skill_name, "content": s.skill_content, "trigger": trigger})
        })
        .collect();
    let trigger_prompt = trigger_prompt(&settings, origin).unwrap_or(&settings.system_prompt);
    if !trigger_prompt.trim().is_empty() {
        skills.push(json!({"name": format!("paca-{}", origin.trigger_type), "content": trigger_prompt, "trigger": null}));
    }
    let mut mcp = serde_json::Map::new();
    for (server_id, server) in agent.mcp_servers.iter().filter(|(_, s)| s.is_enabled) {
        let mut env = server.env.clone();
        if let Some(values) = secrets.mcp_env.get(server_id) {
            for (k, v) in values {
                env.insert(k.clone(), v.clone());
            }
        }
        let mut entry = json!({"env": env});
        if let Some(command) = &server.command {
            entry["command"] = json!(command);
            entry["args"] = json!(server.args);
        }
        if let Some(url) = &server.url {
            entry["url"] = json!(url);
            entry["transport"] = json!(server.transport);
        }
        mcp.insert(server.server_name.clone(), entry);
    }
    if let Some(key) = &shared.config.agent_api_key {
        mcp.insert(
            "paca".into(),
            paca_mcp_entry(
                &shared.config.paca_api_url,
                key,
                origin.agent_id,
                origin.project_id,
            ),
        );
    }
    let mut suffix = String::new();
    if !settings.system_prompt.trim().is_empty() {
        suffix.push_str(&settings.system_prompt);
        suffix.push_str("\n\n");
    }
    suffix.push_str(&format!(
        "## Current Project Context\nProject id: {}\nYou are the agent @{} (id {}).\n\n## Trigger Context\nTrigger: {}",
        origin.project_id, origin.agent_handle, origin.agent_id, origin.trigger_type
    ));
    if let Some(task) = origin.task_id {
        suffix.push_str(&format!("\nTask id: {task}"));
    }
    if let Some(doc) = origin.doc_id {
        suffix.push_str(&format!("\nDocument id: {doc}"));
    }
    if let Some(comment) = origin.comment_id {
        suffix.push_str(&format!("\nComment id: {comment}"));
    }
    let max_iterations = if settings.max_iterations > 0 {
        settings.max_iterations
    } else {
        50
    };
    Ok(json!({
        "conversation_id": id.to_string(),
        "agent": {
            "kind": "Agent",
            "llm": llm,
            "tools": [],
            "mcp_config": mcp,
            "agent_context": {"skills": skills, "system_message_suffix": suffix},
        },
        "workspace": {"kind": "LocalWorkspace", "working_dir": "/workspace"},
        "initial_message": null,
        "max_iterations": max_iterations,
        "stuck_detection": true,
        "tool_module_qualnames": {},
        "client_tools": [],
        "tags": {"paca_conversation_id": id.to_string()},
    }))
}

/// Records events (skip list applied) and forwards the new ones to
/// `paca:agent:events`. Returns the last ConversationErrorEvent seen.
async fn record(
    shared: &Shared,
    id: Uuid,
    project_id: Uuid,
    meta: &Metadata,
    events: &[Value],
    error: &mut Option<String>,
) {
    let mut batch = Vec::new();
    for event in events {
        let kind = event["kind"].as_str().unwrap_or_default();
        if kind == "ConversationErrorEvent" {
            *error = Some(format!(
                "{}: {}",
                event["code"].as_str().unwrap_or("error"),
                event["detail"].as_str().unwrap_or("")
            ));
        }
        if kind.is_empty() || SKIPPED_KINDS.contains(&kind) {
            continue;
        }
        let Some(sdk_id) = event["id"].as_str().filter(|s| !s.is_empty()) else {
            continue;
        };
        batch.push(AgentServerEvent {
            sdk_event_id: sdk_id.to_owned(),
            event_type: kind.to_owned(),
            event_source: event["source"].as_str().unwrap_or("agent").to_owned(),
            payload: event.clone(),
        });
    }
    if batch.is_empty() {
        return;
    }
    match shared.commands.record_agent_events(meta, id, batch).await {
        Ok(recorded) => {
            if let Some(client) = shared.acker.client() {
                for (index, event) in recorded {
                    let fields = vec![
                        "MAXLEN".to_owned(),
                        "~".to_owned(),
                        "100000".to_owned(),
                        "*".to_owned(),
                        "conversation_id".to_owned(),
                        id.to_string(),
                        "project_id".to_owned(),
                        project_id.to_string(),
                        "event_type".to_owned(),
                        event.event_type.clone(),
                        "event_source".to_owned(),
                        event.event_source.clone(),
                        "event_index".to_owned(),
                        index.to_string(),
                        "payload".to_owned(),
                        event.payload.to_string(),
                        "status".to_owned(),
                        "running".to_owned(),
                    ];
                    let mut args = vec![EVENTS_STREAM.to_owned()];
                    args.extend(fields);
                    let added: Result<RValue, _> = client
                        .custom(
                            CustomCommand::new_static("XADD", ClusterHash::FirstKey, false),
                            args,
                        )
                        .await;
                    if let Err(error) = added {
                        tracing::warn!(%error, "cannot XADD to paca:agent:events");
                    }
                    // Socket.IO rooms get `agent.<kind lowercased>` from the
                    // realtime relay, which reads the recorded event from the
                    // log (once, in log order); publishing here as well would
                    // deliver it twice.
                }
            }
        }
        Err(error) => {
            // The next reconcile brings them again (deduplicated).
            tracing::warn!(error = ?error, conversation = %id, "cannot record agent events");
        }
    }
}

/// Sandbox up -> conversation created -> message -> run -> follow.
async fn drive(
    shared: &Arc<Shared>,
    id: Uuid,
    stop: watch::Receiver<bool>,
    meta: &Metadata,
) -> Result<End, String> {
    let spec = shared
        .commands
        .run_spec(id)
        .await
        .map_err(|e| format!("runner: {e}"))?;
    let payload = create_payload(shared, id, &spec).await?;
    let message = initial_message(shared, &spec).await;
    let project_id = spec.conversation.origin.project_id;
    let timeout_minutes = spec
        .agent
        .settings
        .as_ref()
        .map(|s| s.timeout_minutes)
        .unwrap_or(0);
    let git_name = spec
        .agent
        .settings
        .as_ref()
        .map(|s| s.git_committer_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "paca-agent".into());
    let git_email = spec
        .agent
        .settings
        .as_ref()
        .map(|s| s.git_committer_email.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "280579135+paca-agent@users.noreply.github.com".into());
    let port = shared
        .ports
        .take()
        .ok_or_else(|| "sandbox: no free port in the pool".to_owned())?;
    let key = sandbox::random_hex(24);
    let sandbox_spec = SandboxSpec {
        conversation_id: id,
        image: shared.config.image.clone(),
        port,
        session_key: key.clone(),
        env: vec![
            ("GIT_AUTHOR_NAME".into(), git_name.clone()),
            ("GIT_AUTHOR_EMAIL".into(), git_email.clone()),
            ("GIT_COMMITTER_NAME".into(), git_name),
            ("GIT_COMMITTER_EMAIL".into(), git_email),
        ],
    };
    let container = match sandbox::start(&shared.docker, &sandbox_spec).await {
        Ok(c) => c,
        Err(error) => {
            shared.ports.give_back(port);
            return Err(format!("sandbox: {error}"));
        }
    };
    let server = AgentServer::new(format!("http://{}:{port}", shared.config.sandbox_host), key);
    let result = follow(
        shared,
        id,
        project_id,
        &server,
        &payload,
        &message,
        stop,
        meta,
        timeout_minutes,
    )
    .await;
    // Teardown, bounded: delete the conversation, stop the container.
    let teardown = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), server.delete(&id.to_string())).await;
    sandbox::stop_and_remove(&shared.docker, &container, Duration::from_secs(2)).await;
    tracing::info!(conversation = %id, teardown_ms = teardown.elapsed().as_millis() as u64, "sandbox removed");
    shared.ports.give_back(port);
    result
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    shared: &Arc<Shared>,
    id: Uuid,
    project_id: Uuid,
    server: &AgentServer,
    payload: &Value,
    message: &str,
    mut stop: watch::Receiver<bool>,
    meta: &Metadata,
    timeout_minutes: i64,
) -> Result<End, String> {
    let conv = id.to_string();
    let started = Instant::now();
    server
        .wait_ready(shared.config.ready_timeout)
        .await
        .map_err(|e| format!("sandbox: {e}"))?;
    tracing::debug!(conversation = %id, ready_ms = started.elapsed().as_millis() as u64, "sandbox ready");
    server
        .create(payload)
        .await
        .map_err(|e| format!("agent-server: {e}"))?;
    let mut socket = server.socket(&conv).await.ok();
    let mut error: Option<String> = None;
    // One reconcile pass before the run (a resumed conversation).
    if let Ok(events) = server.all_events(&conv).await {
        record(shared, id, project_id, meta, &events, &mut error).await;
    }
    server
        .send_message(&conv, message)
        .await
        .map_err(|e| format!("agent-server: {e}"))?;
    server
        .run(&conv)
        .await
        .map_err(|e| format!("agent-server: {e}"))?;
    let deadline =
        (timeout_minutes > 0).then(|| started + shared.config.minute * timeout_minutes as u32);
    tracing::debug!(conversation = %id, timeout_minutes, minute = ?shared.config.minute, "following the run");
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let mut reconcile_at = Instant::now() + Duration::from_secs(10);
    let mut check_stop = tokio::time::interval(Duration::from_millis(500));
    // Messages recorded before this run (a reclaimed conversation) were
    // delivered by the previous runner.
    let mut delivered = shared
        .commands
        .conversation_state(id)
        .await
        .map(|c| c.messages.len())
        .unwrap_or(0);
    let end = loop {
        let ws_event = async {
            match socket.as_mut() {
                Some(s) => agent_server::next_event(s).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = ws_event => match event {
                Some(event) => {
                    if event["kind"] == "ConversationStateUpdateEvent" {
                        let status = match event["key"].as_str() {
                            Some("execution_status") => event["value"].as_str().map(str::to_owned),
                            Some("full_state") => event["value"]["execution_status"].as_str().map(str::to_owned),
                            _ => None,
                        };
                        match status.as_deref() {
                            Some(s @ ("error" | "stuck")) => break End::Server(s.to_owned()),
                            Some(s @ ("finished" | "paused"))
                                if event["key"] == "full_state" => break End::Server(s.to_owned()),
                            // A per-field `finished` is a hint: confirm over REST.
                            Some("finished") => poll.reset_immediately(),
                            _ => {}
                        }
                    } else {
                        record(shared, id, project_id, meta, std::slice::from_ref(&event), &mut error).await;
                    }
                }
                None => {
                    tracing::info!(conversation = %id, "agent-server websocket closed; following over REST");
                    socket = None;
                }
            },
            _ = poll.tick() => {
                match server.status(&conv).await {
                    Ok(status) if matches!(status.as_str(), "finished" | "error" | "stuck" | "paused") => {
                        break End::Server(status);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(conversation = %id, error = %e, "status poll failed"),
                }
                // Without a socket every poll reconciles; with one, every 10 s.
                if socket.is_none() || Instant::now() >= reconcile_at {
                    reconcile_at = Instant::now() + Duration::from_secs(10);
                    if let Ok(events) = server.all_events(&conv).await {
                        record(shared, id, project_id, meta, &events, &mut error).await;
                    }
                }
                if let Some(deadline) = deadline && Instant::now() >= deadline {
                    break End::Timeout(timeout_minutes);
                }
            }
            _ = check_stop.tick() => {
                let Ok(state) = shared.commands.conversation_state(id).await else { continue };
                if state.status == Status::Stopped {
                    break End::Stopped;
                }
                // Follow-up messages (`POST …/messages`) not delivered yet.
                for (message_id, text) in state.messages.iter().skip(delivered) {
                    match server.send_message(&conv, text).await {
                        Ok(()) => {
                            delivered += 1;
                            let _ = server.run(&conv).await;
                        }
                        Err(e) => {
                            tracing::warn!(conversation = %id, %message_id, error = %e, "cannot deliver a message");
                            break;
                        }
                    }
                }
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    break End::Stopped;
                }
            }
        }
    };
    tracing::info!(conversation = %id, ?end, "run ended");
    if matches!(end, End::Stopped | End::Timeout(_)) {
        // Interrupt, then one last reconcile: bounded even when the sandbox
        // hangs (the container is stopped right after).
        let bound = shared.config.stop_timeout / 3;
        let _ = tokio::time::timeout(bound, server.interrupt(&conv)).await;
        if let Ok(Ok(events)) = tokio::time::timeout(bound, server.all_events(&conv)).await {
            record(shared, id, project_id, meta, &events, &mut error).await;
        }
        return Ok(end);
    }
    // Final reconcile: everything the server has, in order.
    if let Ok(events) = server.all_events(&conv).await {
        record(shared, id, project_id, meta, &events, &mut error).await;
    }
    Ok(match end {
        End::Server(status) if status == "error" || status == "stuck" => {
            return Err(
                error.unwrap_or_else(|| format!("{status}: the agent-server ended {status}"))
            );
        }
        end => end,
    })
}

/// The built-in Paca MCP server of every conversation: our own `/api/mcp`
/// over streamable HTTP, as the agent (agent key + `X-Agent-ID`) locked to
/// its project, so the sandbox needs no Node and no npm package (Paca runs
/// `npx -y @paca-ai/paca-mcp` with the same values as environment).
pub fn paca_mcp_entry(api_url: &str, agent_key: &str, agent_id: Uuid, project_id: Uuid) -> Value {
    json!({
        "url": format!("{}/api/mcp", api_url.trim_end_matches('/')),
        "transport": "http",
        "headers": {
            "X-API-Key": agent_key,
            "X-Agent-ID": agent_id.to_string(),
            "X-Project-ID": project_id.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_paca_server_is_our_own_api_mcp_as_the_agent() {
        let (agent, project) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let entry = paca_mcp_entry("http://paca:8080/", "agent-key", agent, project);
        assert_eq!(entry["url"], "http://paca:8080/api/mcp");
        assert_eq!(entry["transport"], "http");
        assert_eq!(entry["headers"]["X-API-Key"], "agent-key");
        assert_eq!(entry["headers"]["X-Agent-ID"], agent.to_string());
        assert_eq!(entry["headers"]["X-Project-ID"], project.to_string());
    }
}
