//! Realtime delivery from the log (seed pages 04, 16, 17): the relay
//! subscription publishes `{type, payload}` messages on the bus; every node
//! subscribes to the bus and fans each message out to its own Socket.IO
//! rooms and GraphQL subscriptions.

pub mod bus;
pub mod listener;
pub mod recovery;
pub mod relay;
pub mod socketio;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use commands::Commands;
use eventstore::EventStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::SocketIo;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use bus::Bus;

/// One message on `paca.events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, alias = "data")]
    pub payload: Value,
    /// Stable per source event (relay retries re-send it); absent on
    /// messages from other publishers. Not sent to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The source event's log position (`<tx_id>.<global_position>`), sent
    /// to Socket.IO clients as the event's last argument: the offset
    /// connection-state recovery resumes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
}

impl Message {
    /// What clients receive: exactly `{type, payload}`.
    pub fn wire(&self) -> Value {
        serde_json::json!({ "type": self.kind, "payload": self.payload })
    }

    pub fn project_id(&self) -> Option<Uuid> {
        self.payload
            .get("project_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }

    pub fn recipient(&self) -> Option<Uuid> {
        self.payload
            .get("recipient_user_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }

    /// The room this message goes to (seed page 17's routing table), or
    /// `None` for a message no client may see.
    pub fn room(&self) -> Option<Room> {
        let t = self.kind.as_str();
        if t.starts_with("notification.") {
            return self.recipient().map(Room::Notifications);
        }
        let project = self.project_id()?;
        if t.starts_with("task.") || t.starts_with("agent.") || t.starts_with("github.") {
            Some(Room::Tasks(project))
        } else if t.starts_with("doc.") {
            Some(Room::Docs(project))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Tasks(Uuid),
    Docs(Uuid),
    Notifications(Uuid),
}

impl Room {
    pub fn name(&self) -> String {
        match self {
            Room::Tasks(p) => format!("project:{p}:tasks"),
            Room::Docs(p) => format!("project:{p}:docs"),
            Room::Notifications(u) => format!("user:{u}:notifications"),
        }
    }
}

/// Recently seen message ids (the relay may publish a batch twice).
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

const SEEN_CAPACITY: usize = 16_384;

impl Seen {
    fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// This node's delivery side: its Socket.IO server and the broadcast that
/// GraphQL subscriptions listen to. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    /// Keeps the handlers' weak reference alive as long as this hub.
    _commands: Arc<Commands>,
    pub io: SocketIo,
    pub svc: socketio::Service,
    /// Dropped sockets' sessions, for connection-state recovery.
    pub sessions: recovery::Sessions,
    events: broadcast::Sender<Arc<Message>>,
    seen: Arc<Mutex<Seen>>,
}

/// Re-checks open sockets' logins whenever the log may have changed (a
/// commit here, a NOTIFY from another node), at most every 200 ms, and at
/// least every 5 s. Ends with the hub (it holds the command side weakly).
fn spawn_session_sweeper(io: SocketIo, commands: std::sync::Weak<Commands>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(mut wakeups) = commands.upgrade().map(|c| c.store.wakeups()) else {
        return;
    };
    runtime.spawn(async move {
        loop {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), wakeups.changed()).await;
            let Some(commands) = commands.upgrade() else {
                return;
            };
            if commands.directory.sync().await.is_ok() {
                socketio::sweep(&io, &commands.directory);
            }
            drop(commands);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
}

impl Hub {
    pub fn new(commands: Commands) -> Self {
        let commands = Arc::new(commands);
        let (svc, io, sessions) = socketio::build(&commands);
        spawn_session_sweeper(io.clone(), Arc::downgrade(&commands));
        let (events, _) = broadcast::channel(65_536);
        Self {
            _commands: commands,
            io,
            svc,
            sessions,
            events,
            seen: Arc::new(Mutex::new(Seen {
                set: HashSet::new(),
                order: VecDeque::new(),
            })),
        }
    }

    /// Closes every socket (pending long-polls answer at once, so a
    /// graceful HTTP shutdown does not wait for them).
    pub async fn close(&self) {
        self.io.close().await;
    }

    /// Every message this node delivers, for GraphQL subscriptions.
    pub fn listen(&self) -> broadcast::Receiver<Arc<Message>> {
        self.events.subscribe()
    }

    /// Emits one bus message to its room (once per id). Awaited in bus
    /// order, so a client sees a task's events in the order of the log.
    pub async fn deliver(&self, message: Message) {
        if let Some(id) = &message.id {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !seen.first_time(id) {
                return;
            }
        }
        let Some(room) = message.room() else {
            tracing::debug!(kind = %message.kind, "realtime message with no room; dropped");
            return;
        };
        tracing::debug!(kind = %message.kind, room = %room.name(), "realtime deliver");
        let event = match room {
            Room::Notifications(_) => "notification",
            _ => "event",
        };
        // `of` rather than `to`: after `close()` (shutdown) the namespace
        // is gone and `to` would panic.
        if let Some(ns) = self.io.of("/") {
            let to = ns.to(room.name());
            let sent = match &message.offset {
                Some(offset) => to.emit(event, &(message.wire(), offset)).await,
                None => to.emit(event, &message.wire()).await,
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "socket.io emit failed");
            }
        }
        let _ = self.events.send(Arc::new(message));
    }
}

/// The realtime background tasks of `paca serve`.
pub struct Realtime {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Realtime {
    /// Starts the bus subscriber (fan-out into `hub`) and the relay.
    pub async fn start(
        store: &EventStore,
        commands: &Commands,
        hub: Hub,
        redis_url: Option<&str>,
    ) -> Result<Self, String> {
        let bus = match redis_url {
            Some(url) => {
                // Parked sessions in Valkey: a reconnect may land on any node.
                hub.sessions
                    .use_valkey(bus::connect(url, 16).await.map_err(|e| e.to_string())?);
                Bus::valkey(url).await.map_err(|e| e.to_string())?
            }
            None => {
                tracing::info!("no REDIS_URL: realtime events use an in-process bus (one node)");
                Bus::local()
            }
        };
        relay::init_checkpoint(store)
            .await
            .map_err(|e| format!("initialising the realtime checkpoint: {e}"))?;
        let (shutdown, watcher) = watch::channel(false);
        let mut tasks = Vec::new();
        let fanout = bus.clone();
        let rx = watcher.clone();
        let (to_hub, mut inbox) = tokio::sync::mpsc::unbounded_channel();
        tasks.push(tokio::spawn(async move {
            fanout
                .subscribe(
                    move |m| {
                        let _ = to_hub.send(m);
                    },
                    rx,
                )
                .await;
        }));
        tasks.push(tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                hub.deliver(message).await;
            }
        }));
        tasks.push(tokio::spawn(relay::run(
            store.clone(),
            bus,
            commands.directory.clone(),
            watcher,
        )));
        Ok(Self { shutdown, tasks })
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }
}
