//! What plugins reach of the core: read-only views of projects, tasks and
//! members (scoped to what the calling user may read, unlike Paca), the
//! caller's permissions, and appending the plugin's own events.

use domain::DomainEvent;
use domain::plugin::{ACTIVITY_STREAM_TYPE, PluginActivityEvent, activity_stream_id};
use eventstore::{Actor, EventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::host::CallContext;

/// Who a plugin call runs for.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user_id: Option<Uuid>,
    /// The caller's member id in `project_id` (project-scoped routes).
    pub member_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    /// Project role name on project-scoped routes, else the global role.
    pub role: String,
    /// The user's global permissions.
    pub permissions: Vec<String>,
    pub api_key_id: Option<Uuid>,
}

/// Event-type prefixes that belong to the core: a plugin cannot emit
/// `task.deleted` and fool other subscribers.
const RESERVED_TOPIC_PREFIXES: &[&str] = &[
    "user",
    "global_role",
    "project",
    "task",
    "sprint",
    "view",
    "doc",
    "agent",
    "conversation",
    "plugin",
    "member",
    "role",
    "comment",
    "activity",
    "notification",
    "chat",
    "system",
];

pub fn topic_allowed(topic: &str) -> Result<(), String> {
    if topic.is_empty()
        || topic.len() > 128
        || !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(format!("invalid topic {topic:?}"));
    }
    let first = topic.split(['.', ':']).next().unwrap_or_default();
    if RESERVED_TOPIC_PREFIXES.contains(&first) {
        return Err(format!("topic {topic:?} is reserved for core events"));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Core {
    pub pool: PgPool,
    pub store: EventStore,
    /// The write side (orchestration: permissions from its directory).
    pub commands: Option<commands::Commands>,
    /// The gateway's task and document operations, once it is built.
    pub api: crate::orchestrate::CoreApiSlot,
}

impl Core {
    /// Whether `caller` holds `permission`, globally or (with a project)
    /// through their project role; read permissions are open on public
    /// projects. Fails closed.
    pub async fn can(
        &self,
        caller: &Caller,
        project_id: Option<Uuid>,
        permission: &str,
    ) -> Result<bool, String> {
        let is_read = permission.ends_with(".read");
        if caller.user_id.is_some() && domain::permissions::grants(&caller.permissions, permission)
        {
            return Ok(true);
        }
        let Some(project_id) = project_id else {
            return Ok(false);
        };
        let public: Option<bool> = sqlx::query_scalar(
            "SELECT is_public FROM projects WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        let Some(public) = public else {
            return Ok(false);
        };
        if is_read && public {
            return Ok(true);
        }
        let Some(user_id) = caller.user_id else {
            return Ok(false);
        };
        let member = projections::queries::member_permissions(&self.pool, project_id, user_id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(member.is_some_and(|p| domain::permissions::grants(&p, permission)))
    }

    /// Core reads for `tasks_list`, `task_get`, `project_get`,
    /// `members_list`. `caller` is `None` inside `Init`/`HandleEvent`
    /// (system context: the administrator installed the plugin).
    pub async fn read(&self, which: &str, arg: &str, caller: Option<&Caller>) -> Value {
        match self.read_inner(which, arg, caller).await {
            Ok(v) => v,
            Err(e) => json!({"error": e}),
        }
    }

    async fn read_inner(
        &self,
        which: &str,
        arg: &str,
        caller: Option<&Caller>,
    ) -> Result<Value, String> {
        let id = Uuid::parse_str(arg.trim()).map_err(|_| format!("invalid id {arg:?}"))?;
        let db = |e: sqlx::Error| e.to_string();
        let project_id = if which == "task_get" {
            sqlx::query_scalar::<_, Uuid>(
                "SELECT project_id FROM tasks WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or("task not found")?
        } else {
            id
        };
        let permission = match which {
            "tasks_list" | "task_get" => "tasks.read",
            "members_list" => "project.members.read",
            _ => "projects.read",
        };
        if let Some(caller) = caller
            && !self.can(caller, Some(project_id), permission).await?
        {
            return Err("forbidden".into());
        }
        match which {
            "tasks_list" => {
                let rows = sqlx::query(
                    "SELECT id, title, status_id, assignee_ids, task_number FROM tasks
                     WHERE project_id = $1 AND deleted_at IS NULL ORDER BY task_number DESC LIMIT 100",
                )
                .bind(project_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                if rows.is_empty() {
                    return Ok(Value::Null);
                }
                Ok(Value::Array(
                    rows.iter()
                        .map(|r| {
                            json!({
                                "id": r.get::<Uuid, _>("id"),
                                "title": r.get::<String, _>("title"),
                                "status_id": r.get::<Option<Uuid>, _>("status_id"),
                                "assignee_ids": r.get::<Value, _>("assignee_ids"),
                                "task_number": r.get::<i64, _>("task_number"),
                            })
                        })
                        .collect(),
                ))
            }
            "task_get" => {
                let r = sqlx::query(
                    "SELECT id, project_id, title, status_id, assignee_ids, task_number FROM tasks WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
                Ok(json!({
                    "id": r.get::<Uuid, _>("id"),
                    "project_id": r.get::<Uuid, _>("project_id"),
                    "title": r.get::<String, _>("title"),
                    "status_id": r.get::<Option<Uuid>, _>("status_id"),
                    "assignee_ids": r.get::<Value, _>("assignee_ids"),
                    "task_number": r.get::<i64, _>("task_number"),
                }))
            }
            "project_get" => {
                let r = sqlx::query(
                    "SELECT id, name, description, task_id_prefix FROM projects WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .ok_or("project not found")?;
                Ok(json!({
                    "id": r.get::<Uuid, _>("id"),
                    "name": r.get::<String, _>("name"),
                    "description": r.get::<String, _>("description"),
                    "task_id_prefix": r.get::<String, _>("task_id_prefix"),
                }))
            }
            "members_list" => {
                let rows = sqlx::query(
                    "SELECT m.id, u.username, u.full_name, COALESCE(r.role_name, '') AS role_name
                     FROM project_members m JOIN users u ON u.id = m.user_id
                     LEFT JOIN project_roles r ON r.id = m.project_role_id
                     WHERE m.project_id = $1 ORDER BY u.username",
                )
                .bind(project_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                Ok(Value::Array(
                    rows.iter()
                        .map(|r| {
                            json!({
                                "id": r.get::<Uuid, _>("id"),
                                "username": r.get::<String, _>("username"),
                                "full_name": r.get::<String, _>("full_name"),
                                "role_name": r.get::<String, _>("role_name"),
                            })
                        })
                        .collect(),
                ))
            }
            other => Err(format!("unknown core read {other}")),
        }
    }

    /// Event metadata for an effect of `plugin`: actor kind `plugin`, the
    /// plugin's id and name, and the user/member it acted for.
    pub fn metadata(plugin: &str, plugin_id: Uuid, call: &CallContext) -> Metadata {
        let caller = call
            .request
            .as_ref()
            .map(|r| r.caller.clone())
            .unwrap_or_default();
        let mut extra = serde_json::Map::new();
        extra.insert("plugin".into(), Value::String(plugin.to_owned()));
        Metadata {
            actor: Actor {
                kind: "plugin".into(),
                user_id: caller.user_id,
                member_id: caller.member_id,
                api_key_id: caller.api_key_id,
                plugin_id: Some(plugin_id),
                ..Actor::default()
            },
            source: "plugin".into(),
            request_id: call.request.as_ref().and_then(|r| r.request_id.clone()),
            correlation_id: call.request.as_ref().and_then(|r| r.request_id.clone()),
            causation_id: call.event_id,
            occurred_at: chrono::Utc::now(),
            extra,
        }
    }

    /// `event_emit`: appends `topic` (the event type) with the payload to the
    /// plugin's activity stream.
    pub async fn emit(
        &self,
        plugin: &str,
        plugin_id: Uuid,
        topic: &str,
        payload: &[u8],
        call: &CallContext,
    ) -> Result<(), String> {
        topic_allowed(topic)?;
        let payload: Value = if payload.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
        };
        let body = json!({"source": plugin, "payload": payload});
        let project_id = call.request.as_ref().and_then(|r| r.caller.project_id);
        self.store
            .append(
                StreamRef {
                    stream_type: ACTIVITY_STREAM_TYPE,
                    stream_id: activity_stream_id(plugin),
                    project_id,
                },
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    topic,
                    body,
                    Self::metadata(plugin, plugin_id, call),
                )],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// `activity_record`: `{"task_id","activity_type","content"}` about a
    /// task of the request's project, as a `plugin.activity_recorded` event.
    pub async fn record_activity(
        &self,
        plugin: &str,
        plugin_id: Uuid,
        input: &[u8],
        call: &CallContext,
    ) -> Result<(), String> {
        let input: Value =
            serde_json::from_slice(input).map_err(|e| format!("invalid JSON: {e}"))?;
        let task_id = input
            .get("task_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or("task_id is required")?;
        let activity_type = input
            .get("activity_type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or("activity_type is required")?
            .to_owned();
        let content = input.get("content").cloned().unwrap_or(Value::Null);
        let task_project: Uuid =
            sqlx::query_scalar("SELECT project_id FROM tasks WHERE id = $1 AND deleted_at IS NULL")
                .bind(task_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("task not found")?;
        if let Some(project_id) = call.request.as_ref().and_then(|r| r.caller.project_id)
            && project_id != task_project
        {
            return Err("the task is not in the request's project".into());
        }
        let event = PluginActivityEvent::ActivityRecorded {
            plugin: plugin.to_owned(),
            task_id,
            project_id: task_project,
            activity_type,
            content,
        };
        self.store
            .append(
                StreamRef {
                    stream_type: ACTIVITY_STREAM_TYPE,
                    stream_id: activity_stream_id(plugin),
                    project_id: Some(task_project),
                },
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    event.event_type(),
                    event.to_payload(),
                    Self::metadata(plugin, plugin_id, call),
                )],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_topics_are_reserved() {
        assert!(topic_allowed("github.pr_linked").is_ok());
        assert!(topic_allowed("task.deleted").is_err());
        assert!(topic_allowed("plugin:x").is_err());
        assert!(topic_allowed("").is_err());
        assert!(topic_allowed("a b").is_err());
    }
}
