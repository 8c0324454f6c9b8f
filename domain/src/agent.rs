//! The agent aggregate: one stream per project agent (seed pages 06, 12).
//!
//! An agent is also a project member: its membership lives in the project
//! aggregate (`project.agent_member_added`) and is appended in the same
//! transaction as `agent.created`. Handles are unique per project through
//! the write-side reservation table, like usernames.
//!
//! Secrets never enter these events: the LLM API key and the values of
//! secret-like MCP env keys live encrypted in `agent_credentials`; the log
//! records only that they are set (`has_llm_api_key`, env values `***`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::change::{FieldChange, apply, diff};
use crate::{Decision, DomainError, DomainEvent, ErrorCode, validate};

crate::fields! {
    /// An agent's tracked fields: its handle and every [`AgentSettings`]
    /// field, by serde name (`diff` and `apply` rely on it).
    pub enum AgentField {
        Handle = "handle",
        Name = "name",
        AgentType = "agent_type",
        LlmProvider = "llm_provider",
        LlmModel = "llm_model",
        LlmBaseUrl = "llm_base_url",
        SystemPrompt = "system_prompt",
        TaskTriggerPrompt = "task_trigger_prompt",
        DocCommentTriggerPrompt = "doc_comment_trigger_prompt",
        ChatTriggerPrompt = "chat_trigger_prompt",
        DescriptionWriteTriggerPrompt = "description_write_trigger_prompt",
        CanCloneRepos = "can_clone_repos",
        CanCreatePrs = "can_create_prs",
        MaxIterations = "max_iterations",
        TimeoutMinutes = "timeout_minutes",
        GitCommitterName = "git_committer_name",
        GitCommitterEmail = "git_committer_email",
    }
}

crate::fields! {
    /// An MCP server's tracked fields ([`McpServer`]'s serde names).
    pub enum McpServerField {
        ServerName = "server_name",
        Transport = "transport",
        Command = "command",
        Args = "args",
        Url = "url",
        Env = "env",
        IsEnabled = "is_enabled",
    }
}

crate::fields! {
    /// A skill's tracked fields ([`Skill`]'s serde names).
    pub enum SkillField {
        SkillName = "skill_name",
        SkillSource = "skill_source",
        SkillContent = "skill_content",
        SourceUrl = "source_url",
        Triggers = "triggers",
        IsEnabled = "is_enabled",
    }
}

pub const NAME_MAX: usize = 100;
pub const HANDLE_MIN: usize = 2;
pub const HANDLE_MAX: usize = 40;
pub const PROMPT_MAX: usize = 50_000;
pub const SKILL_CONTENT_MAX: usize = 200_000;
/// Seed page 12: default and hard cap of OpenHands steps per conversation.
pub const MAX_ITERATIONS: i64 = 500;
/// Seed page 12: wall-clock timeout, default 30, max 480 minutes.
pub const DEFAULT_TIMEOUT_MINUTES: i64 = 30;
pub const MAX_TIMEOUT_MINUTES: i64 = 480;
pub const DEFAULT_GIT_NAME: &str = "paca-agent";
pub const DEFAULT_GIT_EMAIL: &str = "280579135+paca-agent@users.noreply.github.com";
pub const TRANSPORTS: &[&str] = &["stdio", "sse", "http"];
pub const SKILL_SOURCES: &[&str] = &["inline", "marketplace", "github_url"];
/// What an env value of a secret-like key reads back as.
pub const MASK: &str = "***";

