//! Authentication and authorization as typed extractors.
//!
//! Credentials are checked in the seeds' order: `access_token` cookie,
//! `Authorization: Bearer <jwt>`, `Authorization: ApiKey <key>`,
//! `X-API-Key`. The user, the session's liveness and the API key's
//! revocation and expiry then come from the in-memory directory
//! ([`commands::Directory`], built from the log), so a deletion, a logout
//! or a password change ends access on every node within a moment, not
//! when a JWT expires, and no request pays a database round trip to learn
//! who is calling.
//!
//! Project routes take their permission as a type: [`ProjectAuth<P>`]
//! (authenticated) and [`ProjectRead<P>`] (anonymous allowed on public
//! projects) resolve the route's `{project_id}`, the caller's membership
//! and the permission `P` once, before the handler runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use std::marker::PhantomData;
use std::sync::Arc;

use commands::auth;
use commands::directory::{Directory, ProjectAccess, Refusal, UserAccess};
use domain::{ErrorCode, permissions};
use eventstore::{Actor, Metadata};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult, request_id};

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An access JWT (cookie or Bearer) of the given session family.
    Session {
        family: Uuid,
    },
    ApiKey {
        key_id: Uuid,
    },
    /// The shared `AGENT_API_KEY` with `X-Agent-ID`: the caller is that
    /// agent member and acts with its project role.
    Agent {
        agent_id: Uuid,
    },
}

/// The agent a request acts as (`AGENT_API_KEY` + `X-Agent-ID`).
#[derive(Debug, Clone)]
pub struct AgentActor {
    pub agent_id: Uuid,
    pub member_id: Uuid,
    pub project_id: Uuid,
    /// The agent member's project-role permissions (in its project only).
    pub permissions: Arc<[String]>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// For an agent, a stand-in with the agent's id and no global
    /// permissions.
    pub user: UserAccess,
    pub via: Via,
    pub agent: Option<AgentActor>,
}

impl Principal {
    pub fn id(&self) -> Uuid {
        self.user.id
    }

    pub fn has_global(&self, permission: &str) -> bool {
        permissions::grants(&self.user.permissions, permission)
    }

