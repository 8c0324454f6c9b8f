//! `/projects/:id/agents`: agents as project members, their MCP servers,
//! skills and chat sessions; `/agents/skill-templates` and
//! `/agents/llm-models`; `…/tasks/:taskId/write-with-ai`.
//!
//! Secrets go in (`llm_api_key`, secret-like MCP env values) and never come
//! out: responses say `has_llm_api_key` and show env values `***`.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use commands::agents::{AgentPatch, McpServerPatch, NewAgent};
use domain::ErrorCode;
use domain::agent::{AgentCommand, McpServer, SettingsInput, Skill};
use projections::queries_agents as q;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Auth, ProjectAuth, perm};
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;
use crate::rest::task_config::three_state;

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::AGENT_NOT_FOUND, "agent not found")
}

async fn agent_view(
    state: &AppState,
    project_id: Uuid,
    agent_id: Uuid,
) -> ApiResult<Map<String, Value>> {
    q::agent(&state.pool, project_id, agent_id)
        .await?
        .ok_or_else(not_found)
}

/// The agent with its MCP servers and skills (GET one, create, patch).
async fn agent_detail(
    state: &AppState,
    project_id: Uuid,
    agent_id: Uuid,
) -> ApiResult<Map<String, Value>> {
    let mut agent = agent_view(state, project_id, agent_id).await?;
    agent.insert(
        "mcp_servers".into(),
        json!(q::mcp_servers(&state.pool, agent_id).await?),
    );
    agent.insert(
        "skills".into(),
        json!(q::skills(&state.pool, agent_id).await?),
    );
    Ok(agent)
}

pub async fn list(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    project_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    ok(q::agents(&state.pool, project_id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "AgentCreateBody")]
pub struct CreateBody {
    handle: Option<String>,
    project_role_id: Option<Uuid>,
    llm_api_key: Option<String>,
    #[serde(flatten)]
    settings: SettingsInput,
}

pub async fn create(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    project_id: web::Path<Uuid>,
    body: Json<CreateBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let body = body.into_inner();
    let handle = body
        .handle
        .ok_or_else(|| ApiError::new(ErrorCode::AGENT_HANDLE_INVALID, "handle is required"))?;
    let project_role_id = body
        .project_role_id
        .ok_or_else(|| ApiError::new(ErrorCode::ROLE_REQUIRED, "project_role_id is required"))?;
    if body
        .llm_api_key
        .as_deref()
        .is_none_or(|k| k.trim().is_empty())
    {
        return Err(ApiError::bad_request("llm_api_key is required"));
    }
    let (agent_id, _) = state
        .commands
        .create_agent(
            &principal.metadata(),
            project_id,
            NewAgent {
                handle,
                project_role_id,
                settings: body.settings,
                llm_api_key: body.llm_api_key,
            },
        )
        .await?;
    created(agent_detail(&state, project_id, agent_id).await?)
}

pub async fn get(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    ok(agent_detail(&state, project_id, agent_id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "AgentPatchBody")]
pub struct PatchBody {
    handle: Option<String>,
    project_role_id: Option<Uuid>,
    #[serde(default, deserialize_with = "three_state")]
    llm_api_key: Option<Option<String>>,
    #[serde(flatten)]
    settings: SettingsInput,
}

pub async fn patch(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<PatchBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    let body = body.into_inner();
    state
        .commands
        .update_agent(
            &principal.metadata(),
            project_id,
            agent_id,
            AgentPatch {
                handle: body.handle,
                project_role_id: body.project_role_id,
                settings: body.settings,
                llm_api_key: body.llm_api_key,
            },
        )
        .await?;
    ok(agent_detail(&state, project_id, agent_id).await?)
}

pub async fn delete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    state
        .commands
        .delete_agent(&principal.metadata(), project_id, agent_id)
        .await?;
    no_content()
}

// ---------------------------------------------------------------- MCP servers

#[derive(Deserialize, schemars::JsonSchema)]
pub struct McpCreateBody {
    server_name: Option<String>,
    transport: Option<String>,
    command: Option<String>,
    args: Option<Vec<String>>,
    url: Option<String>,
    env: Option<BTreeMap<String, String>>,
    is_enabled: Option<bool>,
}

pub async fn list_mcp(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    agent_view(&state, project_id, agent_id).await?;
    ok(q::mcp_servers(&state.pool, agent_id).await?)
}

fn mcp_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::AGENT_MCP_SERVER_NOT_FOUND,
        "MCP server not found",
    )
}

