//! Socket.IO connection-state recovery (seed page 17: a 2-minute window),
//! served from the event log.
//!
//! The client half is socket.io-client's own: the CONNECT packet gives it a
//! private session id (`pid`, through the patched socketioxide, see
//! vendor/README.md), it remembers the last string argument of every event
//! as its offset, and its reconnect sends `{pid, offset}` in the auth data.
//! Here an offset is the log position (`<tx_id>.<global_position>`) of the
//! event a message came from. A socket that dropped (transport closed or
//! failed, heartbeat timeout; not a deliberate disconnect nor a revoked
//! session) is parked with its rooms for two minutes; a reconnect with that
//! `pid` by the same user gets its rooms back (permissions checked again)
//! and every message of those rooms after its offset replayed from the log,
//! in log order, before live delivery resumes. Unlike Socket.IO's
//! in-memory packet buffer, nothing that happened while the socket was away
//! can be missing, whichever node published it.
//!
//! With Valkey (`REDIS_URL`) a parked session is the key
//! `paca:realtime:recovery:<pid>` (expiring with the window, taken with
//! `GETDEL`), so the reconnect may land on any node; without it sessions
//! are this process's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use commands::directory::{Directory, UserAccess};
use domain::permissions::project::{DOCS_READ, TASKS_READ};
use eventstore::{EventStore, GlobalPosition, RecordedEvent};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use socketioxide::extract::SocketRef;
use sqlx::Row;
use uuid::Uuid;

use super::{Room, relay};

/// How long a dropped socket's session is kept for its reconnect.
pub const WINDOW: Duration = Duration::from_secs(120);
/// Events a replay reads at most; a client further behind starts fresh
/// (its app reloads from REST, as after the window).
const MAX_REPLAY_EVENTS: usize = 20_000;
const BATCH: i64 = 500;

/// The offset sent with every message: its event's log position.
pub fn offset_of(event: &RecordedEvent) -> String {
    format!("{}.{}", event.tx_id, event.global_position)
}

pub fn parse_offset(raw: &str) -> Option<GlobalPosition> {
    let (tx, pos) = raw.split_once('.')?;
    Some(GlobalPosition {
        tx_id: tx.parse().ok().filter(|t: &i64| *t >= 0)?,
        position: pos.parse().ok().filter(|p: &i64| *p >= 0)?,
    })
}

/// The newest position below the gap-safe horizon (where a session that
/// has seen no event yet resumes).
pub async fn head(store: &EventStore) -> Result<GlobalPosition, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(tx_id::text::bigint), 0) AS tx_id, COALESCE(MAX(global_position), 0) AS pos
         FROM (SELECT tx_id, global_position FROM events
               WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
               ORDER BY tx_id DESC, global_position DESC LIMIT 1) head",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(GlobalPosition {
        tx_id: row.get("tx_id"),
        position: row.get("pos"),
    })
}

/// Where a socket's session started (for a reconnect before any event).
#[derive(Debug, Clone, Copy)]
pub struct StartedAt(pub GlobalPosition);

/// A reconnect accepted for recovery: the rooms to restore and where to
/// replay from. Put in the socket's extensions by the connect middleware.
#[derive(Debug, Clone)]
pub struct Recovering {
    pub rooms: Vec<String>,
    pub after: GlobalPosition,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Parked {
    user_id: Uuid,
    rooms: Vec<String>,
    started_at: GlobalPosition,
    #[serde(skip, default = "Instant::now")]
    at: Instant,
}

const KEY_PREFIX: &str = "paca:realtime:recovery:";

/// Parked sessions by `pid`: in Valkey once [`Sessions::use_valkey`] is
/// called, else in this process.
#[derive(Clone, Default)]
pub struct Sessions {
    local: Arc<Mutex<HashMap<String, Parked>>>,
    valkey: Arc<OnceLock<fred::clients::Client>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shares parked sessions between nodes through Valkey.
    pub fn use_valkey(&self, client: fred::clients::Client) {
        let _ = self.valkey.set(client);
    }

    /// Keeps a dropped socket's project rooms for [`WINDOW`].
    pub async fn park(
        &self,
        pid: String,
        user_id: Uuid,
        rooms: Vec<String>,
        started_at: GlobalPosition,
    ) {
        let parked = Parked {
            user_id,
            rooms,
            started_at,
            at: Instant::now(),
        };
        if let Some(valkey) = self.valkey.get() {
            let value = serde_json::to_string(&parked).unwrap_or_default();
            let set: Result<(), _> = valkey
                .set(
                    format!("{KEY_PREFIX}{pid}"),
                    value,
                    Some(Expiration::EX(WINDOW.as_secs() as i64)),
                    None,
                    false,
                )
                .await;
            match set {
                Ok(()) => return,
                // Recovery on this node still works while Valkey is away.
                Err(error) => {
                    tracing::debug!(%error, "realtime: parking the session in Valkey failed")
                }
            }
        }
        let mut sessions = self.lock();
        sessions.retain(|_, p| p.at.elapsed() <= WINDOW);
        sessions.insert(pid, parked);
    }