    pub fn require_global(&self, permission: &str) -> ApiResult<()> {
        if self.has_global(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Event metadata naming this caller.
    pub fn metadata(&self) -> Metadata {
        if let Some(agent) = &self.agent {
            let mut extra = serde_json::Map::new();
            extra.insert("actor_member_type".into(), "agent".into());
            return Metadata {
                actor: Actor {
                    kind: "agent".into(),
                    member_id: Some(agent.member_id),
                    agent_id: Some(agent.agent_id),
                    ..Actor::default()
                },
                source: crate::error::source().into(),
                request_id: request_id(),
                correlation_id: request_id(),
                causation_id: None,
                occurred_at: chrono::Utc::now(),
                extra,
            };
        }
        Metadata {
            actor: Actor {
                kind: "user".into(),
                user_id: Some(self.user.id),
                api_key_id: match self.via {
                    Via::ApiKey { key_id } => Some(key_id),
                    Via::Session { .. } | Via::Agent { .. } => None,
                },
                ..Actor::default()
            },
            source: crate::error::source().into(),
            request_id: request_id(),
            correlation_id: request_id(),
            causation_id: None,
            occurred_at: chrono::Utc::now(),
            extra: Default::default(),
        }
    }
}

enum Presented {
    Jwt(String),
    ApiKey(String),
}

fn presented(req: &HttpRequest) -> Option<Presented> {
    if let Some(cookie) = req.cookie("access_token")
        && !cookie.value().is_empty()
    {
        return Some(Presented::Jwt(cookie.value().to_owned()));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(value) = header("authorization") {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim().to_owned();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Presented::Jwt(rest));
        }
        if scheme.eq_ignore_ascii_case("apikey") {
            return Some(Presented::ApiKey(rest));
        }
    }
    header("x-api-key").map(|key| Presented::ApiKey(key.to_owned()))
}

/// Resolves the caller, or `None` when no credential was presented. A
/// credential that is presented but bad is an error, never anonymous.
async fn resolve(req: &HttpRequest) -> ApiResult<Option<Principal>> {
    let state = app_state(req)?;
    let Some(credential) = presented(req) else {
        return Ok(None);
    };
    let directory = &state.commands.directory;
    let principal = match credential {
        Presented::Jwt(token) => {
            if token.starts_with(auth::API_KEY_PREFIX) {
                return Err(ApiError::new(
                    ErrorCode::AUTH_TOKEN_INVALID,
                    "API keys go in 'Authorization: ApiKey <key>' or 'X-API-Key', not Bearer",
                ));
            }
            let claims = state.commands.auth.verify_access(&token)?;
            let user = match directory.session(claims.sub, claims.sid) {
                // Created a moment ago on another node?
                Err(Refusal::UnknownUser) => {
                    directory.sync().await?;
                    directory.session(claims.sub, claims.sid)
                }
                other => other,
            };
            let user = user.map_err(|refusal| match refusal {
                Refusal::SessionRevoked => ApiError::new(
                    ErrorCode::AUTH_TOKEN_INVALID,
                    "this session has ended (logged out or password changed); log in again",
                ),
                _ => ApiError::new(ErrorCode::AUTH_TOKEN_INVALID, "user no longer exists"),
            })?;
            Principal {
                user,
                via: Via::Session { family: claims.sid },
                agent: None,
            }
        }
        Presented::ApiKey(key) => {
            if let Some(agent_key) = &state.commands.auth.agent_api_key
                && auth::same_secret(&key, agent_key)
            {
                return agent_principal(state, req).await.map(Some);
            }
            let (key_id, user) = state.commands.authenticate_api_key(&key).await?;
            Principal {
                user,
                via: Via::ApiKey { key_id },
                agent: None,
            }
        }
    };
    Ok(Some(principal))
}

/// The shared agent key acts only as a named agent: `X-Agent-ID` must name
/// a live agent member (from the directory), and the request gets that
/// member's project role in its own project and nothing else. Without the
/// header there is no actor to record: writes are refused with
/// `ACTIVITY_COMMENT_ACTOR_UNIDENTIFIED`.
async fn agent_principal(state: &AppState, req: &HttpRequest) -> ApiResult<Principal> {
    let header = req
        .headers()
        .get("x-agent-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(raw) = header else {
        let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        return Err(if safe {
            ApiError::new(
                ErrorCode::AUTH_TOKEN_INVALID,
                "the agent API key needs X-Agent-ID naming the agent that acts",
            )
        } else {
            ApiError::new(
                ErrorCode::ACTIVITY_COMMENT_ACTOR_UNIDENTIFIED,
                "the agent API key needs X-Agent-ID: a write must record which agent acted",
            )
        });
    };
    let agent_id: Uuid = raw
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::AUTH_TOKEN_INVALID, "X-Agent-ID is not a UUID"))?;
    let directory = &state.commands.directory;
    let mut found = directory.agent_member(agent_id);
    if found.is_none() {
        directory.sync().await?;
        found = directory.agent_member(agent_id);
    }
    let member = found.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AUTH_TOKEN_INVALID,
            "X-Agent-ID names no live agent",
        )
    })?;
    Ok(Principal {
        user: UserAccess {
            id: agent_id,
            username: format!("agent:{agent_id}"),
            must_change_password: false,
            role_id: Uuid::nil(),
            permissions: Arc::from(Vec::new()),
        },
        via: Via::Agent { agent_id },
        agent: Some(AgentActor {
            agent_id,
            member_id: member.member_id,
            project_id: member.project_id,
            permissions: member.permissions,
        }),
    })
}

fn missing() -> ApiError {
    ApiError::new(ErrorCode::AUTH_MISSING_TOKEN, "authentication required")
}

fn require_fresh(principal: &Principal) -> ApiResult<()> {
    if principal.user.must_change_password {
        return Err(ApiError::new(
            ErrorCode::AUTH_PASSWORD_CHANGE_REQUIRED,
            "change your password first (PATCH /api/v1/users/me/password)",
        ));
    }
    Ok(())
}

/// Authenticated, with a fresh password: what most routes require.
pub struct Auth(pub Principal);

/// Authenticated, password may be stale (only for the password change).
pub struct AuthStale(pub Principal);

/// Authenticated through a session JWT (cookie or Bearer), fresh: API keys
/// cannot manage API keys.
pub struct SessionAuth(pub Principal);

/// Optional authentication for routes that public projects open to
/// anonymous readers. Fresh password required when credentials are given.
pub struct MaybeAuth(pub Option<Principal>);

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = resolve(&req).await?.ok_or_else(missing)?;
            require_fresh(&principal)?;
            Ok(Auth(principal))
        })
    }
}

impl FromRequest for AuthStale {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(AuthStale(resolve(&req).await?.ok_or_else(missing)?)) })
    }
}