/// The agent's configuration as the API shows it (everything but secrets
/// and identity). Stored flat in `agent.created`; `agent.updated` names
/// these fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSettings {
    pub name: String,
    pub agent_type: String,
    pub llm_provider: String,
    pub llm_model: String,
    pub llm_base_url: Option<String>,
    pub system_prompt: String,
    pub task_trigger_prompt: String,
    pub doc_comment_trigger_prompt: String,
    pub chat_trigger_prompt: String,
    pub description_write_trigger_prompt: String,
    pub can_clone_repos: bool,
    pub can_create_prs: bool,
    pub max_iterations: i64,
    pub timeout_minutes: i64,
    pub git_committer_name: String,
    pub git_committer_email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServer {
    pub server_name: String,
    pub transport: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub url: Option<String>,
    /// Secret-like keys carry [`MASK`]; their values are in the credential
    /// table.
    pub env: BTreeMap<String, String>,
    pub is_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    pub skill_name: String,
    pub skill_source: String,
    pub skill_content: String,
    pub source_url: Option<String>,
    pub triggers: Vec<String>,
    pub is_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
#[allow(clippy::large_enum_variant)] // decoded one at a time
pub enum AgentEvent {
    #[serde(rename = "agent.created")]
    Created {
        project_id: Uuid,
        member_id: Uuid,
        project_role_id: Uuid,
        handle: String,
        #[serde(flatten)]
        settings: AgentSettings,
        has_llm_api_key: bool,
        created_by: Option<Uuid>,
    },
    /// `changes` name fields of [`AgentSettings`] or `handle`.
    #[serde(rename = "agent.updated")]
    Updated {
        changes: Vec<FieldChange<AgentField>>,
    },
    /// The LLM key was set, rotated or cleared; never its value.
    #[serde(rename = "agent.llm_key_changed")]
    LlmKeyChanged { has_llm_api_key: bool },
    #[serde(rename = "agent.deleted")]
    Deleted { handle: String, member_id: Uuid },
    #[serde(rename = "agent.mcp_server_added")]
    McpServerAdded {
        server_id: Uuid,
        #[serde(flatten)]
        server: McpServer,
    },
    #[serde(rename = "agent.mcp_server_updated")]
    McpServerUpdated {
        server_id: Uuid,
        changes: Vec<FieldChange<McpServerField>>,
    },
    #[serde(rename = "agent.mcp_server_removed")]
    McpServerRemoved {
        server_id: Uuid,
        server_name: String,
    },
    #[serde(rename = "agent.skill_added")]
    SkillAdded {
        skill_id: Uuid,
        #[serde(flatten)]
        skill: Skill,
    },
    #[serde(rename = "agent.skill_updated")]
    SkillUpdated {
        skill_id: Uuid,
        changes: Vec<FieldChange<SkillField>>,
    },
    #[serde(rename = "agent.skill_removed")]
    SkillRemoved { skill_id: Uuid, skill_name: String },
}

impl DomainEvent for AgentEvent {
    const STREAM_TYPE: &'static str = "agent";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agent {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub member_id: Uuid,
    pub handle: String,
    pub settings: Option<AgentSettings>,
    pub has_llm_api_key: bool,
    pub mcp_servers: BTreeMap<Uuid, McpServer>,
    pub skills: BTreeMap<Uuid, Skill>,
}

/// Optional fields of a create or a PATCH (absent = keep / default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct SettingsInput {
    pub name: Option<String>,
    pub agent_type: Option<String>,
    pub llm_provider: Option<String>,
    pub llm_model: Option<String>,
    /// Three-state: absent keeps, `null` or `""` clears.
    #[serde(default, deserialize_with = "three_state")]
    pub llm_base_url: Option<Option<String>>,
    pub system_prompt: Option<String>,
    pub task_trigger_prompt: Option<String>,
    pub doc_comment_trigger_prompt: Option<String>,
    pub chat_trigger_prompt: Option<String>,
    pub description_write_trigger_prompt: Option<String>,
    pub can_clone_repos: Option<bool>,
    pub can_create_prs: Option<bool>,
    pub max_iterations: Option<i64>,
    pub timeout_minutes: Option<i64>,
    pub git_committer_name: Option<String>,
    pub git_committer_email: Option<String>,
}

fn three_state<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone)]
pub enum AgentCommand {
    Create {
        project_id: Uuid,
        member_id: Uuid,
        project_role_id: Uuid,
        handle: String,
        settings: SettingsInput,
        has_llm_api_key: bool,
        created_by: Option<Uuid>,
    },
    Update {
        handle: Option<String>,
        settings: SettingsInput,
    },
    /// `Some(true)`: a key was stored (set or rotated); `Some(false)`:
    /// cleared.
    ChangeLlmKey {
        has_llm_api_key: bool,
    },
    Delete,
    AddMcpServer {
        server_id: Uuid,
        server: McpServer,
    },
    UpdateMcpServer {
        server_id: Uuid,
        command: Option<Option<String>>,
        args: Option<Vec<String>>,
        url: Option<Option<String>>,
        env: Option<BTreeMap<String, String>>,
        is_enabled: Option<bool>,
    },
    RemoveMcpServer {
        server_id: Uuid,
    },
    AddSkill {
        skill_id: Uuid,
        skill: Skill,
    },
    UpdateSkill {
        skill_id: Uuid,
        skill_content: Option<String>,
        triggers: Option<Vec<String>>,
        is_enabled: Option<bool>,
    },
    RemoveSkill {
        skill_id: Uuid,
    },
}

/// The handle pattern (documented in docs/agents.md): 2-40 characters of
/// lowercase ASCII letters, digits, `-` and `_`, starting with a letter or
/// digit and not ending in `-` or `_`. A leading `@` is accepted and
/// dropped; input is lowercased first, so `@Dev-Bot` is `dev-bot`.
pub fn normalize_handle(raw: &str) -> Result<String, DomainError> {
    let handle = raw.trim();
    let handle = handle.strip_prefix('@').unwrap_or(handle).to_lowercase();
    let chars: Vec<char> = handle.chars().collect();
    let valid = (HANDLE_MIN..=HANDLE_MAX).contains(&chars.len())
        && chars
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        && chars[0].is_ascii_alphanumeric()
        && chars[chars.len() - 1].is_ascii_alphanumeric();
    if !valid {
        return Err(DomainError::new(
            ErrorCode::AGENT_HANDLE_INVALID,
            "handle must be 2-40 characters of a-z, 0-9, '-' and '_', starting and ending with a letter or digit",
        ));
    }
    Ok(handle)
}