    /// Takes the parked session `pid` back for `user_id` (once): its rooms,
    /// and the client's offset or, without one, where the session started.
    pub async fn claim(
        &self,
        pid: &str,
        user_id: Uuid,
        offset: Option<GlobalPosition>,
    ) -> Option<Recovering> {
        let mut parked = self.lock().remove(pid);
        if parked.is_none()
            && let Some(valkey) = self.valkey.get()
        {
            let raw: Option<String> = valkey
                .getdel(format!("{KEY_PREFIX}{pid}"))
                .await
                .unwrap_or_else(|error| {
                    tracing::debug!(%error, "realtime: reading a parked session from Valkey failed");
                    None
                });
            parked = raw.and_then(|raw| serde_json::from_str(&raw).ok());
        }
        let parked = parked?;
        if parked.user_id != user_id || parked.at.elapsed() > WINDOW {
            return None;
        }
        // The offset is the client's word: never before the session began
        // (a forged old offset would otherwise replay the whole log).
        Some(Recovering {
            rooms: parked.rooms,
            after: offset.map_or(parked.started_at, |o| o.max(parked.started_at)),
        })
    }
}

/// The rooms of `rooms` the user may still be in (project rooms re-checked
/// like a `join`).
pub async fn permitted(directory: &Directory, user: &UserAccess, rooms: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for room in rooms {
        let Some((project, kind)) = room
            .strip_prefix("project:")
            .and_then(|r| r.split_once(':'))
        else {
            continue;
        };
        let Ok(project_id) = project.parse::<Uuid>() else {
            continue;
        };
        let permission = match kind {
            "tasks" => TASKS_READ,
            "docs" => DOCS_READ,
            _ => continue,
        };
        if super::socketio::may_read(directory, user, project_id, permission).await {
            out.push(room.clone());
        }
    }
    out
}

/// Emits to `socket` every message of `rooms` after `after`, in log order;
/// returns the position it read up to and the messages sent. `None` when
/// the client is too far behind to replay.
pub async fn replay(
    store: &EventStore,
    directory: &Directory,
    socket: &SocketRef,
    rooms: &[String],
    mut after: GlobalPosition,
) -> Result<Option<(GlobalPosition, usize)>, sqlx::Error> {
    let mut scanned = 0;
    let mut sent = 0;
    loop {
        let batch = store.read_all(after, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(Some((after, sent)));
        };
        after = GlobalPosition::of(last);
        scanned += batch.len();
        if scanned > MAX_REPLAY_EVENTS {
            return Ok(None);
        }
        for event in &batch {
            let offset = offset_of(event);
            for message in relay::messages(event, directory) {
                let Some(room) = message.room() else {
                    continue;
                };
                if !rooms.contains(&room.name()) {
                    continue;
                }
                let name = match room {
                    Room::Notifications(_) => "notification",
                    _ => "event",
                };
                if socket.emit(name, &(message.wire(), &offset)).is_err() {
                    return Ok(Some((after, sent)));
                }
                sent += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_refuse_junk() {
        let p = parse_offset("12.34").unwrap();
        assert_eq!((p.tx_id, p.position), (12, 34));
        for junk in ["", "12", "a.b", "-1.3", "1.-3", "1.2.3"] {
            assert!(parse_offset(junk).is_none(), "{junk:?}");
        }
    }

    #[tokio::test]
    async fn a_parked_session_is_claimed_once_by_its_user() {
        let sessions = Sessions::default();
        let start = GlobalPosition {
            tx_id: 5,
            position: 7,
        };
        let user = Uuid::now_v7();
        sessions
            .park("p1".into(), user, vec!["project:x:tasks".into()], start)
            .await;
        assert!(sessions.claim("p1", Uuid::now_v7(), None).await.is_none());
        // The wrong user's attempt used it up.
        assert!(sessions.claim("p1", user, None).await.is_none());
        sessions
            .park("p2".into(), user, vec!["r".into()], start)
            .await;
        let later = GlobalPosition {
            tx_id: 9,
            position: 1,
        };
        let got = sessions.claim("p2", user, Some(later)).await.unwrap();
        assert_eq!(got.rooms, vec!["r".to_owned()]);
        assert_eq!(got.after, later);
        assert!(sessions.claim("p2", user, None).await.is_none());
        // An offset from before the session began is clamped to its start.
        sessions.park("p3".into(), user, vec![], start).await;
        let early = GlobalPosition {
            tx_id: 1,
            position: 1,
        };
        assert_eq!(
            sessions.claim("p3", user, Some(early)).await.unwrap().after,
            start
        );
    }
}