impl FromRequest for SessionAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = resolve(&req).await?.ok_or_else(missing)?;
            if matches!(principal.via, Via::ApiKey { .. }) {
                return Err(ApiError::new(
                    ErrorCode::FORBIDDEN,
                    "API keys cannot manage API keys; use a session (cookie or Bearer JWT)",
                ));
            }
            require_fresh(&principal)?;
            Ok(SessionAuth(principal))
        })
    }
}

impl FromRequest for MaybeAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = resolve(&req).await?;
            if let Some(p) = &principal {
                require_fresh(p)?;
            }
            Ok(MaybeAuth(principal))
        })
    }
}

/// Counts failed logins in a sliding window, per client IP and username
/// (`PACA_LOGIN_MAX_FAILURES`) and per client IP whatever the usernames
/// (`PACA_LOGIN_MAX_FAILURES_PER_IP`, a tolerant ceiling against spraying
/// one password over many accounts). Successful logins are not counted, so
/// scripts that log in often are never throttled; only guessing is. Every
/// refusal says when to retry.
///
/// With `REDIS_URL`, the windows live in Valkey (sorted sets
/// `paca:login:fail:<ip>:<username>` and `paca:login:fail-ip:<ip>`), so
/// every node behind the gateway counts the same failures; an attacker
/// cannot multiply the allowance by the number of nodes. If Valkey does not
/// answer, each node falls back to its own counts.
pub struct LoginLimiter {
    max_failures: usize,
    max_failures_per_ip: usize,
    window: Duration,
    failures: Mutex<HashMap<(String, String), Vec<Instant>>>,
    per_ip: Mutex<HashMap<String, Vec<Instant>>>,
    shared: Option<fred::clients::Client>,
}

/// Trims both windows, optionally records a failure in each, and returns
/// `[count, oldest_ms]` per key, atomically.
const LOGIN_WINDOW_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if ARGV[3] == '1' then
    redis.call('ZADD', key, now, ARGV[4])
    redis.call('PEXPIRE', key, window)
  end
  out[#out + 1] = redis.call('ZCARD', key)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  out[#out + 1] = tonumber(oldest[2] or now)
end
return out
"#;

/// The default per-IP ceiling: generous enough for an office behind one
/// NAT, low enough to stop a spray.
pub const DEFAULT_LOGIN_FAILURES_PER_IP: usize = 100;

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            max_failures_per_ip: DEFAULT_LOGIN_FAILURES_PER_IP,
            window,
            failures: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Count failures in Valkey, shared by every node (`REDIS_URL`).
    pub fn share_through(&mut self, client: fred::clients::Client) {
        self.shared = Some(client);
    }

    /// `(failures for this ip+username, oldest ms, failures for this ip,
    /// oldest ms)` from Valkey, recording one first when `record`.
    async fn shared_window(
        &self,
        client: &fred::clients::Client,
        ip: &str,
        username: &str,
        record: bool,
    ) -> Result<[i64; 4], fred::error::Error> {
        use fred::interfaces::ClientLike;
        use fred::types::{ClusterHash, CustomCommand};
        let now = chrono::Utc::now().timestamp_millis();
        let args: Vec<String> = vec![
            LOGIN_WINDOW_SCRIPT.into(),
            "2".into(),
            format!("paca:login:fail:{ip}:{}", username.to_lowercase()),
            format!("paca:login:fail-ip:{ip}"),
            now.to_string(),
            self.window.as_millis().to_string(),
            if record { "1" } else { "0" }.into(),
            format!("{now}-{}", Uuid::new_v4().simple()),
        ];
        let out: Vec<i64> = client
            .custom(
                CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false),
                args,
            )
            .await?;
        out.try_into()
            .map_err(|_| fred::error::Error::new(fred::error::ErrorKind::Parse, "window reply"))
    }

    /// The failed-login windows, from Valkey when shared and reachable.
    pub async fn check_shared(&self, ip: &str, username: &str) -> ApiResult<()> {
        let Some(client) = &self.shared else {
            return self.check(ip, username);
        };
        let [user_n, user_oldest, ip_n, ip_oldest] = match self
            .shared_window(client, ip, username, false)
            .await
        {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(%error, "login limits: Valkey unavailable, counting on this node");
                return self.check(ip, username);
            }
        };
        let retry = |oldest: i64| {
            let age = (chrono::Utc::now().timestamp_millis() - oldest).max(0) as u64;
            (self.window.as_millis() as u64).saturating_sub(age) / 1000 + 1
        };
        if self.max_failures_per_ip > 0 && ip_n as usize >= self.max_failures_per_ip {
            return Err(ApiError::new(
                ErrorCode::TOO_MANY_REQUESTS,
                "too many failed login attempts from this address; try again later",
            )
            .retry_after(retry(ip_oldest)));
        }
        if self.max_failures > 0 && user_n as usize >= self.max_failures {
            return Err(ApiError::new(
                ErrorCode::TOO_MANY_REQUESTS,
                "too many failed login attempts; try again in a minute",
            )
            .retry_after(retry(user_oldest)));
        }
        Ok(())
    }

    /// Records a failure on this node and, when shared, in Valkey.
    pub async fn record_failure_shared(&self, ip: &str, username: &str) {
        self.record_failure(ip, username);
        if let Some(client) = &self.shared
            && let Err(error) = self.shared_window(client, ip, username, true).await
        {
            tracing::warn!(%error, "login limits: could not record a failure in Valkey");
        }
    }

    /// `0` disables the per-IP ceiling.
    pub fn set_ip_ceiling(&mut self, max_failures: usize) {
        self.max_failures_per_ip = max_failures;
    }

    fn key(ip: &str, username: &str) -> (String, String) {
        (ip.to_owned(), username.to_lowercase())
    }

    /// Seconds until the oldest failure in a full window leaves it.
    fn retry_in(&self, list: &[Instant], now: Instant) -> u64 {
        list.first()
            .map(|t| self.window.saturating_sub(now.duration_since(*t)).as_secs() + 1)
            .unwrap_or(1)
    }

    pub fn check(&self, ip: &str, username: &str) -> ApiResult<()> {
        let now = Instant::now();
        if self.max_failures_per_ip > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = map.get_mut(ip) {
                list.retain(|t| now.duration_since(*t) < self.window);
                if list.len() >= self.max_failures_per_ip {
                    return Err(ApiError::new(
                        ErrorCode::TOO_MANY_REQUESTS,
                        "too many failed login attempts from this address; try again later",
                    )
                    .retry_after(self.retry_in(list, now)));
                }
            }
        }
        if self.max_failures == 0 {
            return Ok(());
        }
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(&Self::key(ip, username)) {
            list.retain(|t| now.duration_since(*t) < self.window);
            if list.len() >= self.max_failures {
                return Err(ApiError::new(
                    ErrorCode::TOO_MANY_REQUESTS,
                    "too many failed login attempts; try again in a minute",
                )
                .retry_after(self.retry_in(list, now)));
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, ip: &str, username: &str) {
        let now = Instant::now();
        let prune = |len: usize| len > 100_000;
        {
            let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            // Keep memory bounded under a spray of usernames.
            if prune(map.len()) {
                map.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < self.window));
            }
            map.entry(Self::key(ip, username)).or_default().push(now);
        }
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if prune(map.len()) {
            map.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < self.window));
        }
        let list = map.entry(ip.to_owned()).or_default();
        list.retain(|t| now.duration_since(*t) < self.window);
        list.push(now);
    }
}

