//! Who may do what, in memory, built from the log.
//!
//! Every request needs its caller (user, global role, live sessions) and,
//! for project routes, the project's roles and members. Reading those from
//! read models made every request several round trips and made writes
//! depend on tables that are rebuilt (DESIGN.md §4). The directory folds
//! the user, global-role and project streams with the same domain
//! `evolve` the commands use, and stays current three ways:
//!
//! - this process's own commits are applied before the command returns
//!   ([`eventstore::CommitObserver`]), so a caller always sees its writes;
//! - a tail task reads the log gap-safely after every wake-up (local
//!   commit, `NOTIFY` from another node, or a poll), so another node's
//!   revocation takes effect here within one poll interval;
//! - a check that would refuse access first catches up synchronously
//!   ([`Directory::sync`]), so a grant made a moment ago on another node is
//!   never refused.
//!
//! Streams can reach the tail with a per-stream version gap (two writers of
//! one stream whose transaction ids are in the other order); such a stream
//! is re-read from its last known version, so every entry is always a
//! prefix of its stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::DomainEvent;
use domain::global_role::{GlobalRole, GlobalRoleEvent};
use domain::permissions;
use domain::project::{Member, Project, ProjectEvent, Role};
use domain::user::{User, UserEvent};
use eventstore::{CommitObserver, EventStore, GlobalPosition, RecordedEvent};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{CommandError, CommandResult, InfraError};

/// The stream types the directory folds.
const STREAM_TYPES: [&str; 3] = [
    UserEvent::STREAM_TYPE,
    GlobalRoleEvent::STREAM_TYPE,
    ProjectEvent::STREAM_TYPE,
];
const BATCH: i64 = 5_000;
/// Fallback poll of the tail when no wake-up arrives (a lost NOTIFY).
const POLL: Duration = Duration::from_millis(250);
/// The shortest gap between two tail reads of [`Directory::follow`]:
/// other nodes' bursts of writes cost at most this many reads a second
/// (two queries each). A request that misses (a user or project created
/// elsewhere a moment ago) syncs on demand.
const MIN_GAP: Duration = Duration::from_millis(50);
/// Projects held whole at most. The directory folds every project, but an
/// access check and the realtime relay need only the flags, roles and
/// members; the rest of the aggregate (names, settings, task
/// configuration: two thirds of its memory) is kept only for projects a
/// command on this node used recently, the others are held as a
/// [`Roster`]. A command that finds a project slim folds its stream once
/// and hands the whole state back ([`Directory::install`]).
const WHOLE: usize = 4_096;
/// Revoked session families are remembered this long after their event:
/// longer than any access token lives (tokens are checked for `exp` too).
const REVOCATION_MEMORY: chrono::Duration = chrono::Duration::hours(24);

/// An aggregate folded to `version`.
#[derive(Debug, Clone, Default)]
pub struct Versioned<T> {
    pub version: i64,
    pub state: T,
}

/// A caller as the directory knows them.
#[derive(Debug, Clone)]
pub struct UserAccess {
    pub id: Uuid,
    pub username: String,
    pub must_change_password: bool,
    pub role_id: Uuid,
    /// The global role's permissions (empty if the role is gone).
    pub permissions: Arc<[String]>,
}

/// A project as an access check needs it.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub id: Uuid,
    pub is_public: bool,
    /// The caller's membership, if any: member id and the role's permissions.
    pub member: Option<(Uuid, Arc<[String]>)>,
}

/// An agent member as the agent key's `X-Agent-ID` resolves it.
#[derive(Debug, Clone)]
pub struct AgentMember {
    pub project_id: Uuid,
    pub member_id: Uuid,
    pub permissions: Arc<[String]>,
}

/// What the directory keeps of every project: whether it lives, its
/// visibility, its roles' permissions and its members. That is all an
/// access check and the realtime relay read, in a few hundred bytes (a
/// whole [`Project`] with its boxed maps and strings is about three times
/// that, and the directory holds every project).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roster {
    pub exists: bool,
    pub deleted: bool,
    pub is_public: bool,
    /// Role id and its permissions (interned: every project's seeded roles
    /// share one list).
    pub roles: Box<[(Uuid, Arc<[String]>)]>,
    pub members: Box<[(Uuid, Member)]>,
}