pub async fn create_mcp(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<McpCreateBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    let body = body.into_inner();
    let server = McpServer {
        server_name: body
            .server_name
            .ok_or_else(|| ApiError::bad_request("server_name is required"))?,
        transport: body
            .transport
            .ok_or_else(|| ApiError::bad_request("transport is required (stdio, sse or http)"))?,
        command: body.command,
        args: body.args.unwrap_or_default(),
        url: body.url,
        env: body.env.unwrap_or_default(),
        is_enabled: body.is_enabled.unwrap_or(true),
    };
    let server_id = state
        .commands
        .add_mcp_server(&principal.metadata(), project_id, agent_id, server)
        .await?;
    created(
        q::mcp_server(&state.pool, agent_id, server_id)
            .await?
            .ok_or_else(mcp_not_found)?,
    )
}

pub async fn get_mcp(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, server_id) = path.into_inner();
    agent_view(&state, project_id, agent_id).await?;
    ok(q::mcp_server(&state.pool, agent_id, server_id)
        .await?
        .ok_or_else(mcp_not_found)?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct McpPatchBody {
    #[serde(default, deserialize_with = "three_state")]
    command: Option<Option<String>>,
    args: Option<Vec<String>>,
    #[serde(default, deserialize_with = "three_state")]
    url: Option<Option<String>>,
    env: Option<BTreeMap<String, String>>,
    is_enabled: Option<bool>,
}

pub async fn patch_mcp(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    body: Json<McpPatchBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, server_id) = path.into_inner();
    let body = body.into_inner();
    state
        .commands
        .update_mcp_server(
            &principal.metadata(),
            project_id,
            agent_id,
            server_id,
            McpServerPatch {
                command: body.command,
                args: body.args,
                url: body.url,
                env: body.env,
                is_enabled: body.is_enabled,
            },
        )
        .await?;
    ok(q::mcp_server(&state.pool, agent_id, server_id)
        .await?
        .ok_or_else(mcp_not_found)?)
}

pub async fn delete_mcp(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, server_id) = path.into_inner();
    state
        .commands
        .remove_mcp_server(&principal.metadata(), project_id, agent_id, server_id)
        .await?;
    no_content()
}

// --------------------------------------------------------------------- skills

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SkillCreateBody {
    skill_name: Option<String>,
    skill_source: Option<String>,
    skill_content: Option<String>,
    source_url: Option<String>,
    triggers: Option<Vec<String>>,
    is_enabled: Option<bool>,
}

fn skill_not_found() -> ApiError {
    ApiError::new(ErrorCode::AGENT_SKILL_NOT_FOUND, "skill not found")
}

pub async fn list_skills(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    agent_view(&state, project_id, agent_id).await?;
    ok(q::skills(&state.pool, agent_id).await?)
}

pub async fn create_skill(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<SkillCreateBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    let body = body.into_inner();
    let skill = Skill {
        skill_name: body.skill_name.ok_or_else(|| {
            ApiError::new(
                ErrorCode::AGENT_SKILL_NAME_INVALID,
                "skill_name is required",
            )
        })?,
        skill_source: body.skill_source.ok_or_else(|| {
            ApiError::bad_request("skill_source is required (inline, marketplace or github_url)")
        })?,
        skill_content: body.skill_content.unwrap_or_default(),
        source_url: body.source_url,
        triggers: body.triggers.unwrap_or_default(),
        is_enabled: body.is_enabled.unwrap_or(true),
    };
    let skill_id = state
        .commands
        .add_skill(&principal.metadata(), project_id, agent_id, skill)
        .await?;
    created(
        q::skill(&state.pool, agent_id, skill_id)
            .await?
            .ok_or_else(skill_not_found)?,
    )
}

pub async fn get_skill(
    state: web::Data<AppState>,
    ProjectAuth { principal: _, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, skill_id) = path.into_inner();
    agent_view(&state, project_id, agent_id).await?;
    ok(q::skill(&state.pool, agent_id, skill_id)
        .await?
        .ok_or_else(skill_not_found)?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SkillPatchBody {
    skill_content: Option<String>,
    triggers: Option<Vec<String>>,
    is_enabled: Option<bool>,
}

pub async fn patch_skill(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    body: Json<SkillPatchBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, skill_id) = path.into_inner();
    let body = body.into_inner();
    state
        .commands
        .update_skill(
            &principal.metadata(),
            project_id,
            agent_id,
            AgentCommand::UpdateSkill {
                skill_id,
                skill_content: body.skill_content,
                triggers: body.triggers,
                is_enabled: body.is_enabled,
            },
        )
        .await?;
    ok(q::skill(&state.pool, agent_id, skill_id)
        .await?
        .ok_or_else(skill_not_found)?)
}

pub async fn delete_skill(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, skill_id) = path.into_inner();
    state
        .commands
        .update_skill(
            &principal.metadata(),
            project_id,
            agent_id,
            AgentCommand::RemoveSkill { skill_id },
        )
        .await?;
    no_content()
}

// --------------------------------------------------------------- chat sessions

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ChatBody {
    message: Option<String>,
}

