//! Where trigger messages go: Valkey (`paca:agent:triggers`, consumer group
//! `ai-agent-workers`) through `fred`, or an in-process queue when no
//! `REDIS_URL` is set. The outbox relay moves `agent_outbox` rows there.
//!
//! Exactly once into Valkey: each outbox row's id is claimed in Valkey
//! (`SET paca:agent:outbox:<id> NX`) in the same Lua script that XADDs it,
//! so a relay that dies between XADD and deleting the row re-sends nothing
//! after a restart.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commands::conversations::{TRIGGERS_STREAM, WORKER_GROUP};
use domain::DomainEvent;
use domain::conversation::ConversationEvent;
use eventstore::EventStore;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value as RValue};
use serde_json::Value;
use sqlx::Row;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// How long an outbox id stays claimed in Valkey (a relay retry after
/// this would add the entry again; retries happen within seconds).
const DEDUP_TTL_SECS: u64 = 7 * 24 * 3600;

const PUBLISH_ONCE: &str = "if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then \
     return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2)) end return false";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("valkey: {0}")]
    Valkey(#[from] fred::error::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// One message for a worker: its bus id (a Valkey entry id, or the outbox
/// row id in-process) and its flat fields.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

/// The in-process queue: rows stay in the outbox until the runner
/// acknowledges them (so a crash re-delivers them on the next start).
#[derive(Clone)]
pub struct LocalQueue {
    sender: mpsc::UnboundedSender<Delivery>,
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Delivery>>>,
}

impl LocalQueue {
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            in_flight: Default::default(),
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
        }
    }

    pub async fn next(&self, wait: Duration) -> Option<Delivery> {
        let mut receiver = self.receiver.lock().await;
        tokio::time::timeout(wait, receiver.recv())
            .await
            .ok()
            .flatten()
    }

    /// Done with the message: delete its outbox row.
    pub async fn ack(&self, store: &EventStore, id: &str) -> Result<(), BusError> {
        if let Ok(id) = id.parse::<Uuid>() {
            sqlx::query("DELETE FROM agent_outbox WHERE id = $1")
                .bind(id)
                .execute(store.pool())
                .await?;
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        Ok(())
    }
}

impl Default for LocalQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub enum Bus {
    Valkey(Client),
    Local(LocalQueue),
}

/// A connected fred client for `url`.
pub async fn connect(url: &str) -> Result<Client, BusError> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
        })
        .build()?;
    client.init().await?;
    Ok(client)
}

/// `XGROUP CREATE paca:agent:triggers ai-agent-workers $ MKSTREAM`, once
/// (an existing group is fine).
pub async fn ensure_group(client: &Client, stream: &str, group: &str) -> Result<(), BusError> {
    let created: Result<RValue, _> = client
        .custom(
            CustomCommand::new_static("XGROUP", ClusterHash::FirstKey, false),
            vec!["CREATE", stream, group, "$", "MKSTREAM"],
        )
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Bus {
    /// Publishes one outbox row, at most once per id.
    async fn publish_once(
        &self,
        id: Uuid,
        stream: &str,
        fields: &[(String, String)],
    ) -> Result<bool, BusError> {
        match self {
            Bus::Valkey(client) => {
                let dedup = format!("paca:agent:outbox:{id}");
                let mut args: Vec<String> = vec![
                    PUBLISH_ONCE.into(),
                    "2".into(),
                    stream.into(),
                    dedup,
                    DEDUP_TTL_SECS.to_string(),
                ];
                for (k, v) in fields {
                    args.push(k.clone());
                    args.push(v.clone());
                }
                let added: RValue = client
                    .custom(
                        CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false),
                        args,
                    )
                    .await?;
                Ok(!matches!(added, RValue::Null | RValue::Boolean(false)))
            }
            Bus::Local(queue) => {
                let fresh = queue
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id);
                if fresh {
                    let _ = queue.sender.send(Delivery {
                        id: id.to_string(),
                        fields: fields.iter().cloned().collect(),
                    });
                }
                Ok(fresh)
            }
        }
    }
}

fn parse_fields(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            let pair = pair.as_array()?;
            Some((
                pair.first()?.as_str()?.to_owned(),
                pair.get(1)?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Test hooks, read once from the environment (documented in
/// docs/agents.md): `PACA_TEST_OUTBOX_HOLD=1` keeps the relay idle (rows
/// wait in the outbox), `PACA_TEST_CRASH_AFTER_XADD=1` aborts the process
/// right after the first XADD, before its row is deleted.
fn hook(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Moves outbox rows to the bus until `shutdown`. Woken by this process's
/// commits of conversation events (the only appends that write outbox
/// rows, in their own transaction); polls every 250 ms for rows written by
/// other processes. Waking on every commit cost a transaction per task
/// write under load.
pub async fn relay(store: EventStore, bus: Bus, mut shutdown: watch::Receiver<bool>) {
    if hook("PACA_TEST_OUTBOX_HOLD") {
        tracing::warn!("PACA_TEST_OUTBOX_HOLD=1: the agent outbox relay is idle");
        let _ = shutdown.wait_for(|s| *s).await;
        return;
    }
    let crash_after_xadd = hook("PACA_TEST_CRASH_AFTER_XADD");
    if let Bus::Valkey(client) = &bus {
        loop {
            match ensure_group(client, TRIGGERS_STREAM, WORKER_GROUP).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot create the agent trigger group; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
    let (signal, mut commits) = watch::channel(0u64);
    store.observe_commits(Arc::new(ConversationCommits(signal)));
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match relay_batch(&store, &bus, crash_after_xadd).await {
            Ok(0) => {
                failures = 0;
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(_) => failures = 0,
            Err(error) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
                tracing::warn!(%error, ?backoff, "agent outbox relay failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Bumps its signal when a commit holds a conversation event.
struct ConversationCommits(watch::Sender<u64>);

impl eventstore::CommitObserver for ConversationCommits {
    fn committed(&self, events: &[eventstore::RecordedEvent]) {
        if events
            .iter()
            .any(|e| e.stream_type == ConversationEvent::STREAM_TYPE)
        {
            self.0.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// One batch: lock up to 100 rows (other relays skip them), publish each,
/// delete what Valkey now holds, commit.
pub async fn relay_batch(
    store: &EventStore,
    bus: &Bus,
    crash_after_xadd: bool,
) -> Result<usize, BusError> {
    let mut tx = store.pool().begin().await?;
    let rows = sqlx::query(
        "SELECT id, stream, fields FROM agent_outbox ORDER BY created_at, id
         LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut moved = 0;
    for row in &rows {
        let id: Uuid = row.get("id");
        let stream: String = row.get("stream");
        let fields = parse_fields(&row.get::<Value, _>("fields"));
        let fresh = bus.publish_once(id, &stream, &fields).await?;
        if crash_after_xadd {
            tracing::error!(%id, "PACA_TEST_CRASH_AFTER_XADD=1: aborting after XADD");
            std::process::abort();
        }
        if matches!(bus, Bus::Valkey(_)) {
            sqlx::query("DELETE FROM agent_outbox WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if fresh {
            moved += 1;
        }
    }
    tx.commit().await?;
    Ok(if matches!(bus, Bus::Valkey(_)) {
        rows.len()
    } else {
        moved
    })
}
