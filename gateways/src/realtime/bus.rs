//! The realtime bus: Valkey pub/sub channel `paca.events` (every node
//! subscribes, any node's relay publishes), or an in-process broadcast when
//! no `REDIS_URL` is set (one node).
//!
//! Pub/sub keeps nothing for a subscriber that is not connected, so a
//! publish only counts when every live node received it: each node that is
//! subscribed keeps a heartbeat in the sorted set `paca:realtime:nodes`,
//! and the publishing script returns, with each PUBLISH's receiver count,
//! how many nodes are registered. Fewer receivers than nodes (a node still
//! resubscribing after a Valkey restart, which also empties the registry:
//! the relay remembers the last node count for [`NODE_MEMORY`]) fails the
//! batch, and the relay retries it from its checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value as RValue};
use tokio::sync::{Mutex, broadcast, watch};
use uuid::Uuid;

use super::Message;

pub const CHANNEL: &str = "paca.events";
const NODES_KEY: &str = "paca:realtime:nodes";
/// A node's registration lives this long without a heartbeat.
const NODE_TTL: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node that vanished from the registry (a Valkey restart
/// empties it) is still waited for.
const NODE_MEMORY: Duration = Duration::from_secs(15);

/// Drops expired nodes, counts the live ones, publishes every message and
/// returns `{nodes, min receivers}`.
const PUBLISH_SCRIPT: &str = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) \
     local nodes = redis.call('ZCARD', KEYS[1]) local least = -1 \
     for i = 2, #ARGV do local n = redis.call('PUBLISH', KEYS[2], ARGV[i]) \
     if least < 0 or n < least then least = n end end return {nodes, least}";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("valkey: {0}")]
    Valkey(#[from] fred::error::Error),
    #[error("only {receivers} of {nodes} realtime nodes are subscribed to {CHANNEL}")]
    Missed { receivers: i64, nodes: i64 },
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Clone)]
pub enum Bus {
    Valkey(ValkeyBus),
    Local(broadcast::Sender<Arc<Message>>),
}

#[derive(Clone)]
pub struct ValkeyBus {
    url: String,
    publisher: Client,
    /// (highest node count seen, when) for [`NODE_MEMORY`].
    seen: Arc<Mutex<(i64, Instant)>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fred client that reconnects forever, with commands failing after a
/// few seconds instead of waiting for Valkey indefinitely.
pub async fn connect(url: &str, broadcast_capacity: usize) -> Result<Client, BusError> {
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_secs(2);
            p.broadcast_channel_capacity = broadcast_capacity;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 200))
        .build()?;
    client.init().await?;
    Ok(client)
}

impl Bus {
    pub fn local() -> Self {
        let (tx, _) = broadcast::channel(65_536);
        Bus::Local(tx)
    }

    pub async fn valkey(url: &str) -> Result<Self, BusError> {
        Ok(Bus::Valkey(ValkeyBus {
            url: url.to_owned(),
            publisher: connect(url, 32).await?,
            seen: Arc::new(Mutex::new((0, Instant::now()))),
        }))
    }

    /// Publishes a batch; an error means it must be published again.
    pub async fn publish(&self, batch: &[Message]) -> Result<(), BusError> {
        match self {
            Bus::Local(tx) => {
                for message in batch {
                    // No receiver (no gateway in this process) is fine.
                    let _ = tx.send(Arc::new(message.clone()));
                }
                Ok(())
            }
            Bus::Valkey(bus) => {
                let mut args: Vec<String> = Vec::with_capacity(batch.len() + 5);
                args.push(PUBLISH_SCRIPT.into());
                args.push("2".into());
                args.push(NODES_KEY.into());
                args.push(CHANNEL.into());
                args.push(now_ms().to_string());
                for message in batch {
                    args.push(serde_json::to_string(message)?);
                }
                // EVAL as a custom command: the workspace's fred has no
                // `i-scripts` interface.
                let (nodes, least): (i64, i64) = bus
                    .publisher
                    .custom(
                        CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false),
                        args,
                    )
                    .await?;
                let expected = {
                    let mut seen = bus.seen.lock().await;
                    if nodes >= seen.0 || seen.1.elapsed() > NODE_MEMORY {
                        *seen = (nodes, Instant::now());
                    }
                    seen.0.max(nodes)
                };
                if least < expected.max(1) {
                    return Err(BusError::Missed {
                        receivers: least,
                        nodes: expected,
                    });
                }
                Ok(())
            }
        }
    }

    /// Delivers every message on the bus to `deliver` until `shutdown`:
    /// for Valkey a dedicated subscriber connection that resubscribes and
    /// re-registers itself after every reconnect.
    pub async fn subscribe<F>(&self, deliver: F, mut shutdown: watch::Receiver<bool>)
    where
        F: Fn(Message) + Send + Sync + 'static,
    {
        match self {
            Bus::Local(tx) => {
                let mut rx = tx.subscribe();
                loop {
                    tokio::select! {
                        received = rx.recv() => match received {
                            Ok(message) => deliver((*message).clone()),
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "realtime fan-out fell behind");
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        _ = shutdown.changed() => return,
                    }
                }
            }
            Bus::Valkey(bus) => {
                let subscriber = loop {
                    match connect(&bus.url, 65_536).await {
                        Ok(client) => break client,
                        Err(error) => {
                            tracing::warn!(%error, "realtime subscriber cannot reach Valkey; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                };
                let node = Uuid::new_v4().to_string();
                let subscribed = Arc::new(AtomicBool::new(false));
                let mut messages = subscriber.message_rx();
                let mut reconnects = subscriber.reconnect_rx();
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                let mut pending_subscribe = true;
                loop {
                    if pending_subscribe {
                        match subscriber.subscribe(CHANNEL).await {
                            Ok(()) => {
                                pending_subscribe = false;
                                subscribed.store(true, Ordering::Release);
                                register(&bus.publisher, &node).await;
                                tracing::info!(channel = CHANNEL, "realtime subscribed");
                            }
                            Err(error) => {
                                tracing::warn!(%error, "realtime subscribe failed; retrying");
                            }
                        }
                    }
                    tokio::select! {
                        received = messages.recv() => match received {
                            Ok(message) => {
                                if let Some(text) = message.value.as_str()
                                    && let Ok(parsed) = serde_json::from_str::<Message>(&text)
                                {
                                    deliver(parsed);
                                } else {
                                    tracing::warn!("skipping a malformed message on {CHANNEL}");
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "realtime fan-out fell behind");
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        _ = reconnects.recv() => {
                            // A new connection has no subscriptions.
                            subscribed.store(false, Ordering::Release);
                            pending_subscribe = true;
                        }
                        _ = heartbeat.tick() => {
                            if subscribed.load(Ordering::Acquire) {
                                register(&bus.publisher, &node).await;
                            } else {
                                pending_subscribe = true;
                            }
                        }
                        _ = shutdown.changed() => {
                            let _: Result<RValue, _> = bus.publisher.zrem(NODES_KEY, node.as_str()).await;
                            let _ = subscriber.quit().await;
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Heartbeat: this node is subscribed until now + [`NODE_TTL`] (through
/// the command connection: a subscribed RESP2 connection takes no other
/// commands).
async fn register(client: &Client, node: &str) {
    let expires = now_ms() + NODE_TTL.as_millis() as i64;
    let result: Result<RValue, _> = client
        .zadd(NODES_KEY, None, None, false, false, (expires as f64, node))
        .await;
    if let Err(error) = result {
        tracing::warn!(%error, "realtime node heartbeat failed");
    }
}
