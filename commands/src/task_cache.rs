//! Task aggregates kept in memory between commands, for the one-round-trip
//! task write ([`crate::Commands`]' fused path).
//!
//! An entry is a task's state at a version. It may be stale (another node,
//! or this node's transactional path, appended since): the fused append's
//! version check then fails, the entry is dropped and the task reloaded,
//! so staleness costs a retry, never a wrong decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::task::{Comment, Task, TaskCommand};
use uuid::Uuid;

use crate::tasks::PendingCreate;

/// Estimated bytes of task state the cache holds at most (its two
/// generations together). A task without its comments' bodies is ~0.5 KiB,
/// so this keeps ~16,000 plain tasks warm; a task with a long description
/// counts for what it holds, so the bound is on memory, not on entries.
const BUDGET: usize = 8 << 20;

#[derive(Clone)]
pub struct CachedTask {
    pub project_id: Uuid,
    pub version: i64,
    pub state: Arc<Task>,
}

impl CachedTask {
    pub fn new(project_id: Uuid, version: i64, state: Task) -> Self {
        Self {
            project_id,
            version,
            state: Arc::new(state),
        }
    }
}

/// An entry as the cache holds it: the task without its comments, and the
/// comments without their bodies, as a sorted slice. A body is a JSON value
/// (a BlockNote document in Paca's web app), the largest part of a
/// commented task, and only a comment edit reads bodies (for its no-op
/// check and the event's `old_content`), so an edit decides from the log
/// ([`needs_comment_bodies`]). A slice, not a map: a map's first node takes
/// ~1.2 KiB, more than the rest of a task, so the budget held less than
/// half as many commented tasks.
struct Held {
    project_id: Uuid,
    version: i64,
    task: Arc<Task>,
    /// (comment id, author, deleted), by id.
    comments: Box<[(Uuid, Uuid, bool)]>,
    bytes: usize,
}

impl Held {
    fn new(entry: CachedTask) -> Self {
        let (task, comments) = if entry.state.comments.is_empty() {
            (entry.state, Box::default())
        } else {
            // The caller's copy is usually the only one (a write's new
            // state): take it apart rather than copy it.
            let mut task = Arc::try_unwrap(entry.state).unwrap_or_else(|shared| (*shared).clone());
            let comments = std::mem::take(&mut task.comments)
                .into_iter()
                .map(|(id, c)| (id, c.author_user_id, c.deleted))
                .collect();
            (Arc::new(task), comments)
        };
        let bytes = footprint(&task, comments.len());
        Self {
            project_id: entry.project_id,
            version: entry.version,
            task,
            comments,
            bytes,
        }
    }

