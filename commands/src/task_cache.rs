//! Task aggregates kept in memory between commands, for the one-round-trip
//! task write ([`crate::Commands`]' fused path).
//!
//! An entry is a task's state at a version. It may be stale (another node,
//! or this node's transactional path, appended since): the fused append's
//! version check then fails, the entry is dropped and the task reloaded,
//! so staleness costs a retry, never a wrong decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::task::Task;
use uuid::Uuid;

/// Entries kept before the cache is cleared (a task state is a few KiB at
/// most; comments are the bulk).
const CAPACITY: usize = 20_000;

#[derive(Clone)]
pub struct CachedTask {
    pub project_id: Uuid,
    pub version: i64,
    pub state: Arc<Task>,
}

/// A project's task counter as this node last left it (`None`: read it
/// from `task_counters`), behind the lock a fused create holds from taking
/// a number to its append's answer: this node's creates in one project
/// reach the database in number order, so none fails for the one before it.
pub type NumberSlot = Arc<tokio::sync::Mutex<Option<i64>>>;

#[derive(Default)]
pub struct TaskCache {
    entries: Mutex<HashMap<Uuid, CachedTask>>,
    numbers: Mutex<HashMap<Uuid, NumberSlot>>,
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

    /// The project's counter slot (one per project ever created in here).
    pub fn numbers(&self, project_id: Uuid) -> NumberSlot {
        self.numbers
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