/// Env keys whose values are secrets: stored encrypted, read back `***`.
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    [
        "KEY",
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PWD",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// The env map as it is recorded: secret-like values masked.
pub fn masked_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                MASK.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn text_max(value: &str, max: usize, what: &str) -> Result<(), DomainError> {
    if value.chars().count() > max || value.contains('\0') {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("{what} must be at most {max} characters without NUL"),
        ));
    }
    Ok(())
}

fn required(value: Option<String>, what: &str) -> Result<String, DomainError> {
    let value = value.map(|v| v.trim().to_owned()).unwrap_or_default();
    if value.is_empty() {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("{what} is required"),
        ));
    }
    text_max(&value, 200, what)?;
    Ok(value)
}

fn base_url(value: Option<String>) -> Result<Option<String>, DomainError> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(url) = &value
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            "llm_base_url must be an http:// or https:// URL",
        ));
    }
    if let Some(url) = &value {
        text_max(url, 2000, "llm_base_url")?;
    }
    Ok(value)
}

fn bounded(value: i64, min: i64, max: i64, what: &str) -> Result<i64, DomainError> {
    if !(min..=max).contains(&value) {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("{what} must be between {min} and {max}"),
        ));
    }
    Ok(value)
}

impl AgentSettings {
    /// A new agent's settings: the given values validated, defaults for
    /// the rest (seed page 12).
    pub fn create(input: SettingsInput) -> Result<Self, DomainError> {
        let name = validate::bounded_name(
            input.name.as_deref().unwrap_or_default(),
            NAME_MAX,
            ErrorCode::AGENT_NAME_INVALID,
            "name",
        )?;
        let agent_type = input.agent_type.unwrap_or_else(|| "llm".into());
        validate::one_of(
            &agent_type,
            &["llm"],
            ErrorCode::AGENT_TYPE_INVALID,
            "agent_type",
        )?;
        let settings = Self {
            name,
            agent_type,
            llm_provider: required(input.llm_provider, "llm_provider")?,
            llm_model: required(input.llm_model, "llm_model")?,
            llm_base_url: base_url(input.llm_base_url.flatten())?,
            system_prompt: input.system_prompt.unwrap_or_default(),
            task_trigger_prompt: input.task_trigger_prompt.unwrap_or_default(),
            doc_comment_trigger_prompt: input.doc_comment_trigger_prompt.unwrap_or_default(),
            chat_trigger_prompt: input.chat_trigger_prompt.unwrap_or_default(),
            description_write_trigger_prompt: input
                .description_write_trigger_prompt
                .unwrap_or_default(),
            can_clone_repos: input.can_clone_repos.unwrap_or(true),
            can_create_prs: input.can_create_prs.unwrap_or(true),
            max_iterations: bounded(
                input.max_iterations.unwrap_or(MAX_ITERATIONS),
                1,
                MAX_ITERATIONS,
                "max_iterations",
            )?,
            timeout_minutes: bounded(
                input.timeout_minutes.unwrap_or(DEFAULT_TIMEOUT_MINUTES),
                1,
                MAX_TIMEOUT_MINUTES,
                "timeout_minutes",
            )?,
            git_committer_name: input
                .git_committer_name
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_GIT_NAME.into()),
            git_committer_email: input
                .git_committer_email
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_GIT_EMAIL.into()),
        };
        settings.check_texts()?;
        Ok(settings)
    }

    fn check_texts(&self) -> Result<(), DomainError> {
        for (what, value) in [
            ("system_prompt", &self.system_prompt),
            ("task_trigger_prompt", &self.task_trigger_prompt),
            (
                "doc_comment_trigger_prompt",
                &self.doc_comment_trigger_prompt,
            ),
            ("chat_trigger_prompt", &self.chat_trigger_prompt),
            (
                "description_write_trigger_prompt",
                &self.description_write_trigger_prompt,
            ),
        ] {
            text_max(value, PROMPT_MAX, what)?;
        }
        text_max(&self.git_committer_name, 200, "git_committer_name")?;
        text_max(&self.git_committer_email, 320, "git_committer_email")?;
        Ok(())
    }

    /// `self` with the given fields replaced, validated as a whole.
    pub fn patched(&self, input: SettingsInput) -> Result<Self, DomainError> {
        let mut next = self.clone();
        if let Some(name) = input.name {
            next.name =
                validate::bounded_name(&name, NAME_MAX, ErrorCode::AGENT_NAME_INVALID, "name")?;
        }
        if let Some(agent_type) = input.agent_type {
            validate::one_of(
                &agent_type,
                &["llm"],
                ErrorCode::AGENT_TYPE_INVALID,
                "agent_type",
            )?;
            next.agent_type = agent_type;
        }
        if input.llm_provider.is_some() {
            next.llm_provider = required(input.llm_provider, "llm_provider")?;
        }
        if input.llm_model.is_some() {
            next.llm_model = required(input.llm_model, "llm_model")?;
        }
        if let Some(url) = input.llm_base_url {
            next.llm_base_url = base_url(url)?;
        }
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(v) = input.$field { next.$field = v; }
            )*};
        }
        take!(
            system_prompt,
            task_trigger_prompt,
            doc_comment_trigger_prompt,
            chat_trigger_prompt,
            description_write_trigger_prompt,
            can_clone_repos,
            can_create_prs
        );
        if let Some(v) = input.max_iterations {
            next.max_iterations = bounded(v, 1, MAX_ITERATIONS, "max_iterations")?;
        }
        if let Some(v) = input.timeout_minutes {
            next.timeout_minutes = bounded(v, 1, MAX_TIMEOUT_MINUTES, "timeout_minutes")?;
        }
        if let Some(v) = input.git_committer_name {
            let v = v.trim();
            next.git_committer_name = if v.is_empty() {
                DEFAULT_GIT_NAME.into()
            } else {
                v.into()
            };
        }
        if let Some(v) = input.git_committer_email {
            let v = v.trim();
            next.git_committer_email = if v.is_empty() {
                DEFAULT_GIT_EMAIL.into()
            } else {
                v.into()
            };
        }
        next.check_texts()?;
        Ok(next)
    }
}