    /// The entry with its comments back in the task (bodies `null`).
    fn entry(&self) -> CachedTask {
        let state = if self.comments.is_empty() {
            self.task.clone()
        } else {
            let mut task = (*self.task).clone();
            task.comments = self
                .comments
                .iter()
                .map(|&(id, author_user_id, deleted)| {
                    let comment = Comment {
                        author_user_id,
                        content: serde_json::Value::Null,
                        deleted,
                    };
                    (id, comment)
                })
                .collect();
            Arc::new(task)
        };
        CachedTask {
            project_id: self.project_id,
            version: self.version,
            state,
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

pub struct TaskCache {
    entries: Mutex<Generations>,
    lanes: Mutex<HashMap<Uuid, Arc<CreateLane>>>,
}

impl Default for TaskCache {
    fn default() -> Self {
        Self::with_budget(BUDGET)
    }
}

/// Two generations, each up to half the budget: entries go into `young`;
/// when it is full, it becomes `old` and the previous `old` is dropped. An
/// entry read from `old` moves back to `young`. So what is used within
/// about one generation's worth of writes stays, memory never exceeds the
/// budget (plus one entry per generation), and no entry costs more than
/// two hash-map operations.
struct Generations {
    young: Generation,
    old: Generation,
    young_bytes: usize,
    half: usize,
}

type Generation = HashMap<Uuid, Held>;

impl Generations {
    /// Returns the generation retired to make room, if any, for the caller
    /// to drop once it has let go of the lock (thousands of entries).
    #[must_use]
    fn insert_young(&mut self, task_id: Uuid, held: Held) -> Option<Generation> {
        self.young_bytes += held.bytes;
        if let Some(replaced) = self.young.insert(task_id, held) {
            self.young_bytes -= replaced.bytes;
        }
        if self.young_bytes <= self.half {
            return None;
        }
        self.young_bytes = 0;
        let young = std::mem::take(&mut self.young);
        Some(std::mem::replace(&mut self.old, young))
    }
}

impl TaskCache {
    fn with_budget(budget: usize) -> Self {
        Self {
            entries: Mutex::new(Generations {
                young: HashMap::new(),
                old: HashMap::new(),
                young_bytes: 0,
                half: budget / 2,
            }),
            lanes: Mutex::default(),
        }
    }

    pub fn get(&self, task_id: Uuid) -> Option<CachedTask> {
        let mut entries = self.lock();
        if let Some(held) = entries.young.get(&task_id) {
            return Some(held.entry());
        }
        let held = entries.old.remove(&task_id)?;
        let entry = held.entry();
        let retired = entries.insert_young(task_id, held);
        drop(entries);
        drop(retired);
        Some(entry)
    }

    /// Keeps `entry` unless a newer version is held; its comments' bodies
    /// are not kept.
    pub fn put(&self, task_id: Uuid, entry: CachedTask) {
        // Outside the lock: it copies the task and walks its JSON.
        let held = Held::new(entry);
        let mut entries = self.lock();
        let newer = entries
            .young
            .get(&task_id)
            .or_else(|| entries.old.get(&task_id))
            .is_some_and(|kept| kept.version > held.version);
        if newer {
            return;
        }
        entries.old.remove(&task_id);
        let retired = entries.insert_young(task_id, held);
        drop(entries);
        drop(retired);
    }

    pub fn evict(&self, task_id: Uuid) {
        let mut entries = self.lock();
        if let Some(held) = entries.young.remove(&task_id) {
            entries.young_bytes -= held.bytes;
        }
        entries.old.remove(&task_id);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An estimate of the heap an entry holds: the structs, their strings and
/// JSON values, the maps' tree nodes, and a hash-map slot. An estimate,
/// not the allocator's figure, but it grows with what a task holds, which
/// is what the budget is for.
fn footprint(task: &Task, comments: usize) -> usize {
    use domain::task::Link;
    let fields = &task.fields;
    let mut bytes = size_of::<(Uuid, Held)>() + 16 + size_of::<Task>();
    bytes += comments * size_of::<(Uuid, Uuid, bool)>();
    bytes += fields.title.len();
    bytes += fields.description.as_ref().map_or(0, json_bytes);
    bytes += fields.assignee_ids.capacity() * size_of::<Uuid>();
    bytes += fields
        .tags
        .iter()
        .map(|t| size_of::<String>() + t.len())
        .sum::<usize>();
    bytes += fields
        .custom_fields
        .iter()
        .map(|(k, v)| 32 + k.len() + json_bytes(v))
        .sum::<usize>();
    bytes += tree_bytes::<Uuid, Link>(task.links.len());
    bytes += tree_bytes::<Uuid, (Uuid, String, i64)>(task.attachments.len());
    bytes += task
        .attachments
        .values()
        .map(|(_, name, _)| name.len())
        .sum::<usize>();
    bytes
}

/// A `BTreeMap`'s nodes: room for eleven entries each, about half full when
/// keys arrive in order (ids are UUIDv7), and a whole node for one entry.
fn tree_bytes<K, V>(len: usize) -> usize {
    const ROOM: usize = 11;
    let nodes = len.div_ceil(ROOM / 2);
    nodes * (ROOM * (size_of::<K>() + size_of::<V>()) + 16)
}

fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    size_of::<Value>()
        + match value {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(json_bytes).sum(),
            Value::Object(map) => map.iter().map(|(k, v)| 32 + k.len() + json_bytes(v)).sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_comments_without_their_bodies() {
        let mut task = Task::default();
        let (kept, deleted) = (Uuid::now_v7(), Uuid::now_v7());
        for (id, gone) in [(kept, false), (deleted, true)] {
            let comment = Comment {
                author_user_id: Uuid::new_v4(),
                content: serde_json::json!({"text": "a body"}),
                deleted: gone,
            };
            task.comments.insert(id, comment);
        }
        let cache = TaskCache::default();
        let id = Uuid::new_v4();
        cache.put(id, CachedTask::new(Uuid::new_v4(), 3, task.clone()));
        let entry = cache.get(id).expect("held");
        assert_eq!(entry.version, 3);
        assert_eq!(entry.state.comments.len(), 2);
        for (id, comment) in &entry.state.comments {
            assert_eq!(comment.content, serde_json::Value::Null);
            assert_eq!(comment.author_user_id, task.comments[id].author_user_id);
            assert_eq!(comment.deleted, task.comments[id].deleted);
        }
        // Apart from the bodies, what was put is what is got.
        let mut without_bodies = task.clone();
        for comment in without_bodies.comments.values_mut() {
            comment.content = serde_json::Value::Null;
        }
        assert_eq!(*entry.state, without_bodies);
        assert!(needs_comment_bodies(&TaskCommand::EditComment {
            comment_id: kept,
            actor_user_id: Uuid::new_v4(),
            content: serde_json::Value::Null,
        }));
    }

    fn entry(version: i64, title: &str) -> CachedTask {
        let mut task = Task::default();
        task.fields.title = title.to_owned();
        CachedTask::new(Uuid::nil(), version, task)
    }

    fn held_bytes(cache: &TaskCache) -> usize {
        let entries = cache.lock();
        entries
            .young
            .values()
            .chain(entries.old.values())
            .map(|h| h.bytes)
            .sum()
    }

    #[test]
    fn memory_stays_within_the_budget_and_recent_entries_stay() {
        let one = Held::new(entry(1, "a task")).bytes;
        // Room for ten entries per generation.
        let cache = TaskCache::with_budget(20 * one + 1);
        let ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        let kept_id = ids[0];
        cache.put(kept_id, entry(1, "a task"));
        for (n, id) in ids.iter().enumerate().skip(1) {
            cache.put(*id, entry(1, "a task"));
            // Read often enough to stay in the younger generations.
            if n % 5 == 0 {
                assert!(
                    cache.get(kept_id).is_some(),
                    "a used entry was dropped at {n}"
                );
            }
            let held = held_bytes(&cache);
            assert!(held <= 22 * one, "{held} bytes held");
        }
        let held = ids.iter().filter(|id| cache.get(**id).is_some()).count();
        assert!((10..=22).contains(&held), "{held} of 100 entries held");
        // The first entries not read since are gone.
        assert!(cache.get(ids[1]).is_none());
    }

    #[test]
    fn a_long_description_counts_for_what_it_holds() {
        let plain = Held::new(entry(1, "a task")).bytes;
        let mut task = Task::default();
        task.fields.description = Some(serde_json::json!({
            "type": "doc",
            "content": [{"type": "paragraph", "text": "x".repeat(100_000)}],
        }));
        assert!(footprint(&task, 0) > plain + 100_000);
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one_in_either_generation() {
        let one = Held::new(entry(1, "a task")).bytes;
        let cache = TaskCache::with_budget(4 * one + 1);
        let id = Uuid::new_v4();
        cache.put(id, entry(5, "new"));
        // Push it into the old generation.
        cache.put(Uuid::new_v4(), entry(1, "a task"));
        cache.put(Uuid::new_v4(), entry(1, "a task"));
        assert!(cache.lock().old.contains_key(&id));
        cache.put(id, entry(4, "stale"));
        assert_eq!(cache.get(id).map(|e| e.version), Some(5));
        cache.put(id, entry(6, "newer"));
        let title = cache.get(id).map(|e| e.state.fields.title.clone());
        assert_eq!(title.as_deref(), Some("newer"));
        cache.evict(id);
        assert!(cache.get(id).is_none());
        let entries = cache.lock();
        let counted: usize = entries.young.values().map(|h| h.bytes).sum();
        assert_eq!(entries.young_bytes, counted);
    }
}