/// Access to a project for a caller who may be anonymous: the project must
/// exist; the permission comes from the global role or the project role;
/// read permissions are open to everyone on public projects. Decided from
/// the directory; a refusal first catches the directory up with the log, so
/// a project or membership created a moment ago on another node is seen.
pub async fn project_access(
    state: &AppState,
    caller: Option<&Principal>,
    project_id: Uuid,
    permission: &str,
) -> ApiResult<ProjectAccess> {
    let directory = &state.commands.directory;
    match decide_access(directory, caller, project_id, permission) {
        Ok(access) => Ok(access),
        Err(_) => {
            directory.sync().await?;
            decide_access(directory, caller, project_id, permission)
        }
    }
}

fn decide_access(
    directory: &Directory,
    caller: Option<&Principal>,
    project_id: Uuid,
    permission: &str,
) -> ApiResult<ProjectAccess> {
    let project = directory
        .project(project_id, caller.map(Principal::id))
        .ok_or_else(|| ApiError::new(ErrorCode::PROJECT_NOT_FOUND, "project not found"))?;
    let is_read = permission.ends_with(".read");
    match caller {
        None if is_read && project.is_public => Ok(project),
        None => Err(missing()),
        Some(principal) => {
            if let Some(agent) = &principal.agent {
                // An agent acts only in its own project, with its role.
                return if agent.project_id == project_id
                    && permissions::grants(&agent.permissions, permission)
                {
                    Ok(project)
                } else {
                    Err(ApiError::forbidden())
                };
            }
            if Directory::grants(&principal.user, &project, permission)
                || (is_read && project.is_public)
            {
                Ok(project)
            } else {
                Err(ApiError::forbidden())
            }
        }
    }
}