fn not_found() -> DomainError {
    DomainError::new(ErrorCode::AGENT_NOT_FOUND, "agent not found")
}

fn validate_server(server: &McpServer) -> Result<(), DomainError> {
    validate::one_of(
        &server.transport,
        TRANSPORTS,
        ErrorCode::BAD_REQUEST,
        "transport",
    )?;
    match server.transport.as_str() {
        "stdio"
            if server
                .command
                .as_deref()
                .is_none_or(|c| c.trim().is_empty()) =>
        {
            Err(DomainError::new(
                ErrorCode::BAD_REQUEST,
                "command is required for stdio transport",
            ))
        }
        "sse" | "http" if server.url.as_deref().is_none_or(|u| u.trim().is_empty()) => Err(
            DomainError::new(ErrorCode::BAD_REQUEST, "url is required for sse and http"),
        ),
        _ => Ok(()),
    }?;
    for key in server.env.keys() {
        let ok = !key.is_empty()
            && key.len() <= 200
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !ok {
            return Err(DomainError::new(
                ErrorCode::BAD_REQUEST,
                format!("env key {key:?} must be letters, digits, '_', '-' or '.'"),
            ));
        }
    }
    for arg in &server.args {
        text_max(arg, 10_000, "args")?;
    }
    Ok(())
}

fn validate_skill(skill: &Skill) -> Result<(), DomainError> {
    validate::one_of(
        &skill.skill_source,
        SKILL_SOURCES,
        ErrorCode::BAD_REQUEST,
        "skill_source",
    )?;
    text_max(&skill.skill_content, SKILL_CONTENT_MAX, "skill_content")?;
    if skill.skill_source != "inline" && skill.source_url.as_deref().is_none_or(str::is_empty) {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            "source_url is required for marketplace and github_url skills",
        ));
    }
    for t in &skill.triggers {
        text_max(t, 200, "triggers")?;
    }
    Ok(())
}

/// `skill_name`: 1-100 characters of letters, digits, `-`, `_`, `.`, space.
pub fn normalize_skill_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= 100
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if !ok {
        return Err(DomainError::new(
            ErrorCode::AGENT_SKILL_NAME_INVALID,
            "skill_name must be 1-100 characters of letters, digits, '-', '_', '.' and spaces",
        ));
    }
    // The per-trigger skill the runner adds is called "paca-trigger".
    if name.eq_ignore_ascii_case("paca-trigger") {
        return Err(DomainError::new(
            ErrorCode::AGENT_SKILL_NAME_RESERVED,
            "skill_name paca-trigger is reserved",
        ));
    }
    Ok(name.to_owned())
}

impl Agent {
    pub fn evolve(mut self, event: &AgentEvent) -> Self {
        match event {
            AgentEvent::Created {
                project_id,
                member_id,
                handle,
                settings,
                has_llm_api_key,
                ..
            } => {
                self.exists = true;
                self.project_id = *project_id;
                self.member_id = *member_id;
                self.handle.clone_from(handle);
                self.settings = Some(settings.clone());
                self.has_llm_api_key = *has_llm_api_key;
            }
            AgentEvent::Updated { changes } => {
                for change in changes.iter().filter(|c| c.field == AgentField::Handle) {
                    self.handle = change.new.as_str().unwrap_or_default().to_owned();
                }
                if let Some(settings) = &self.settings {
                    self.settings = Some(apply(settings, changes));
                }
            }
            AgentEvent::LlmKeyChanged { has_llm_api_key } => {
                self.has_llm_api_key = *has_llm_api_key;
            }
            AgentEvent::Deleted { .. } => self.deleted = true,
            AgentEvent::McpServerAdded { server_id, server } => {
                self.mcp_servers.insert(*server_id, server.clone());
            }
            AgentEvent::McpServerUpdated { server_id, changes } => {
                if let Some(server) = self.mcp_servers.get(server_id) {
                    let next = apply(server, changes);
                    self.mcp_servers.insert(*server_id, next);
                }
            }
            AgentEvent::McpServerRemoved { server_id, .. } => {
                self.mcp_servers.remove(server_id);
            }
            AgentEvent::SkillAdded { skill_id, skill } => {
                self.skills.insert(*skill_id, skill.clone());
            }
            AgentEvent::SkillUpdated { skill_id, changes } => {
                if let Some(skill) = self.skills.get(skill_id) {
                    let next = apply(skill, changes);
                    self.skills.insert(*skill_id, next);
                }
            }
            AgentEvent::SkillRemoved { skill_id, .. } => {
                self.skills.remove(skill_id);
            }
        }
        self
    }