impl Roster {
    fn of(project: &Project) -> Roster {
        Roster {
            exists: project.exists,
            deleted: project.deleted,
            is_public: project.is_public,
            roles: project
                .roles
                .iter()
                .map(|(id, role)| (*id, Arc::clone(&role.permissions)))
                .collect(),
            members: project
                .members
                .iter()
                .map(|(id, m)| (*id, m.clone()))
                .collect(),
        }
    }

    /// A project with what the roster holds and nothing else (roles without
    /// names), for folding an event: the parts it lacks are the parts
    /// [`Roster::of`] drops again, and `evolve` tolerates their absence
    /// (updates of an unknown status or field change nothing).
    fn to_project(&self) -> Project {
        let mut project = Project {
            exists: self.exists,
            deleted: self.deleted,
            is_public: self.is_public,
            ..Project::default()
        };
        for (id, permissions) in self.roles.iter() {
            let role = Role {
                name: String::new(),
                permissions: Arc::clone(permissions),
            };
            project.roles.insert(*id, role);
        }
        for (id, member) in self.members.iter() {
            project.members.insert(*id, member.clone());
        }
        project
    }

    pub fn is_live(&self) -> bool {
        self.exists && !self.deleted
    }

    /// The user's (not an agent's) membership: member id and member.
    pub fn member_by_user(&self, user_id: Uuid) -> Option<(Uuid, &Member)> {
        self.members
            .iter()
            .find(|(_, m)| m.is_user(user_id))
            .map(|(id, m)| (*id, m))
    }
}

/// A project as the directory holds it: whole for the projects commands
/// on this node use ([`WHOLE`] at most), a [`Roster`] for the rest.
#[derive(Debug)]
enum Entry {
    Whole(Box<Project>),
    Slim(Roster),
}

impl Default for Entry {
    fn default() -> Self {
        Entry::Slim(Roster::default())
    }
}

impl Entry {
    fn roster(&self) -> Roster {
        match self {
            Entry::Whole(project) => Roster::of(project),
            Entry::Slim(roster) => roster.clone(),
        }
    }

    fn is_live(&self) -> bool {
        match self {
            Entry::Whole(project) => project.is_live(),
            Entry::Slim(roster) => roster.is_live(),
        }
    }

    fn is_public(&self) -> bool {
        match self {
            Entry::Whole(project) => project.is_public,
            Entry::Slim(roster) => roster.is_public,
        }
    }

    /// The first member `which` picks: its member id and its role's
    /// permissions. Per request, so nothing is built for a whole entry.
    fn member(&self, which: impl Fn(&Member) -> bool) -> Option<(Uuid, Arc<[String]>)> {
        let (member_id, role_id) = match self {
            Entry::Whole(project) => project
                .members
                .iter()
                .find(|(_, m)| which(m))
                .map(|(id, m)| (*id, m.role_id))?,
            Entry::Slim(roster) => roster
                .members
                .iter()
                .find(|(_, m)| which(m))
                .map(|(id, m)| (*id, m.role_id))?,
        };
        let permissions = match self {
            Entry::Whole(project) => project
                .roles
                .get(&role_id)
                .map(|r| Arc::clone(&r.permissions)),
            Entry::Slim(roster) => roster
                .roles
                .iter()
                .find(|(id, _)| *id == role_id)
                .map(|(_, p)| Arc::clone(p)),
        };
        Some((
            member_id,
            permissions.unwrap_or_else(|| Arc::from(Vec::new())),
        ))
    }

    fn evolve(self, event: &ProjectEvent) -> Entry {
        match self {
            Entry::Whole(project) => Entry::Whole(Box::new(project.evolve(event))),
            Entry::Slim(roster) => Entry::Slim(Roster::of(&roster.to_project().evolve(event))),
        }
    }
}

/// Why a credential that verified cryptographically is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownUser,
    SessionRevoked,
    ApiKeyRevoked,
    ApiKeyExpired,
}

