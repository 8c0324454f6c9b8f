//! Orchestration host APIs (seed 003 in Paca's terms): plugin-created tasks
//! and subtasks with a namespaced origin, comments, blocker links, project
//! documents, durable wakeups and orchestration summaries.
//!
//! Every call runs *as a user*: the user of the HTTP request that called
//! the plugin, or the user who scheduled the wakeup being delivered. It
//! needs the manifest permission that names the capability and the user's
//! project permission for the effect, checked on the write side's
//! directory, so a plugin can never do more than its caller. Every effect
//! is an ordinary event whose metadata names the plugin and the user
//! (`actor.kind = "plugin"`, `extra.plugin`).

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use commands::Commands;
use commands::directory::Directory;
use domain::DomainEvent;
use domain::plugin::{
    ACTIVITY_STREAM_TYPE, PluginActivityEvent, PluginWakeupEvent, WAKEUP_STREAM_TYPE,
    activity_stream_id,
};
use eventstore::{AppendError, ExpectedVersion, Metadata, NewEvent, StreamRef};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::core::{Caller, Core};
use crate::host::{CallContext, PluginServices};

/// Longest origin key a plugin may use.
pub const ORIGIN_KEY_MAX: usize = 200;
/// Largest wakeup payload (JSON bytes).
const WAKEUP_PAYLOAD_MAX: usize = 64 * 1024;
/// Furthest a wakeup may be scheduled ahead.
const WAKEUP_HORIZON_DAYS: i64 = 366;

/// The core operations the gateway carries out for plugins with the same
/// request parsing, command handlers and views as REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    TaskCreate,
    TaskUpdate,
    TaskComment,
    TaskLink,
    DocsList,
    DocGet,
    DocCreate,
    DocUpdate,
}

/// Who and where an operation acts, already authorised.
#[derive(Debug, Clone)]
pub struct Target {
    pub plugin: String,
    pub project_id: Uuid,
    pub user_id: Uuid,
    /// For `TaskCreate` with an origin key: the task id the key maps to.
    pub origin_task_id: Option<Uuid>,
}

/// A refused or failed operation, in the API's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new("FORBIDDEN", message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new("BAD_REQUEST", message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "plugin orchestration call failed");
        Self::new("INTERNAL_ERROR", "internal error")
    }

    pub fn to_json(&self) -> Value {
        json!({"error": self.message, "error_code": self.code})
    }
}

/// Implemented by the gateway (which owns REST's parsing and views).
#[async_trait::async_trait]
pub trait CoreApi: Send + Sync {
    async fn call(
        &self,
        op: Op,
        meta: &Metadata,
        target: &Target,
        input: Value,
    ) -> Result<Value, Failure>;
}

/// Set once the gateway is built (it needs the host first).
pub type CoreApiSlot = Arc<OnceLock<Arc<dyn CoreApi>>>;

/// One host function: the manifest permissions that enable it (any of) and
/// the caller's project permission it needs.
struct Grant {
    manifest: &'static [&'static str],
    permission: &'static str,
}

fn grant(function: &str) -> Option<Grant> {
    let g = |manifest, permission| Grant {
        manifest,
        permission,
    };
    Some(match function {
        "task_create" | "task_update" | "task_comment" | "task_link" => {
            g(&["tasks:write"], "tasks.write")
        }
        "docs_list" | "doc_get" => g(&["docs:read", "docs:write"], "docs.read"),
        "doc_create" | "doc_update" => g(&["docs:write"], "docs.write"),
        "wakeup_schedule" | "wakeup_cancel" => g(&["wakeups"], "projects.read"),
        "summary_set" => g(&["summaries:write"], "tasks.write"),
        _ => return None,
    })
}

/// The names of the orchestration host functions.
pub const FUNCTIONS: &[&str] = &[
    "task_create",
    "task_update",
    "task_comment",
    "task_link",
    "docs_list",
    "doc_get",
    "doc_create",
    "doc_update",
    "wakeup_schedule",
    "wakeup_cancel",
    "summary_set",
];

fn uuid_field(input: &Map<String, Value>, name: &str) -> Result<Option<Uuid>, Failure> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Uuid::parse_str(s.trim())
            .map(Some)
            .map_err(|_| Failure::bad_request(format!("{name} must be a UUID"))),
        Some(_) => Err(Failure::bad_request(format!("{name} must be a UUID"))),
    }
}