/// The caller's effective permissions in a project: global ∪ project role.
/// `GET /projects/:id/members/me/permissions`: the caller's project role as
/// Paca's clients read it, a map `{permission: true}` (its MCP server filters
/// tools by it). A member gets exactly their role's map; an agent its
/// member role's; a non-member who can still read the project (a public
/// project, a global admin) gets their global permissions.
pub async fn project_permission_map(
    state: &AppState,
    principal: &Principal,
    project_id: Uuid,
) -> ApiResult<BTreeMap<String, bool>> {
    let as_map = |perms: &[String]| perms.iter().map(|p| (p.clone(), true)).collect();
    if let Some(agent) = &principal.agent {
        return Ok(if agent.project_id == project_id {
            as_map(&agent.permissions)
        } else {
            BTreeMap::new()
        });
    }
    let mut project = state
        .commands
        .directory
        .project(project_id, Some(principal.id()));
    if project.as_ref().is_none_or(|p| p.member.is_none()) {
        state.commands.directory.sync().await?;
        project = state
            .commands
            .directory
            .project(project_id, Some(principal.id()));
    }
    Ok(match project.and_then(|p| p.member) {
        Some((_, role)) => as_map(&role),
        None => as_map(&principal.user.permissions),
    })
}

/// A project permission as a type, for [`ProjectAuth`] and [`ProjectRead`].
pub trait Permission {
    const NAME: &'static str;
}

macro_rules! permissions {
    ($($ty:ident = $name:expr),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($name), "`")]
            pub struct $ty;
            impl Permission for $ty {
                const NAME: &'static str = $name;
            }
        )*
    };
}

/// The permissions project routes require.
pub mod perm {
    use super::Permission;
    use domain::permissions::{global, project};
    permissions! {
        TasksRead = project::TASKS_READ,
        TasksWrite = project::TASKS_WRITE,
        SprintsRead = project::SPRINTS_READ,
        SprintsWrite = project::SPRINTS_WRITE,
        DocsRead = project::DOCS_READ,
        DocsWrite = project::DOCS_WRITE,
        AgentsRead = project::AGENTS_READ,
        AgentsWrite = project::AGENTS_WRITE,
        MembersRead = project::MEMBERS_READ,
        MembersWrite = project::MEMBERS_WRITE,
        RolesRead = project::ROLES_READ,
        RolesWrite = project::ROLES_WRITE,
        ProjectsRead = global::PROJECTS_READ,
        ProjectsWrite = global::PROJECTS_WRITE,
        ProjectsDelete = global::PROJECTS_DELETE,
        AuditRead = project::AUDIT_READ,
    }
}

fn route_project_id(req: &HttpRequest) -> ApiResult<Uuid> {
    req.match_info()
        .get("project_id")
        .ok_or_else(|| ApiError::internal("route has no {project_id}"))?
        .parse()
        .map_err(|_| ApiError::bad_request("invalid path parameter: project_id is not a UUID"))
}

/// An authenticated caller (fresh password) holding permission `P` in the
/// project of the route's `{project_id}`.
pub struct ProjectAuth<P: Permission> {
    pub principal: Principal,
    pub project: ProjectAccess,
    _permission: PhantomData<P>,
}

/// A caller, possibly anonymous, holding permission `P` (a read
/// permission: anonymous callers get it on public projects) in the project
/// of the route's `{project_id}`.
pub struct ProjectRead<P: Permission> {
    pub caller: Option<Principal>,
    pub project: ProjectAccess,
    _permission: PhantomData<P>,
}

impl<P: Permission + 'static> FromRequest for ProjectAuth<P> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let project_id = route_project_id(&req)?;
            let principal = resolve(&req).await?.ok_or_else(missing)?;
            require_fresh(&principal)?;
            let state = app_state(&req)?;
            let project = project_access(state, Some(&principal), project_id, P::NAME).await?;
            Ok(ProjectAuth {
                principal,
                project,
                _permission: PhantomData,
            })
        })
    }
}

impl<P: Permission + 'static> FromRequest for ProjectRead<P> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let project_id = route_project_id(&req)?;
            let caller = resolve(&req).await?;
            if let Some(p) = &caller {
                require_fresh(p)?;
            }
            let state = app_state(&req)?;
            let project = project_access(state, caller.as_ref(), project_id, P::NAME).await?;
            Ok(ProjectRead {
                caller,
                project,
                _permission: PhantomData,
            })
        })
    }
}

fn app_state(req: &HttpRequest) -> ApiResult<&AppState> {
    req.app_data::<web::Data<AppState>>()
        .map(|d| d.get_ref())
        .ok_or_else(|| ApiError::internal("AppState missing"))
}