#[derive(Default)]
struct State {
    position: GlobalPosition,
    users: HashMap<Uuid, Versioned<User>>,
    /// Lowercased username -> live user.
    usernames: HashMap<String, Uuid>,
    roles: HashMap<Uuid, Versioned<GlobalRole>>,
    projects: HashMap<Uuid, Versioned<Entry>>,
    /// How many entries of `projects` are whole.
    whole: usize,
    /// Session family -> when the revocation was recorded.
    revoked_families: HashMap<Uuid, DateTime<Utc>>,
    /// User -> sessions that started before this are over (password
    /// changed or reset, user deleted).
    sessions_valid_from: HashMap<Uuid, DateTime<Utc>>,
    /// API key hash -> (key id, user id): immutable once created, so it is
    /// cached without expiry; revocation and expiry come from the user.
    api_keys: HashMap<String, (Uuid, Uuid)>,
}

/// Handle to the directory. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    state: RwLock<State>,
    /// One catch-up at a time; a second caller waits and then finds the
    /// work done.
    syncing: tokio::sync::Mutex<()>,
}

impl Directory {
    /// Folds the log's user, role and project streams and starts following
    /// this process's commits. Call [`Directory::follow`] to also follow
    /// other processes.
    pub async fn load(store: &EventStore) -> CommandResult<Self> {
        let directory = Directory {
            inner: Arc::new(Inner {
                store: store.clone(),
                state: RwLock::new(State::default()),
                syncing: tokio::sync::Mutex::new(()),
            }),
        };
        directory.sync().await?;
        // Weakly: the directory holds the store, so a strong observer would
        // be a cycle that keeps the store (and its pool) alive forever.
        store.observe_commits(Arc::new(WeakObserver(Arc::downgrade(&directory.inner))));
        Ok(directory)
    }