    pub fn is_live(&self) -> bool {
        self.exists && !self.deleted
    }

    fn live(&self) -> Result<&AgentSettings, DomainError> {
        match &self.settings {
            Some(settings) if self.is_live() => Ok(settings),
            _ => Err(not_found()),
        }
    }

    pub fn decide(&self, command: AgentCommand) -> Decision<AgentEvent> {
        match command {
            AgentCommand::Create {
                project_id,
                member_id,
                project_role_id,
                handle,
                settings,
                has_llm_api_key,
                created_by,
            } => {
                if self.exists {
                    return Err(DomainError::new(
                        ErrorCode::CONFLICT,
                        "agent already exists",
                    ));
                }
                Ok(vec![AgentEvent::Created {
                    project_id,
                    member_id,
                    project_role_id,
                    handle: normalize_handle(&handle)?,
                    settings: AgentSettings::create(settings)?,
                    has_llm_api_key,
                    created_by,
                }])
            }
            AgentCommand::Update { handle, settings } => {
                let current = self.live()?;
                let mut changes = diff(current, &current.patched(settings)?);
                if let Some(handle) = handle {
                    let handle = normalize_handle(&handle)?;
                    if handle != self.handle {
                        changes.insert(
                            0,
                            FieldChange {
                                field: AgentField::Handle,
                                old: self.handle.clone().into(),
                                new: handle.into(),
                            },
                        );
                    }
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![AgentEvent::Updated { changes }])
            }
            AgentCommand::ChangeLlmKey { has_llm_api_key } => {
                self.live()?;
                // A rotation is recorded even though the flag stays true.
                Ok(vec![AgentEvent::LlmKeyChanged { has_llm_api_key }])
            }
            AgentCommand::Delete => {
                self.live()?;
                Ok(vec![AgentEvent::Deleted {
                    handle: self.handle.clone(),
                    member_id: self.member_id,
                }])
            }
            AgentCommand::AddMcpServer {
                server_id,
                mut server,
            } => {
                self.live()?;
                server.server_name = validate::bounded_name(
                    &server.server_name,
                    100,
                    ErrorCode::BAD_REQUEST,
                    "server_name",
                )?;
                validate_server(&server)?;
                let names = self
                    .mcp_servers
                    .iter()
                    .map(|(id, s)| (id, s.server_name.as_str()));
                validate::name_free(
                    names,
                    &server.server_name,
                    None,
                    ErrorCode::CONFLICT,
                    "MCP server",
                )?;
                if server.server_name.eq_ignore_ascii_case("paca") {
                    return Err(DomainError::new(
                        ErrorCode::BAD_REQUEST,
                        "server_name paca is reserved for the built-in Paca MCP server",
                    ));
                }
                server.env = masked_env(&server.env);
                Ok(vec![AgentEvent::McpServerAdded { server_id, server }])
            }
            AgentCommand::UpdateMcpServer {
                server_id,
                command,
                args,
                url,
                env,
                is_enabled,
            } => {
                self.live()?;
                let current = self.mcp_servers.get(&server_id).ok_or_else(|| {
                    DomainError::new(
                        ErrorCode::AGENT_MCP_SERVER_NOT_FOUND,
                        "MCP server not found",
                    )
                })?;
                let mut next = current.clone();
                if let Some(command) = command {
                    next.command = command.filter(|c| !c.trim().is_empty());
                }
                if let Some(args) = args {
                    next.args = args;
                }
                if let Some(url) = url {
                    next.url = url.filter(|u| !u.trim().is_empty());
                }
                if let Some(env) = env {
                    next.env = masked_env(&env);
                }
                if let Some(enabled) = is_enabled {
                    next.is_enabled = enabled;
                }
                validate_server(&next)?;
                let changes = diff(current, &next);
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![AgentEvent::McpServerUpdated { server_id, changes }])
            }
            AgentCommand::RemoveMcpServer { server_id } => {
                self.live()?;
                let server = self.mcp_servers.get(&server_id).ok_or_else(|| {
                    DomainError::new(
                        ErrorCode::AGENT_MCP_SERVER_NOT_FOUND,
                        "MCP server not found",
                    )
                })?;
                Ok(vec![AgentEvent::McpServerRemoved {
                    server_id,
                    server_name: server.server_name.clone(),
                }])
            }
            AgentCommand::AddSkill {
                skill_id,
                mut skill,
            } => {
                self.live()?;
                skill.skill_name = normalize_skill_name(&skill.skill_name)?;
                validate_skill(&skill)?;
                let names = self
                    .skills
                    .iter()
                    .map(|(id, s)| (id, s.skill_name.as_str()));
                validate::name_free(names, &skill.skill_name, None, ErrorCode::CONFLICT, "skill")?;
                Ok(vec![AgentEvent::SkillAdded { skill_id, skill }])
            }
            AgentCommand::UpdateSkill {
                skill_id,
                skill_content,
                triggers,
                is_enabled,
            } => {
                self.live()?;
                let current = self.skills.get(&skill_id).ok_or_else(|| {
                    DomainError::new(ErrorCode::AGENT_SKILL_NOT_FOUND, "skill not found")
                })?;
                let mut next = current.clone();
                if let Some(content) = skill_content {
                    next.skill_content = content;
                }
                if let Some(triggers) = triggers {
                    next.triggers = triggers;
                }
                if let Some(enabled) = is_enabled {
                    next.is_enabled = enabled;
                }
                validate_skill(&next)?;
                let changes = diff(current, &next);
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![AgentEvent::SkillUpdated { skill_id, changes }])
            }
            AgentCommand::RemoveSkill { skill_id } => {
                self.live()?;
                let skill = self.skills.get(&skill_id).ok_or_else(|| {
                    DomainError::new(ErrorCode::AGENT_SKILL_NOT_FOUND, "skill not found")
                })?;
                Ok(vec![AgentEvent::SkillRemoved {
                    skill_id,
                    skill_name: skill.skill_name.clone(),
                }])
            }
        }
    }
}