fn message_of(body: ChatBody) -> ApiResult<String> {
    body.message
        .ok_or_else(|| ApiError::bad_request("message is required"))
}

pub async fn list_chat_sessions(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    agent_view(&state, project_id, agent_id).await?;
    // Each member sees their own threads with the agent.
    let mine = principal.agent.is_none().then(|| principal.id());
    ok(q::chat_sessions(&state.pool, agent_id, mine).await?)
}

pub async fn start_chat_session(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<ChatBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id) = path.into_inner();
    let message = message_of(body.into_inner())?;
    let (session_id, conversation_id) = state
        .commands
        .start_chat(&principal.metadata(), project_id, agent_id, message)
        .await?;
    let session = q::chat_session(&state.pool, session_id)
        .await?
        .ok_or_else(|| ApiError::internal("chat session missing after commit"))?;
    let conversation = q::conversation(&state.pool, project_id, conversation_id).await?;
    let mut out = serde_json::to_value(session).unwrap_or_default();
    if let Value::Object(map) = &mut out {
        map.insert("conversation".into(), json!(conversation));
        map.insert("conversation_id".into(), json!(conversation_id));
    }
    created(out)
}

pub async fn post_chat_message(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    body: Json<ChatBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, agent_id, session_id) = path.into_inner();
    let message = message_of(body.into_inner())?;
    let conversation_id = state
        .commands
        .post_chat_message(
            &principal.metadata(),
            project_id,
            agent_id,
            session_id,
            message,
        )
        .await?;
    let conversation = q::conversation(&state.pool, project_id, conversation_id).await?;
    created(json!({
        "message": "message sent",
        "chat_session_id": session_id,
        "conversation_id": conversation_id,
        "conversation": conversation,
    }))
}

// ------------------------------------------------------------------ write with AI

#[derive(Deserialize, schemars::JsonSchema)]
pub struct WriteWithAiBody {
    agent_id: Option<Uuid>,
}

pub async fn write_with_ai(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::AgentsRead>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<WriteWithAiBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    let agent_id = body
        .into_inner()
        .agent_id
        .ok_or_else(|| ApiError::bad_request("agent_id is required"))?;
    let conversation_id = state
        .commands
        .write_with_ai(&principal.metadata(), project_id, task_id, agent_id)
        .await?;
    let conversation = q::conversation(&state.pool, project_id, conversation_id)
        .await?
        .ok_or_else(|| ApiError::internal("conversation missing after commit"))?;
    created(json!({ "conversation": conversation }))
}

// ------------------------------------------------------------ global utilities

pub async fn skill_templates(Auth(_): Auth) -> ApiResult<HttpResponse> {
    ok(domain::agent::skill_templates())
}

/// The documented static catalog (provider -> model ids), used when no
/// `LLM_MODELS_URL` is configured or it cannot be reached.
pub fn static_models() -> Value {
    json!({
        "anthropic": ["claude-sonnet-4-6", "claude-opus-4-1", "claude-haiku-4-5"],
        "openai": ["gpt-5", "gpt-5-mini", "gpt-4.1", "o4-mini"],
        "gemini": ["gemini-2.5-pro", "gemini-2.5-flash"],
        "mistral": ["mistral-large-latest", "devstral-medium-latest"],
        "deepseek": ["deepseek-chat", "deepseek-reasoner"],
    })
}

/// `GET /agents/llm-models`: a map of provider -> model ids. With
/// `LLM_MODELS_URL` (an OpenAI-compatible base URL; `/models` is appended
/// unless present) the `openai` entry (or `LLM_MODELS_PROVIDER`) comes from
/// that endpoint; an unreachable or malformed endpoint falls back to the
/// static list (never a 500).
pub async fn llm_models(Auth(_): Auth) -> ApiResult<HttpResponse> {
    let mut models = static_models();
    let Some(base) = std::env::var("LLM_MODELS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        return ok(models);
    };
    let provider = std::env::var("LLM_MODELS_PROVIDER").unwrap_or_else(|_| "openai".into());
    let url = if base.trim_end_matches('/').ends_with("/models") {
        base.clone()
    } else {
        format!("{}/models", base.trim_end_matches('/'))
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build();
    let fetched = async {
        let client = client.ok()?;
        let mut request = client.get(&url);
        if let Ok(key) = std::env::var("LLM_MODELS_API_KEY") {
            request = request.bearer_auth(key);
        }
        let body: Value = request
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        let ids: Vec<Value> = body
            .get("data")?
            .as_array()?
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .map(|id| Value::String(id.to_owned()))
            .collect();
        Some(ids)
    }
    .await;
    match fetched {
        Some(ids) if !ids.is_empty() => {
            if let Value::Object(map) = &mut models {
                map.insert(provider, Value::Array(ids));
            }
        }
        _ => tracing::warn!(%url, "LLM model list unreachable; serving the static catalog"),
    }
    ok(models)
}