    /// Follows the log until `shutdown` turns true: a tail read on every
    /// wake-up, and every [`POLL`] in any case.
    pub fn follow(&self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let directory = self.clone();
        tokio::spawn(async move {
            // This node's commits reach the directory in-process; the tail
            // is for other nodes' (and to move the safe cursor, which the
            // poll does), so local commits do not wake it.
            let mut wakeups = directory.inner.store.remote_wakeups();
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let synced = tokio::time::Instant::now();
                if let Err(error) = directory.sync().await {
                    tracing::warn!(error = %crate::error::chain(&error), "directory catch-up failed; retrying");
                }
                tokio::select! {
                    _ = wakeups.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(synced + MIN_GAP) => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }

    /// Catches up with everything committed before now.
    ///
    /// Two passes: up to the gap-safe horizon, which is where the cursor
    /// advances to, then ahead of it without moving the cursor. The
    /// horizon is cluster-wide: one long transaction anywhere on the
    /// server (another database included) holds it back, and a directory
    /// that waited for it would refuse a user created a moment ago on
    /// another node (or before a restart). Reading ahead is safe because
    /// folding is idempotent per stream version: what it applies is
    /// skipped as seen when the safe pass reaches it, and an event that
    /// commits late below it is still found by the safe pass.
    pub async fn sync(&self) -> CommandResult<()> {
        let _one = self.inner.syncing.lock().await;
        let types: Vec<String> = STREAM_TYPES.iter().map(|t| (*t).to_owned()).collect();
        let mut conn = self.inner.store.pool().acquire().await?;
        loop {
            let after = self.read().position;
            let batch = self
                .inner
                .store
                .read_types_in(&mut conn, after, BATCH, &types)
                .await?;
            self.fold(&mut conn, &batch.events).await?;
            // Past the other streams' events below the horizon too (see
            // `Batch::next_after`).
            self.write().position = batch.next_after(after);
            if !batch.full() {
                break;
            }
        }
        let mut ahead = self.read().position;
        loop {
            let events = self
                .inner
                .store
                .read_ahead_in(&mut conn, ahead, BATCH, &types)
                .await?;
            let Some(last) = events.last() else {
                return Ok(());
            };
            ahead = GlobalPosition::of(last);
            self.fold(&mut conn, &events).await?;
            if (events.len() as i64) < BATCH {
                return Ok(());
            }
        }
    }

    /// Applies a batch, re-reading the streams it showed a version gap in.
    async fn fold(
        &self,
        conn: &mut sqlx::PgConnection,
        events: &[RecordedEvent],
    ) -> CommandResult<()> {
        for stream_id in self.apply(events) {
            self.refill(conn, stream_id).await?;
        }
        Ok(())
    }

    /// Re-reads one stream from the version the directory holds.
    async fn refill(&self, conn: &mut sqlx::PgConnection, stream_id: Uuid) -> CommandResult<()> {
        let from = self.version_of(stream_id);
        let events = self
            .inner
            .store
            .read_stream_in(conn, stream_id, from)
            .await?;
        // In stream order now, so no gap can remain.
        self.apply(&events);
        Ok(())
    }

    fn version_of(&self, stream_id: Uuid) -> i64 {
        let state = self.read();
        state
            .users
            .get(&stream_id)
            .map(|v| v.version)
            .or_else(|| state.roles.get(&stream_id).map(|v| v.version))
            .or_else(|| state.projects.get(&stream_id).map(|v| v.version))
            .unwrap_or(0)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies events in order; returns the streams that showed a version
    /// gap (to be re-read). Events already folded are skipped.
    fn apply(&self, events: &[RecordedEvent]) -> HashSet<Uuid> {
        let mut gaps = HashSet::new();
        let mut state = self.write();
        for event in events {
            if gaps.contains(&event.stream_id) {
                continue;
            }
            match state.apply(event) {
                Ok(Applied::Done | Applied::Seen) => {}
                Ok(Applied::Gap) => {
                    gaps.insert(event.stream_id);
                }
                Err(error) => {
                    // A stored event the domain cannot decode is a bug or a
                    // missing upcaster; the stream is left as it was.
                    tracing::error!(
                        stream_id = %event.stream_id,
                        version = event.version,
                        event_type = %event.event_type,
                        %error,
                        "directory cannot decode event"
                    );
                }
            }
        }
        state.prune(Utc::now());
        gaps
    }

    // ---------------------------------------------------------------- reads

    /// The user a verified credential names, if they may still act.
    pub fn user(&self, user_id: Uuid) -> Option<UserAccess> {
        let state = self.read();
        let user = state.users.get(&user_id)?;
        if !user.state.exists || user.state.deleted {
            return None;
        }
        Some(state.user_access(user_id, &user.state))
    }

    /// The live user with this username (case-insensitive).
    pub fn user_by_name(&self, username: &str) -> Option<UserAccess> {
        let id = *self.read().usernames.get(&username.to_lowercase())?;
        self.user(id)
    }

    /// Checks an access token's user and session against revocations.
    pub fn session(&self, user_id: Uuid, family: Uuid) -> Result<UserAccess, Refusal> {
        let state = self.read();
        if state.revoked_families.contains_key(&family) {
            return Err(Refusal::SessionRevoked);
        }
        let user = state
            .users
            .get(&user_id)
            .filter(|u| u.state.exists && !u.state.deleted)
            .ok_or(Refusal::UnknownUser)?;
        if let Some(valid_from) = state.sessions_valid_from.get(&user_id)
            && session_started(family).is_none_or(|started| started < *valid_from)
        {
            return Err(Refusal::SessionRevoked);
        }
        Ok(state.user_access(user_id, &user.state))
    }

    /// The API key behind a hash, if cached: `(key id, user id)`.
    pub fn api_key(&self, hash: &str) -> Option<(Uuid, Uuid)> {
        self.read().api_keys.get(hash).copied()
    }

    pub fn remember_api_key(&self, hash: String, key_id: Uuid, user_id: Uuid) {
        self.write().api_keys.insert(hash, (key_id, user_id));
    }

    /// Checks an API key's user, revocation and expiry.
    pub fn api_key_user(
        &self,
        key_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<UserAccess, Refusal> {
        let state = self.read();
        let user = state
            .users
            .get(&user_id)
            .filter(|u| u.state.exists && !u.state.deleted)
            .ok_or(Refusal::UnknownUser)?;
        let key = user
            .state
            .api_keys
            .get(&key_id)
            .ok_or(Refusal::UnknownUser)?;
        if key.revoked {
            return Err(Refusal::ApiKeyRevoked);
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(Refusal::ApiKeyExpired);
        }
        Ok(state.user_access(user_id, &user.state))
    }

    /// A live project and the caller's membership in it.
    pub fn project(&self, project_id: Uuid, user_id: Option<Uuid>) -> Option<ProjectAccess> {
        let state = self.read();
        let entry = &state.projects.get(&project_id)?.state;
        if !entry.is_live() {
            return None;
        }
        Some(ProjectAccess {
            id: project_id,
            is_public: entry.is_public(),
            member: user_id.and_then(|user_id| entry.member(|m| m.is_user(user_id))),
        })
    }

    /// The live agent member with this agent id (agents belong to exactly
    /// one project).
    pub fn agent_member(&self, agent_id: Uuid) -> Option<AgentMember> {
        let state = self.read();
        state.projects.iter().find_map(|(project_id, entry)| {
            if !entry.state.is_live() {
                return None;
            }
            let (member_id, permissions) = entry.state.member(|m| m.agent_id == Some(agent_id))?;
            Some(AgentMember {
                project_id: *project_id,
                member_id,
                permissions,
            })
        })
    }

    /// The whole project aggregate as the directory holds it (possibly
    /// behind the log: commands extend it from the stream inside their
    /// transaction). `None` for a project held slim or unknown: the caller
    /// folds the stream and [`Directory::install`]s the result.
    pub fn project_state(&self, project_id: Uuid) -> Option<Versioned<Project>> {
        let state = self.read();
        let entry = state.projects.get(&project_id)?;
        match &entry.state {
            Entry::Whole(project) => Some(Versioned {
                version: entry.version,
                state: Project::clone(project),
            }),
            Entry::Slim(_) => None,
        }
    }

    /// What every project entry holds, whole or slim: whether it lives,
    /// its visibility, roles' permissions and members.
    pub fn project_roster(&self, project_id: Uuid) -> Option<Roster> {
        Some(self.read().projects.get(&project_id)?.state.roster())
    }

    /// Folds events read from a project's stream by a command (newer than
    /// what the directory held) so the next command need not read them.
    pub fn extend(&self, events: &[RecordedEvent]) {
        self.apply(events);
    }

    /// Holds a project whole from now on: `project` is its stream folded
    /// to `version` by a command that found it slim. Ignored if the
    /// directory is already past `version` (it then stays slim until the
    /// next command installs it).
    pub fn install(&self, project_id: Uuid, version: i64, project: &Project) {
        let mut state = self.write();
        let held = state.projects.get(&project_id);
        if held.is_some_and(|p| p.version > version) {
            return;
        }
        let was_whole = held.is_some_and(|p| matches!(p.state, Entry::Whole(_)));
        if state.whole >= WHOLE && !was_whole {
            // Crude but bounded, like the task cache: a working set that
            // fits stays whole, a larger one costs a stream read per command.
            for entry in state.projects.values_mut() {
                if let Entry::Whole(project) = &entry.state {
                    entry.state = Entry::Slim(Roster::of(project));
                }
            }
            state.whole = 0;
        }
        state.projects.insert(
            project_id,
            Versioned {
                version,
                state: Entry::Whole(Box::new(project.clone())),
            },
        );
        if !was_whole {
            state.whole += 1;
        }
    }

    /// Holders of a global role among live users.
    pub fn role_holders(&self, role_id: Uuid) -> usize {
        self.read()
            .users
            .values()
            .filter(|u| u.state.exists && !u.state.deleted && u.state.role_id == role_id)
            .count()
    }

    pub fn global_role(&self, role_id: Uuid) -> Option<GlobalRole> {
        self.read()
            .roles
            .get(&role_id)
            .map(|r| r.state.clone())
            .filter(GlobalRole::is_live)
    }

    /// Does `permissions` (global) or the membership grant `required`?
    pub fn grants(user: &UserAccess, project: &ProjectAccess, required: &str) -> bool {
        permissions::grants(&user.permissions, required)
            || project
                .member
                .as_ref()
                .is_some_and(|(_, p)| permissions::grants(p, required))
    }
}

struct WeakObserver(std::sync::Weak<Inner>);

impl CommitObserver for WeakObserver {
    fn committed(&self, events: &[RecordedEvent]) {
        if let Some(inner) = self.0.upgrade() {
            Directory { inner }.committed(events);
        }
    }
}

impl CommitObserver for Directory {
    fn committed(&self, events: &[RecordedEvent]) {
        let relevant: Vec<RecordedEvent> = events
            .iter()
            .filter(|e| STREAM_TYPES.contains(&e.stream_type.as_str()))
            .cloned()
            .collect();
        if relevant.is_empty() {
            return;
        }
        // Our own appends are complete stream suffixes, but one may land
        // after a gap the tail has not filled yet; the tail then re-reads.
        if !self.apply(&relevant).is_empty() {
            self.inner.store.nudge();
        }
    }
}

/// When a session family started: its id is a UUIDv7, whose first 48 bits
/// are the creation time in milliseconds.
fn session_started(family: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = family.get_timestamp()?.to_unix();
    DateTime::from_timestamp(secs as i64, nanos)
}

enum Applied {
    Done,
    /// Already folded (our own commit seen again through the tail).
    Seen,
    /// Arrived before an earlier event of its stream.
    Gap,
}

fn next<T: Default>(
    map: &mut HashMap<Uuid, Versioned<T>>,
    event: &RecordedEvent,
    evolve: impl FnOnce(T) -> T,
) -> Applied {
    let entry = map.entry(event.stream_id).or_default();
    if event.version <= entry.version {
        return Applied::Seen;
    }
    if event.version != entry.version + 1 {
        return Applied::Gap;
    }
    entry.state = evolve(std::mem::take(&mut entry.state));
    entry.version = event.version;
    Applied::Done
}

fn occurred_at(event: &RecordedEvent) -> DateTime<Utc> {
    event
        .metadata
        .get("occurred_at")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or(event.recorded_at)
}

impl State {
    fn apply(&mut self, event: &RecordedEvent) -> Result<Applied, CommandError> {
        let decode = |source| {
            CommandError::Infra(InfraError::Decode {
                stream_id: event.stream_id,
                version: event.version,
                event_type: event.event_type.clone(),
                source,
            })
        };
        match event.stream_type.as_str() {
            UserEvent::STREAM_TYPE => {
                let typed =
                    UserEvent::from_stored(&event.event_type, &event.payload).map_err(decode)?;
                let applied = next(&mut self.users, event, |u| u.evolve(&typed));
                if matches!(applied, Applied::Done) {
                    self.after_user_event(event, &typed);
                }
                Ok(applied)
            }
            GlobalRoleEvent::STREAM_TYPE => {
                let typed = GlobalRoleEvent::from_stored(&event.event_type, &event.payload)
                    .map_err(decode)?;
                Ok(next(&mut self.roles, event, |r| r.evolve(&typed)))
            }
            ProjectEvent::STREAM_TYPE => {
                let typed =
                    ProjectEvent::from_stored(&event.event_type, &event.payload).map_err(decode)?;
                Ok(next(&mut self.projects, event, |p| p.evolve(&typed)))
            }
            _ => Ok(Applied::Seen),
        }
    }

    fn after_user_event(&mut self, event: &RecordedEvent, typed: &UserEvent) {
        let user_id = event.stream_id;
        match typed {
            UserEvent::Created { username, .. } => {
                self.usernames.insert(username.to_lowercase(), user_id);
            }
            UserEvent::Deleted {} => {
                self.usernames.retain(|_, id| *id != user_id);
                self.sessions_valid_from
                    .insert(user_id, occurred_at(event).max(event.recorded_at));
            }
            UserEvent::PasswordChanged { .. } => {
                // Sessions that began before the change are over, the
                // changer's own included (Paca: "revokes the session").
                self.sessions_valid_from.insert(user_id, occurred_at(event));
            }
            UserEvent::SessionsRevoked { family_ids, .. } => {
                for family in family_ids {
                    self.revoked_families.insert(*family, event.recorded_at);
                }
            }
            _ => {}
        }
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        if self.revoked_families.len() > 10_000 {
            self.revoked_families
                .retain(|_, at| now - *at < REVOCATION_MEMORY);
        }
    }

    fn user_access(&self, id: Uuid, user: &User) -> UserAccess {
        let permissions = self
            .roles
            .get(&user.role_id)
            .filter(|r| r.state.is_live())
            .map(|r| Arc::from(r.state.permissions.as_slice()))
            .unwrap_or_else(|| Arc::from(Vec::new()));
        UserAccess {
            id,
            username: user.username.clone(),
            must_change_password: user.must_change_password,
            role_id: user.role_id,
            permissions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_family_carries_its_start_time() {
        let before = Utc::now() - chrono::Duration::milliseconds(2);
        let family = Uuid::now_v7();
        let started = session_started(family).unwrap();
        assert!(started >= before && started <= Utc::now());
        assert!(session_started(Uuid::new_v4()).is_none());
    }

    /// A slim entry folds to the roster of the whole aggregate after every
    /// event that touches roles, members or the flags.
    #[test]
    fn a_slim_entry_folds_like_the_whole_aggregate() {
        let id = Uuid::from_u128;
        let perms = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let events = [
            ProjectEvent::Created {
                name: "P".into(),
                description: "d".into(),
                task_id_prefix: "P".into(),
                is_public: true,
                settings: serde_json::json!({}),
                created_by: id(100),
            },
            ProjectEvent::RoleCreated {
                role_id: id(1),
                role_name: "Admin".into(),
                permissions: perms(&["task.read", "task.write"]),
            },
            ProjectEvent::RoleCreated {
                role_id: id(2),
                role_name: "Viewer".into(),
                permissions: perms(&["task.read"]),
            },
            ProjectEvent::MemberAdded {
                member_id: id(10),
                user_id: id(100),
                project_role_id: id(1),
                role_name: "Admin".into(),
                member_type: "human".into(),
            },
            ProjectEvent::MemberAdded {
                member_id: id(11),
                user_id: id(101),
                project_role_id: id(2),
                role_name: "Viewer".into(),
                member_type: "human".into(),
            },
            ProjectEvent::AgentMemberAdded {
                member_id: id(12),
                agent_id: id(200),
                project_role_id: id(2),
                role_name: "Viewer".into(),
                member_type: "agent".into(),
            },
            ProjectEvent::RoleUpdated {
                role_id: id(2),
                role_name: Some("Reader".into()),
                permissions: Some(perms(&["task.read", "doc.read"])),
            },
            ProjectEvent::MemberRoleChanged {
                member_id: id(11),
                user_id: id(101),
                project_role_id: id(1),
                role_name: "Admin".into(),
                old_project_role_id: id(2),
            },
            ProjectEvent::TaskStatusCreated {
                status_id: id(30),
                status: domain::task_config::TaskStatus {
                    name: "Todo".into(),
                    color: None,
                    position: 0,
                    category: "todo".into(),
                },
                is_default: true,
            },
            ProjectEvent::MemberRemoved {
                member_id: id(10),
                user_id: id(100),
            },
            ProjectEvent::AgentMemberRemoved {
                member_id: id(12),
                agent_id: id(200),
            },
            ProjectEvent::RoleDeleted {
                role_id: id(2),
                role_name: "Reader".into(),
            },
            ProjectEvent::Deleted {},
        ];
        let (mut whole, mut slim) = (Entry::Whole(Box::default()), Entry::default());
        for event in &events {
            whole = whole.evolve(event);
            slim = slim.evolve(event);
            assert!(matches!(slim, Entry::Slim(_)), "a slim entry stays slim");
            assert_eq!(slim.roster(), whole.roster(), "after {event:?}");
        }
        let Entry::Slim(roster) = &slim else {
            unreachable!()
        };
        assert!(roster.exists && roster.deleted && roster.is_public);
        assert_eq!(roster.members.len(), 1);
        assert_eq!(roster.roles.len(), 1, "the deleted role is gone");
        // Access reads the same from both.
        for entry in [&slim, &whole] {
            let (member, granted) = entry.member(|m| m.is_user(id(101))).unwrap();
            assert_eq!(member, id(11));
            assert_eq!(&*granted, perms(&["task.read", "task.write"]));
            assert!(entry.member(|m| m.is_user(id(100))).is_none());
        }
    }
}