/// One built-in skill template (seed pages 06 and 12).
#[derive(Debug, Clone, Serialize)]
pub struct SkillTemplate {
    pub slug: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub content: &'static str,
    pub triggers: &'static [&'static str],
}

/// The four templates Paca ships.
pub fn skill_templates() -> Vec<SkillTemplate> {
    vec![
        SkillTemplate {
            slug: "po-assistant",
            name: "Product Owner Assistant",
            description: "Grooms the backlog, writes acceptance criteria and keeps the roadmap coherent.",
            content: "---\nname: po-assistant\ndescription: Product Owner assistant\n---\n\n# Product Owner Assistant\n\nYou help the product owner keep the backlog healthy.\n\n- Rewrite vague tasks into user stories with clear acceptance criteria (Given/When/Then).\n- Split stories that are too large; link the parts to their epic.\n- Flag duplicates and tasks without a clear outcome.\n- When asked about the roadmap, group work by epic and sprint and state open risks.\n",
            triggers: &["acceptance criteria", "backlog", "roadmap", "groom"],
        },
        SkillTemplate {
            slug: "ba",
            name: "Business Analyst",
            description: "Turns requests into requirements, functional specs and gap analyses.",
            content: "---\nname: ba\ndescription: Business Analyst\n---\n\n# Business Analyst\n\n- Elicit the goal, the actors and the constraints before proposing a solution.\n- Write functional requirements as numbered, testable statements.\n- For a gap analysis, compare the current and the desired behaviour in a table.\n- Record open questions explicitly instead of guessing.\n",
            triggers: &[
                "requirements",
                "functional spec",
                "gap analysis",
                "use case",
            ],
        },
        SkillTemplate {
            slug: "developer",
            name: "Developer",
            description: "Implements changes, fixes bugs and opens pull requests with tests.",
            content: "---\nname: developer\ndescription: Developer\n---\n\n# Developer\n\n- Read the task and the linked docs first; restate the change in one paragraph.\n- Work on a feature branch; keep commits small and explain why in their messages.\n- Add or update tests for every behaviour you change and run them before pushing.\n- Open a pull request that links the task and summarises the change and its risks.\n",
            triggers: &["implement", "fix", "bug", "refactor", "pr", "test"],
        },
        SkillTemplate {
            slug: "manual-tester",
            name: "Manual Tester",
            description: "Writes test cases and plans, reproduces defects and checks regressions.",
            content: "---\nname: manual-tester\ndescription: Manual QA\n---\n\n# Manual Tester\n\n- Write test cases with preconditions, steps and expected results.\n- Group them into a test plan by feature and risk.\n- For a defect: steps to reproduce, expected vs actual, environment, severity.\n- After a fix, re-test the defect and the neighbouring regression cases.\n",
            triggers: &["test case", "test plan", "QA", "defect", "regression"],
        },
    ]
}