fn required_uuid(input: &Map<String, Value>, name: &str) -> Result<Uuid, Failure> {
    uuid_field(input, name)?.ok_or_else(|| Failure::bad_request(format!("{name} is required")))
}

impl Core {
    /// Runs orchestration host function `function` for `svc` with the
    /// guest's JSON input; the answer is the result or
    /// `{"error", "error_code"}`.
    pub async fn orchestrate(
        &self,
        svc: &PluginServices,
        function: &str,
        input: &[u8],
        call: &CallContext,
    ) -> Value {
        match self.orchestrate_inner(svc, function, input, call).await {
            Ok(v) => v,
            Err(f) => f.to_json(),
        }
    }

    async fn orchestrate_inner(
        &self,
        svc: &PluginServices,
        function: &str,
        input: &[u8],
        call: &CallContext,
    ) -> Result<Value, Failure> {
        let grant = grant(function)
            .ok_or_else(|| Failure::bad_request(format!("unknown host function {function}")))?;
        let input = match serde_json::from_slice::<Value>(input) {
            Ok(Value::Object(map)) => map,
            _ => return Err(Failure::bad_request("the input must be a JSON object")),
        };
        if !grant
            .manifest
            .iter()
            .any(|p| svc.permissions.iter().any(|have| have == p))
        {
            return Err(Failure::forbidden(format!(
                "the plugin's manifest does not declare the permission {}",
                grant.manifest[0]
            )));
        }
        let caller = call
            .request
            .as_ref()
            .map(|r| &r.caller)
            .filter(|c| c.user_id.is_some())
            .ok_or_else(|| {
                Failure::forbidden(format!(
                    "{function} needs a calling user (a request or a wakeup)"
                ))
            })?;
        let user_id = caller.user_id.unwrap_or_default();
        let commands = self.commands()?;
        let project_id = self
            .target_project(commands, function, &input, caller)
            .await?;
        let member_id = authorise(&commands.directory, user_id, project_id, grant.permission)?;
        let mut meta = Core::metadata(&svc.name, svc.id, call);
        meta.actor.member_id = member_id;
        match function {
            "wakeup_schedule" => {
                return self
                    .schedule_wakeup(svc, &meta, project_id, user_id, &input)
                    .await;
            }
            "wakeup_cancel" => return self.cancel_wakeup(svc, &meta, project_id, &input).await,
            "summary_set" => return self.set_summary(svc, &meta, project_id, &input).await,
            _ => {}
        }
        let op = match function {
            "task_create" => Op::TaskCreate,
            "task_update" => Op::TaskUpdate,
            "task_comment" => Op::TaskComment,
            "task_link" => Op::TaskLink,
            "docs_list" => Op::DocsList,
            "doc_get" => Op::DocGet,
            "doc_create" => Op::DocCreate,
            _ => Op::DocUpdate,
        };
        let mut origin_task_id = None;
        if op == Op::TaskCreate
            && let Some(key) = input.get("origin_key").filter(|k| !k.is_null())
        {
            let key = key
                .as_str()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.chars().count() <= ORIGIN_KEY_MAX)
                .ok_or_else(|| {
                    Failure::bad_request(format!(
                        "origin_key must be a non-empty string of at most {ORIGIN_KEY_MAX} characters"
                    ))
                })?;
            origin_task_id = Some(domain::plugin::origin_task_id(&svc.name, key));
            meta.extra
                .insert("origin".into(), json!({"plugin": svc.name, "key": key}));
        }
        let api = self
            .api
            .get()
            .ok_or_else(|| Failure::new("UNAVAILABLE", "the core API is not available yet"))?;
        let target = Target {
            plugin: svc.name.clone(),
            project_id,
            user_id,
            origin_task_id,
        };
        api.call(op, &meta, &target, Value::Object(input)).await
    }

    fn commands(&self) -> Result<&Commands, Failure> {
        self.commands
            .as_ref()
            .ok_or_else(|| Failure::new("UNAVAILABLE", "orchestration is not available here"))
    }

    /// The project a call acts in: `project_id`, else the project of the
    /// named task (or wakeup), else the request's; never another project
    /// than a project-scoped request's.
    async fn target_project(
        &self,
        commands: &Commands,
        function: &str,
        input: &Map<String, Value>,
        caller: &Caller,
    ) -> Result<Uuid, Failure> {
        let explicit = uuid_field(input, "project_id")?;
        let from_task = match function {
            "task_update" | "task_comment" | "task_link" => Some(required_uuid(input, "task_id")?),
            "summary_set" => uuid_field(input, "task_id")?,
            _ => None,
        };
        let derived = match from_task {
            Some(task_id) => Some(
                commands
                    .task_project(task_id)
                    .await
                    .map_err(Failure::internal)?
                    .ok_or_else(|| Failure::new("TASK_NOT_FOUND", "task not found"))?,
            ),
            None => None,
        };
        if function == "wakeup_cancel" {
            let id = required_uuid(input, "id")?;
            let project = self.wakeup_project(id).await?;
            return match caller.project_id {
                Some(p) if p != project => Err(Failure::new("NOT_FOUND", "wakeup not found")),
                _ => Ok(project),
            };
        }
        let project = match (explicit, derived) {
            (Some(e), Some(d)) if e != d => {
                return Err(Failure::new(
                    "TASK_NOT_FOUND",
                    "task not found in that project",
                ));
            }
            (_, Some(d)) => d,
            (Some(e), None) => e,
            (None, None) => caller
                .project_id
                .ok_or_else(|| Failure::bad_request("project_id is required"))?,
        };
        if let Some(scoped) = caller.project_id
            && scoped != project
        {
            return Err(if derived.is_some() {
                Failure::new("TASK_NOT_FOUND", "task not found")
            } else {
                Failure::forbidden("a plugin route may only act in its own project")
            });
        }
        Ok(project)
    }

    async fn wakeup_project(&self, id: Uuid) -> Result<Uuid, Failure> {
        let first = self
            .store
            .read_stream(id, 0)
            .await
            .map_err(Failure::internal)?
            .into_iter()
            .next()
            .filter(|e| e.stream_type == WAKEUP_STREAM_TYPE)
            .ok_or_else(|| Failure::new("NOT_FOUND", "wakeup not found"))?;
        first
            .project_id
            .ok_or_else(|| Failure::new("NOT_FOUND", "wakeup not found"))
    }

    async fn schedule_wakeup(
        &self,
        svc: &PluginServices,
        meta: &Metadata,
        project_id: Uuid,
        user_id: Uuid,
        input: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        let now = Utc::now();
        let due_at = match (input.get("at"), input.get("after_ms")) {
            (Some(Value::String(at)), None) => DateTime::parse_from_rfc3339(at)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| Failure::bad_request("at must be an RFC 3339 time"))?,
            (None, Some(ms)) => {
                let ms = ms
                    .as_i64()
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| Failure::bad_request("after_ms must be a whole number ≥ 0"))?;
                now + ChronoDuration::milliseconds(ms.min(WAKEUP_HORIZON_DAYS * 86_400_000))
            }
            _ => return Err(Failure::bad_request("give exactly one of at and after_ms")),
        };
        if due_at > now + ChronoDuration::days(WAKEUP_HORIZON_DAYS) {
            return Err(Failure::bad_request(format!(
                "a wakeup may be at most {WAKEUP_HORIZON_DAYS} days ahead"
            )));
        }
        let payload = input.get("payload").cloned().unwrap_or(Value::Null);
        if serde_json::to_vec(&payload).map_or(0, |b| b.len()) > WAKEUP_PAYLOAD_MAX {
            return Err(Failure::bad_request("payload is larger than 64 KiB"));
        }
        let id = Uuid::now_v7();
        let event = PluginWakeupEvent::Scheduled {
            plugin: svc.name.clone(),
            project_id,
            user_id,
            due_at,
            payload,
        };
        self.store
            .append(
                StreamRef {
                    stream_type: WAKEUP_STREAM_TYPE,
                    stream_id: id,
                    project_id: Some(project_id),
                },
                ExpectedVersion::NoStream,
                vec![NewEvent::new(
                    event.event_type(),
                    event.to_payload(),
                    meta.clone(),
                )],
            )
            .await
            .map_err(Failure::internal)?;
        Ok(json!({"id": id, "due_at": due_at}))
    }

    async fn cancel_wakeup(
        &self,
        svc: &PluginServices,
        meta: &Metadata,
        project_id: Uuid,
        input: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        let id = required_uuid(input, "id")?;
        let events = self
            .store
            .read_stream(id, 0)
            .await
            .map_err(Failure::internal)?;
        let owned = events.first().is_some_and(|e| {
            matches!(
                PluginWakeupEvent::from_stored(&e.event_type, &e.payload),
                Ok(PluginWakeupEvent::Scheduled { ref plugin, .. }) if *plugin == svc.name
            )
        });
        if !owned {
            return Err(Failure::new("NOT_FOUND", "wakeup not found"));
        }
        if events.len() > 1 {
            return Err(Failure::new(
                "CONFLICT",
                "the wakeup has already fired or been cancelled",
            ));
        }
        let event = PluginWakeupEvent::Cancelled {
            plugin: svc.name.clone(),
        };
        match self
            .store
            .append(
                StreamRef {
                    stream_type: WAKEUP_STREAM_TYPE,
                    stream_id: id,
                    project_id: Some(project_id),
                },
                ExpectedVersion::Exact(1),
                vec![NewEvent::new(
                    event.event_type(),
                    event.to_payload(),
                    meta.clone(),
                )],
            )
            .await
        {
            Ok(_) => Ok(json!({"cancelled": true})),
            Err(AppendError::VersionConflict { .. }) => Err(Failure::new(
                "CONFLICT",
                "the wakeup has already fired or been cancelled",
            )),
            Err(e) => Err(Failure::internal(e)),
        }
    }

    async fn set_summary(
        &self,
        svc: &PluginServices,
        meta: &Metadata,
        project_id: Uuid,
        input: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        let task_id = uuid_field(input, "task_id")?;
        let summary = input
            .get("summary")
            .cloned()
            .ok_or_else(|| Failure::bad_request("summary is required (null clears it)"))?;
        if serde_json::to_vec(&summary).map_or(0, |b| b.len()) > 64 * 1024 {
            return Err(Failure::bad_request("summary is larger than 64 KiB"));
        }
        let event = PluginActivityEvent::SummarySet {
            plugin: svc.name.clone(),
            project_id,
            task_id,
            summary,
        };
        self.store
            .append(
                StreamRef {
                    stream_type: ACTIVITY_STREAM_TYPE,
                    stream_id: activity_stream_id(&svc.name),
                    project_id: Some(project_id),
                },
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    event.event_type(),
                    event.to_payload(),
                    meta.clone(),
                )],
            )
            .await
            .map_err(Failure::internal)?;
        Ok(json!({"ok": true}))
    }
}

