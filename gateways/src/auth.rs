//! Authentication and authorization as typed extractors.
//!
//! Credentials are checked in the seeds' order: `access_token` cookie,
//! `Authorization: Bearer <jwt>`, `Authorization: ApiKey <key>`,
//! `X-API-Key`. The user is then loaded from the read model, so a deleted
//! user or an admin password reset takes effect at once, not when a JWT
//! expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use commands::auth;
use domain::{ErrorCode, permissions};
use eventstore::{Actor, Metadata};
use futures_util::future::LocalBoxFuture;
use projections::queries::{self, UserView};
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
    pub permissions: Vec<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// For an agent, a stand-in with the agent's id, handle and name and
    /// no global permissions.
    pub user: UserView,
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
                source: "rest".into(),
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
            source: "rest".into(),
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
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing"))?;
    let Some(credential) = presented(req) else {
        return Ok(None);
    };
    let (user_id, via) = match credential {
        Presented::Jwt(token) => {
            if token.starts_with(auth::API_KEY_PREFIX) {
                return Err(ApiError::new(
                    ErrorCode::AUTH_TOKEN_INVALID,
                    "API keys go in 'Authorization: ApiKey <key>' or 'X-API-Key', not Bearer",
                ));
            }
            let claims = state.commands.auth.verify_access(&token)?;
            (claims.sub, Via::Session { family: claims.sid })
        }
        Presented::ApiKey(key) => {
            if let Some(agent_key) = &state.commands.auth.agent_api_key
                && auth::same_secret(&key, agent_key)
            {
                return agent_principal(state, req).await.map(Some);
            }
            let (key_id, user_id) = auth::authenticate_api_key(&state.pool, &key).await?;
            (user_id, Via::ApiKey { key_id })
        }
    };
    let user = queries::user(&state.pool, user_id)
        .await?
        .filter(|u| !u.deleted)
        .ok_or_else(|| ApiError::new(ErrorCode::AUTH_TOKEN_INVALID, "user no longer exists"))?;
    Ok(Some(Principal {
        user,
        via,
        agent: None,
    }))
}

/// The shared agent key acts only as a named agent: `X-Agent-ID` must name
/// a live agent, and the request gets that agent member's project role in
/// its own project and nothing else. Without the header there is no actor
/// to record: writes are refused with `ACTIVITY_COMMENT_ACTOR_UNIDENTIFIED`.
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
    let identity = projections::queries_agents::agent_identity(&state.pool, agent_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::AUTH_TOKEN_INVALID,
                "X-Agent-ID names no live agent",
            )
        })?;
    let user = UserView {
        id: identity.agent_id,
        username: identity.handle.clone(),
        full_name: identity.name.clone(),
        email: None,
        role: "AGENT".into(),
        role_id: Uuid::nil(),
        must_change_password: false,
        created_at: chrono::Utc::now(),
        permissions: Vec::new(),
        deleted: false,
    };
    Ok(Principal {
        user,
        via: Via::Agent { agent_id },
        agent: Some(AgentActor {
            agent_id,
            member_id: identity.member_id,
            project_id: identity.project_id,
            permissions: identity.permissions,
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
            if matches!(principal.via, Via::ApiKey { .. } | Via::Agent { .. }) {
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

/// Counts failed logins per client IP and username in a sliding window.
/// Successful logins are not counted, so scripts that log in often are
/// never throttled; only guessing is.
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<(String, String), Vec<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn key(ip: &str, username: &str) -> (String, String) {
        (ip.to_owned(), username.to_lowercase())
    }

    pub fn check(&self, ip: &str, username: &str) -> ApiResult<()> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(list) = map.get_mut(&Self::key(ip, username)) {
            list.retain(|t| now.duration_since(*t) < self.window);
            if list.len() >= self.max_failures {
                return Err(ApiError::new(
                    ErrorCode::TOO_MANY_REQUESTS,
                    "too many failed login attempts; try again in a minute",
                ));
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, ip: &str, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Keep memory bounded under a spray of usernames.
        if map.len() > 100_000 {
            map.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < self.window));
        }
        map.entry(Self::key(ip, username)).or_default().push(now);
    }
}

/// Access to a project for a caller who may be anonymous: the project must
/// exist; the permission comes from the global role or the project role;
/// read permissions are open to everyone on public projects.
pub async fn project_access(
    state: &AppState,
    caller: Option<&Principal>,
    project_id: Uuid,
    permission: &str,
) -> ApiResult<queries::ProjectView> {
    let project = queries::project(&state.pool, project_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PROJECT_NOT_FOUND, "project not found"))?;
    let is_read = permission.ends_with(".read");
    match caller {
        None if is_read && project.is_public => Ok(project),
        None => Err(missing()),
        Some(principal) => {
            if let Some(agent) = &principal.agent {
                // An agent acts only in its own project, with its role.
                if agent.project_id == project_id
                    && permissions::grants(&agent.permissions, permission)
                {
                    return Ok(project);
                }
                return Err(ApiError::forbidden());
            }
            if principal.has_global(permission) {
                return Ok(project);
            }
            let member =
                queries::member_permissions(&state.pool, project_id, principal.id()).await?;
            if member.is_some_and(|p| permissions::grants(&p, permission))
                || (is_read && project.is_public)
            {
                return Ok(project);
            }
            Err(ApiError::forbidden())
        }
    }
}

/// The caller's effective permissions in a project: global ∪ project role.
pub async fn effective_project_permissions(
    state: &AppState,
    principal: &Principal,
    project_id: Uuid,
) -> ApiResult<Vec<String>> {
    if let Some(agent) = &principal.agent {
        return Ok(if agent.project_id == project_id {
            agent.permissions.clone()
        } else {
            vec![]
        });
    }
    let mut perms = principal.user.permissions.clone();
    if let Some(member) =
        queries::member_permissions(&state.pool, project_id, principal.id()).await?
    {
        for p in member {
            if !perms.contains(&p) {
                perms.push(p);
            }
        }
    }
    Ok(perms)
}