/// A settings map as the API shows it (for read models built from
/// events).
pub fn settings_json(settings: &AgentSettings) -> Map<String, Value> {
    match serde_json::to_value(settings) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SettingsInput {
        SettingsInput {
            name: Some("Dev Bot".into()),
            llm_provider: Some("anthropic".into()),
            llm_model: Some("claude-sonnet-4-6".into()),
            ..SettingsInput::default()
        }
    }

    fn create(handle: &str) -> AgentCommand {
        AgentCommand::Create {
            project_id: Uuid::from_u128(1),
            member_id: Uuid::from_u128(2),
            project_role_id: Uuid::from_u128(3),
            handle: handle.into(),
            settings: input(),
            has_llm_api_key: true,
            created_by: None,
        }
    }

    fn given(commands: Vec<AgentCommand>) -> Agent {
        commands
            .into_iter()
            .fold(Agent::default(), |agent, command| {
                let events = agent.decide(command).expect("given command must succeed");
                events.iter().fold(agent, Agent::evolve)
            })
    }

    fn when(agent: &Agent, command: AgentCommand) -> Result<Vec<AgentEvent>, ErrorCode> {
        agent.decide(command).map_err(|e| e.code)
    }

    /// The field enums name exactly the structs' serde fields, which
    /// `diff` and `apply` rely on.
    #[test]
    fn field_enums_cover_the_structs() {
        use crate::change::Field;
        fn keys<T: Serialize>(value: &T) -> Vec<String> {
            let Value::Object(map) = serde_json::to_value(value).unwrap() else {
                panic!("not an object");
            };
            map.keys().cloned().collect()
        }
        fn names<F: Field>() -> Vec<String> {
            let mut names: Vec<String> = F::ALL.iter().map(|f| f.as_str().to_owned()).collect();
            names.sort();
            names
        }
        let mut settings = keys(&AgentSettings::create(input()).unwrap());
        settings.push("handle".into());
        settings.sort();
        assert_eq!(settings, names::<AgentField>());
        let server = McpServer {
            server_name: "s".into(),
            transport: "stdio".into(),
            command: None,
            args: vec![],
            url: None,
            env: BTreeMap::new(),
            is_enabled: true,
        };
        let mut server_keys = keys(&server);
        server_keys.sort();
        assert_eq!(server_keys, names::<McpServerField>());
        let skill = Skill {
            skill_name: "s".into(),
            skill_source: "inline".into(),
            skill_content: String::new(),
            source_url: None,
            triggers: vec![],
            is_enabled: true,
        };
        let mut skill_keys = keys(&skill);
        skill_keys.sort();
        assert_eq!(skill_keys, names::<SkillField>());
    }

    #[test]
    fn create_applies_seed_defaults() {
        let agent = given(vec![create("@Dev-Bot")]);
        let settings = agent.settings.clone().unwrap();
        assert_eq!(agent.handle, "dev-bot");
        assert_eq!(settings.max_iterations, 500);
        assert_eq!(settings.timeout_minutes, 30);
        assert_eq!(settings.git_committer_name, "paca-agent");
        assert_eq!(settings.git_committer_email, DEFAULT_GIT_EMAIL);
        assert!(settings.can_clone_repos && settings.can_create_prs);
        assert!(agent.has_llm_api_key);
    }

    #[test]
    fn handle_rules() {
        for bad in ["a", "-bot", "bot-", "dev bot", "dév", &"x".repeat(41), ""] {
            assert_eq!(
                when(&Agent::default(), create(bad)),
                Err(ErrorCode::AGENT_HANDLE_INVALID),
                "{bad:?}"
            );
        }
        for good in ["qa", "dev-bot", "dev_bot2", "@Planner"] {
            assert!(when(&Agent::default(), create(good)).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn create_validates_required_fields_and_bounds() {
        let mut command = create("bot");
        if let AgentCommand::Create { settings, .. } = &mut command {
            settings.llm_model = None;
        }
        assert_eq!(
            when(&Agent::default(), command),
            Err(ErrorCode::BAD_REQUEST)
        );
        let mut command = create("bot");
        if let AgentCommand::Create { settings, .. } = &mut command {
            settings.max_iterations = Some(501);
        }
        assert_eq!(
            when(&Agent::default(), command),
            Err(ErrorCode::BAD_REQUEST)
        );
        let mut command = create("bot");
        if let AgentCommand::Create { settings, .. } = &mut command {
            settings.name = Some("  ".into());
        }
        assert_eq!(
            when(&Agent::default(), command),
            Err(ErrorCode::AGENT_NAME_INVALID)
        );
    }

    #[test]
    fn update_records_only_real_changes() {
        let agent = given(vec![create("bot")]);
        assert_eq!(
            when(
                &agent,
                AgentCommand::Update {
                    handle: Some("BOT".into()),
                    settings: SettingsInput {
                        llm_model: Some("claude-sonnet-4-6".into()),
                        ..Default::default()
                    }
                }
            ),
            Ok(vec![])
        );
        let events = when(
            &agent,
            AgentCommand::Update {
                handle: Some("bot2".into()),
                settings: SettingsInput {
                    timeout_minutes: Some(60),
                    llm_base_url: Some(Some("http://127.0.0.1:9/v1".into())),
                    ..Default::default()
                },
            },
        )
        .unwrap();
        let agent = events.iter().fold(agent, Agent::evolve);
        assert_eq!(agent.handle, "bot2");
        let settings = agent.settings.unwrap();
        assert_eq!(settings.timeout_minutes, 60);
        assert_eq!(
            settings.llm_base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
    }

    #[test]
    fn deleted_agent_refuses_everything() {
        let agent = given(vec![create("bot"), AgentCommand::Delete]);
        assert_eq!(
            when(&agent, AgentCommand::Delete),
            Err(ErrorCode::AGENT_NOT_FOUND)
        );
        assert_eq!(
            when(
                &agent,
                AgentCommand::ChangeLlmKey {
                    has_llm_api_key: true
                }
            ),
            Err(ErrorCode::AGENT_NOT_FOUND)
        );
    }

    fn server(name: &str) -> McpServer {
        McpServer {
            server_name: name.into(),
            transport: "stdio".into(),
            command: Some("uvx".into()),
            args: vec!["mcp-server-fetch".into()],
            url: None,
            env: BTreeMap::from([
                ("GITHUB_TOKEN".into(), "ghp_secret".into()),
                ("REGION".into(), "eu".into()),
            ]),
            is_enabled: true,
        }
    }

    #[test]
    fn mcp_servers_never_record_secret_values() {
        let agent = given(vec![create("bot")]);
        let events = when(
            &agent,
            AgentCommand::AddMcpServer {
                server_id: Uuid::from_u128(9),
                server: server("fetch"),
            },
        )
        .unwrap();
        let text = serde_json::to_string(&events).unwrap();
        assert!(!text.contains("ghp_secret"), "{text}");
        let agent = events.iter().fold(agent, Agent::evolve);
        assert_eq!(
            agent.mcp_servers[&Uuid::from_u128(9)].env["GITHUB_TOKEN"],
            MASK
        );
        assert_eq!(agent.mcp_servers[&Uuid::from_u128(9)].env["REGION"], "eu");
        // Names are unique per agent; "paca" is the built-in one.
        assert_eq!(
            when(
                &agent,
                AgentCommand::AddMcpServer {
                    server_id: Uuid::from_u128(10),
                    server: server("FETCH"),
                }
            ),
            Err(ErrorCode::CONFLICT)
        );
        assert_eq!(
            when(
                &agent,
                AgentCommand::AddMcpServer {
                    server_id: Uuid::from_u128(10),
                    server: server("paca"),
                }
            ),
            Err(ErrorCode::BAD_REQUEST)
        );
        let mut http = server("remote");
        http.transport = "http".into();
        assert_eq!(
            when(
                &agent,
                AgentCommand::AddMcpServer {
                    server_id: Uuid::from_u128(11),
                    server: http,
                }
            ),
            Err(ErrorCode::BAD_REQUEST)
        );
        assert_eq!(
            when(
                &agent,
                AgentCommand::UpdateMcpServer {
                    server_id: Uuid::from_u128(99),
                    command: None,
                    args: None,
                    url: None,
                    env: None,
                    is_enabled: Some(false),
                }
            ),
            Err(ErrorCode::AGENT_MCP_SERVER_NOT_FOUND)
        );
        let events = when(
            &agent,
            AgentCommand::UpdateMcpServer {
                server_id: Uuid::from_u128(9),
                command: None,
                args: None,
                url: None,
                env: None,
                is_enabled: Some(false),
            },
        )
        .unwrap();
        let agent = events.iter().fold(agent, Agent::evolve);
        assert!(!agent.mcp_servers[&Uuid::from_u128(9)].is_enabled);
    }

    #[test]
    fn skills() {
        let skill = Skill {
            skill_name: "developer".into(),
            skill_source: "inline".into(),
            skill_content: "# Dev".into(),
            source_url: None,
            triggers: vec!["fix".into()],
            is_enabled: true,
        };
        let add = AgentCommand::AddSkill {
            skill_id: Uuid::from_u128(5),
            skill: skill.clone(),
        };
        let agent = given(vec![create("bot"), add.clone()]);
        assert_eq!(when(&agent, add), Err(ErrorCode::CONFLICT));
        let mut reserved = skill.clone();
        reserved.skill_name = "paca-trigger".into();
        assert_eq!(
            when(
                &agent,
                AgentCommand::AddSkill {
                    skill_id: Uuid::from_u128(6),
                    skill: reserved
                }
            ),
            Err(ErrorCode::AGENT_SKILL_NAME_RESERVED)
        );
        let mut remote = skill;
        remote.skill_name = "remote".into();
        remote.skill_source = "github_url".into();
        assert_eq!(
            when(
                &agent,
                AgentCommand::AddSkill {
                    skill_id: Uuid::from_u128(7),
                    skill: remote
                }
            ),
            Err(ErrorCode::BAD_REQUEST)
        );
        let events = when(
            &agent,
            AgentCommand::RemoveSkill {
                skill_id: Uuid::from_u128(5),
            },
        )
        .unwrap();
        let agent = events.iter().fold(agent, Agent::evolve);
        assert!(agent.skills.is_empty());
    }

    #[test]
    fn four_templates_ship() {
        let slugs: Vec<_> = skill_templates().iter().map(|t| t.slug).collect();
        assert_eq!(slugs, ["po-assistant", "ba", "developer", "manual-tester"]);
    }
}
