//! Task aggregates kept in memory between commands, for the one-round-trip
//! task write ([`crate::Commands`]' fused path).
//!
//! An entry is a task's state at a version. It may be stale (another node,
//! or this node's transactional path, appended since): the fused append's
//! version check then fails, the entry is dropped and the task reloaded,
//! so staleness costs a retry, never a wrong decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::task::{Task, TaskCommand};
use uuid::Uuid;

use crate::tasks::PendingCreate;

/// Entries kept before the cache is cleared (a task state without its
/// comments' bodies is well under a KiB for most tasks).
const CAPACITY: usize = 20_000;

#[derive(Clone)]
pub struct CachedTask {
    pub project_id: Uuid,
    pub version: i64,
    pub state: Arc<Task>,
}

impl CachedTask {
    /// An entry for `state` at `version`, kept without its comments'
    /// bodies: they were most of a commented task's memory (and of the
    /// clone every write makes), and only a comment edit reads them (for
    /// its no-op check and the event's `old_content`), so an edit decides
    /// from the log instead ([`needs_comment_bodies`]).
    pub fn new(project_id: Uuid, version: i64, mut state: Task) -> Self {
        for comment in state.comments.values_mut() {
            comment.content = serde_json::Value::Null;
        }
        Self {
            project_id,
            version,
            state: Arc::new(state),
        }
    }
}

/// Whether deciding `command` reads comment bodies, which cached entries
/// do not hold.
pub fn needs_comment_bodies(command: &TaskCommand) -> bool {
    matches!(command, TaskCommand::EditComment { .. })
}

/// A project's fused creates on this node (`tasks.rs`,
/// `create_task_fused`). Numbers are the project's one serial resource: a
/// create holds the counter from taking its number to its commit. So the
/// creates that arrive while one is in flight wait here, and the lane's
/// one server task appends all of them in its next round trip: a
/// project's creates are bounded by CPU, not by one commit latency each.
#[derive(Default)]
pub struct CreateLane {
    /// The project's task counter as this node last left it (`None`: read
    /// it from `task_counters`); held by the server while it appends.
    pub last: tokio::sync::Mutex<Option<i64>>,
    queue: Mutex<LaneQueue>,
}

#[derive(Default)]
struct LaneQueue {
    waiting: Vec<PendingCreate>,
    /// A server task is running (it takes `waiting` until it finds it
    /// empty, and stops under the same lock a push takes).
    serving: bool,
}

impl CreateLane {
    /// Queues a create. `true`: no server is running, the caller starts one.
    pub fn push(&self, pending: PendingCreate) -> bool {
        let mut queue = self.queue();
        queue.waiting.push(pending);
        !std::mem::replace(&mut queue.serving, true)
    }

    /// Everything waiting. Empty means the server stops: the next push
    /// starts another.
    pub fn take(&self) -> Vec<PendingCreate> {
        let mut queue = self.queue();
        if queue.waiting.is_empty() {
            queue.serving = false;
        }
        std::mem::take(&mut queue.waiting)
    }

    /// After the server stopped early (a panic, or its runtime shut
    /// down): the waiting creates are dropped (their callers see the
    /// answer channel closed and try again) and the next push starts a
    /// new server.
    pub fn abandon(&self) {
        let mut queue = self.queue();
        queue.waiting.clear();
        queue.serving = false;
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, LaneQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
pub struct TaskCache {
    entries: Mutex<HashMap<Uuid, CachedTask>>,
    lanes: Mutex<HashMap<Uuid, Arc<CreateLane>>>,
}

impl TaskCache {
    pub fn get(&self, task_id: Uuid) -> Option<CachedTask> {
        self.lock().get(&task_id).cloned()
    }

    pub fn put(&self, task_id: Uuid, entry: CachedTask) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(&task_id) {
            // Crude but bounded: working sets that fit stay warm, and one
            // that does not costs a load per command, as without a cache.
            entries.clear();
        }
        match entries.get(&task_id) {
            Some(held) if held.version > entry.version => {}
            _ => {
                entries.insert(task_id, entry);
            }
        }
    }

    pub fn evict(&self, task_id: Uuid) {
        self.lock().remove(&task_id);
    }

    /// The project's create lane (one per project ever created in here).
    pub fn lane(&self, project_id: Uuid) -> Arc<CreateLane> {
        self.lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(project_id)
            .or_default()
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CachedTask>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::task::Comment;

    #[test]
    fn an_entry_keeps_comments_without_their_bodies() {
        let mut task = Task::default();
        let comment = Uuid::new_v4();
        task.comments.insert(
            comment,
            Comment {
                author_user_id: Uuid::new_v4(),
                content: serde_json::json!({"text": "a body"}),
                deleted: false,
            },
        );
        let entry = CachedTask::new(Uuid::new_v4(), 3, task.clone());
        let held = &entry.state.comments[&comment];
        assert_eq!(held.content, serde_json::Value::Null);
        assert_eq!(held.author_user_id, task.comments[&comment].author_user_id);
        assert!(needs_comment_bodies(&TaskCommand::EditComment {
            comment_id: comment,
            actor_user_id: Uuid::new_v4(),
            content: serde_json::Value::Null,
        }));
    }
}
