//! The core operations plugins reach through the orchestration host
//! functions (`plugin_host::orchestrate`), carried out with REST's request
//! parsing, command handlers and views: a task a plugin creates is the task
//! `POST /tasks` would have created, with the same events. The host has
//! already checked the manifest and the caller's permission.

use std::sync::Arc;

use domain::ErrorCode;
use domain::task::LinkType;
use eventstore::Metadata;
use plugin_host::{CoreApi, Failure, Op, Target};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::rest::{docs, tasks};

pub struct PluginCoreApi(pub Arc<AppState>);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::new(e.code.as_str(), e.message)
    }
}

fn parse<T: DeserializeOwned>(input: Value) -> ApiResult<T> {
    serde_json::from_value(input).map_err(|e| ApiError::bad_request(format!("invalid input: {e}")))
}

fn uuid_of(input: &Value, name: &str) -> ApiResult<Uuid> {
    input
        .get(name)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required (a UUID)")))
}

/// Plain text becomes one BlockNote paragraph, as the web app writes it.
fn comment_content(content: Option<&Value>) -> Value {
    match content {
        Some(Value::String(text)) => json!([{
            "type": "paragraph",
            "content": [{"type": "text", "text": text, "styles": {}}],
        }]),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

#[async_trait::async_trait]
impl CoreApi for PluginCoreApi {
    async fn call(
        &self,
        op: Op,
        meta: &Metadata,
        target: &Target,
        input: Value,
    ) -> Result<Value, Failure> {
        Ok(self.run(op, meta, target, input).await?)
    }
}

impl PluginCoreApi {
    async fn run(
        &self,
        op: Op,
        meta: &Metadata,
        target: &Target,
        input: Value,
    ) -> ApiResult<Value> {
        let state = &*self.0;
        let project_id = target.project_id;
        match op {
            Op::TaskCreate => {
                let fields = parse::<tasks::CreateBody>(input)?.into_fields()?;
                let Some(task_id) = target.origin_task_id else {
                    let created = state
                        .commands
                        .create_task_recorded(meta, project_id, Uuid::now_v7(), fields)
                        .await?;
                    let task = tasks::created_task(state, project_id, &created).await?;
                    return Ok(json!({"created": true, "task": task}));
                };
                // The origin key names the task: an existing one is the
                // answer, a concurrent create of the same key loses the
                // stream and finds the winner's task.
                if state.commands.task_project(task_id).await?.is_none() {
                    match state
                        .commands
                        .create_task_recorded(meta, project_id, task_id, fields)
                        .await
                    {
                        Ok(created) => {
                            let task = tasks::created_task(state, project_id, &created).await?;
                            return Ok(json!({"created": true, "task": task}));
                        }
                        Err(commands::CommandError::Conflict(id)) if id == task_id => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if state.commands.task_project(task_id).await? != Some(project_id) {
                    return Err(ApiError::new(
                        ErrorCode::CONFLICT,
                        "this origin key names a task of another project",
                    ));
                }
                let task = tasks::live_task(state, project_id, task_id)
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            ErrorCode::CONFLICT,
                            "the task of this origin key was deleted",
                        )
                    })?;
                Ok(json!({"created": false, "task": task}))
            }
            Op::TaskUpdate => {
                let task_id = uuid_of(&input, "task_id")?;
                let patch = parse::<tasks::PatchBody>(input)?.into_patch()?;
                state
                    .commands
                    .update_task(meta, project_id, task_id, patch, None)
                    .await?;
                Ok(json!({"task": tasks::live_task(state, project_id, task_id).await?}))
            }
            Op::TaskComment => {
                let task_id = uuid_of(&input, "task_id")?;
                let content = comment_content(input.get("content"));
                let author = meta
                    .actor
                    .user_id
                    .ok_or_else(|| ApiError::new(ErrorCode::FORBIDDEN, "no calling user"))?;
                let comment_id = state
                    .commands
                    .add_comment(meta, project_id, task_id, author, content)
                    .await?;
                Ok(json!({"comment_id": comment_id}))
            }
            Op::TaskLink => {
                let task_id = uuid_of(&input, "task_id")?;
                let target_task_id = uuid_of(&input, "target_task_id")?;
                let link_type = LinkType::parse(
                    input
                        .get("link_type")
                        .and_then(Value::as_str)
                        .unwrap_or("blocks"),
                )?;
                let (link_id, _) = state
                    .commands
                    .add_link(meta, project_id, task_id, target_task_id, link_type)
                    .await?;
                Ok(json!({"link_id": link_id}))
            }
            Op::DocsList => {
                let folder = match input.get("folder_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s == "root" => Some(None),
                    Some(_) => Some(Some(uuid_of(&input, "folder_id")?)),
                };
                let items =
                    projections::queries_docs::docs(&state.pool, project_id, folder).await?;
                Ok(json!({"items": items}))
            }
            Op::DocGet => {
                let doc_id = uuid_of(&input, "doc_id")?;
                Ok(json!({"doc": docs::live_doc(state, project_id, doc_id).await?}))
            }
            Op::DocCreate => {
                let new = parse::<docs::CreateBody>(input)?.into_new()?;
                let doc_id = state.commands.create_doc(meta, project_id, new).await?;
                Ok(json!({"doc": docs::live_doc(state, project_id, doc_id).await?}))
            }
            Op::DocUpdate => {
                let doc_id = uuid_of(&input, "doc_id")?;
                let mut fields: Map<String, Value> = match input {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                fields.remove("doc_id");
                fields.remove("project_id");
                let patch = parse::<docs::PatchBody>(Value::Object(fields))?.into_patch();
                state
                    .commands
                    .update_doc(meta, project_id, doc_id, patch)
                    .await?;
                Ok(json!({"doc": docs::live_doc(state, project_id, doc_id).await?}))
            }
        }
    }
}