/// Checks `permission` for the user in the project on the write side's
/// directory; returns the user's member id there.
fn authorise(
    directory: &Directory,
    user_id: Uuid,
    project_id: Uuid,
    permission: &str,
) -> Result<Option<Uuid>, Failure> {
    let user = directory
        .user(user_id)
        .ok_or_else(|| Failure::forbidden("the calling user no longer exists"))?;
    let project = directory
        .project(project_id, Some(user_id))
        .ok_or_else(|| Failure::new("PROJECT_NOT_FOUND", "project not found"))?;
    let public_read = project.is_public && permission.ends_with(".read");
    if !public_read && !Directory::grants(&user, &project, permission) {
        return Err(Failure::forbidden(format!(
            "the caller lacks {permission} in this project"
        )));
    }
    Ok(project.member.map(|(member_id, _)| member_id))
}

/// The caller a wakeup runs as: its scheduler, in its project, with the
/// permissions they hold now.
pub fn wakeup_caller(directory: &Directory, user_id: Uuid, project_id: Uuid) -> Option<Caller> {
    let user = directory.user(user_id)?;
    let project = directory.project(project_id, Some(user_id));
    let role = directory
        .global_role(user.role_id)
        .map(|r| r.name)
        .unwrap_or_default();
    Some(Caller {
        user_id: Some(user_id),
        member_id: project.and_then(|p| p.member.map(|(m, _)| m)),
        project_id: Some(project_id),
        role,
        permissions: user.permissions.to_vec(),
        api_key_id: None,
    })
}
