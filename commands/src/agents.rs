//! Agent commands. An agent is a project member: creating one appends
//! `agent.created` and `project.agent_member_added` in one transaction,
//! claims its handle in the reservation table (scope `agent_handle`, key
//! `<project_id>:<handle>`) and stores its LLM key encrypted.
//!
//! Lock order (as everywhere): project stream -> agent stream -> task
//! streams.

use std::collections::BTreeMap;

use domain::agent::{
    Agent, AgentCommand, AgentEvent, McpServer, SettingsInput, Skill, is_secret_key,
};
use domain::project::{Project, ProjectCommand};
use domain::task::{Task, TaskCommand, TaskContext, TaskPatch};
use domain::{DomainError, ErrorCode};
use eventstore::{AppendTx, Metadata};
use uuid::Uuid;

use crate::secrets::{LLM_API_KEY, mcp_env_name};
use crate::{CommandError, CommandResult, Commands, WriteSide};

pub const HANDLE_SCOPE: &str = "agent_handle";

fn handle_key(project_id: Uuid, handle: &str) -> String {
    format!("{project_id}:{handle}")
}

fn handle_taken(handle: &str) -> DomainError {
    DomainError::new(
        ErrorCode::AGENT_HANDLE_TAKEN,
        format!("handle @{handle} is already used in this project"),
    )
}

fn not_found() -> CommandError {
    CommandError::domain(ErrorCode::AGENT_NOT_FOUND, "agent not found")
}

pub struct NewAgent {
    pub handle: String,
    pub project_role_id: Uuid,
    pub settings: SettingsInput,
    pub llm_api_key: Option<String>,
}

#[derive(Default)]
pub struct AgentPatch {
    pub handle: Option<String>,
    pub project_role_id: Option<Uuid>,
    pub settings: SettingsInput,
    /// Absent keeps the stored key; a value rotates it; `null`/`""`
    /// clears it.
    pub llm_api_key: Option<Option<String>>,
}

pub struct McpServerPatch {
    pub command: Option<Option<String>>,
    pub args: Option<Vec<String>>,
    pub url: Option<Option<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub is_enabled: Option<bool>,
}

/// An agent's decrypted secrets, for the runner's memory only.
#[derive(Default)]
pub struct AgentSecrets {
    pub llm_api_key: Option<String>,
    /// server id -> env key -> value (secret-like keys only).
    pub mcp_env: BTreeMap<Uuid, BTreeMap<String, String>>,
}

impl std::fmt::Debug for AgentSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentSecrets(..)")
    }
}

impl Commands {
    fn secret_box(&self) -> CommandResult<&crate::secrets::SecretBox> {
        self.secrets.as_ref().ok_or_else(|| {
            CommandError::Infra(crate::InfraError::Config(
                "ENCRYPTION_KEY is not configured; agent secrets cannot be stored",
            ))
        })
    }

    async fn store_secret(
        &self,
        tx: &mut AppendTx,
        agent_id: Uuid,
        name: &str,
        value: &str,
    ) -> CommandResult<()> {
        let (nonce, ciphertext) = self.secret_box()?.seal(agent_id, name, value);
        sqlx::query(
            "INSERT INTO agent_credentials (agent_id, name, nonce, ciphertext) VALUES ($1, $2, $3, $4)
             ON CONFLICT (agent_id, name) DO UPDATE
             SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()",
        )
        .bind(agent_id)
        .bind(name)
        .bind(nonce)
        .bind(ciphertext)
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    async fn delete_secrets(
        &self,
        tx: &mut AppendTx,
        agent_id: Uuid,
        prefix: &str,
    ) -> CommandResult<()> {
        sqlx::query("DELETE FROM agent_credentials WHERE agent_id = $1 AND starts_with(name, $2)")
            .bind(agent_id)
            .bind(prefix)
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// The agent's state, checked to belong to `project_id`.
    pub async fn agent_state(&self, project_id: Uuid, agent_id: Uuid) -> CommandResult<Agent> {
        let agent = self
            .load_typed::<AgentEvent, Agent>(agent_id, Agent::evolve)
            .await?
            .state;
        if !agent.is_live() || agent.project_id != project_id {
            return Err(not_found());
        }
        Ok(agent)
    }

    /// The agent's secrets, decrypted (the runner's memory only).
    pub async fn agent_secrets(&self, agent_id: Uuid) -> CommandResult<AgentSecrets> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT name, nonce, ciphertext FROM agent_credentials WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_all(self.store.pool())
        .await?;
        let mut out = AgentSecrets::default();
        if rows.is_empty() {
            return Ok(out);
        }
        let secrets = self.secret_box()?;
        for (name, nonce, ciphertext) in rows {
            let value = secrets.open(agent_id, &name, &nonce, &ciphertext)?;
            if name == LLM_API_KEY {
                out.llm_api_key = Some(value);
            } else if let Some(rest) = name.strip_prefix("mcp:")
                && let Some((server, key)) = rest.split_once(':')
                && let Ok(server_id) = server.parse()
            {
                out.mcp_env
                    .entry(server_id)
                    .or_default()
                    .insert(key.to_owned(), value);
            }
        }
        Ok(out)
    }

    async fn agent_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        command: AgentCommand,
        effects: Vec<WriteSide>,
    ) -> CommandResult<Agent> {
        let mut decide = |agent: &Agent| {
            if agent.exists && agent.project_id != project_id {
                return Err(DomainError::new(
                    ErrorCode::AGENT_NOT_FOUND,
                    "agent not found",
                ));
            }
            Ok((agent.decide(command.clone())?, effects.clone()))
        };
        let (agent, _) = self
            .execute_in(
                tx,
                agent_id,
                Some(project_id),
                Agent::evolve,
                meta,
                &mut decide,
                None,
            )
            .await?;
        Ok(agent)
    }

    async fn project_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        command: ProjectCommand,
    ) -> CommandResult<Project> {
        let mut decide = |p: &Project| Ok((p.decide(command.clone())?, vec![]));
        let (project, _) = self
            .execute_in(
                tx,
                project_id,
                Some(project_id),
                Project::evolve,
                meta,
                &mut decide,
                None,
            )
            .await?;
        Ok(project)
    }

    /// Creates the agent and its membership. Returns `(agent_id, member_id)`.
    pub async fn create_agent(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        new: NewAgent,
    ) -> CommandResult<(Uuid, Uuid)> {
        let agent_id = Uuid::now_v7();
        let member_id = Uuid::now_v7();
        let handle = domain::agent::normalize_handle(&new.handle)?;
        let key = new.llm_api_key.filter(|k| !k.trim().is_empty());
        if key.is_some() {
            self.secret_box()?;
        }
        let command = AgentCommand::Create {
            project_id,
            member_id,
            project_role_id: new.project_role_id,
            handle: handle.clone(),
            settings: new.settings,
            has_llm_api_key: key.is_some(),
            created_by: meta.actor.user_id,
        };
        let reserve = WriteSide::Reserve {
            scope: HANDLE_SCOPE,
            key: handle_key(project_id, &handle),
            owner: agent_id,
            taken: handle_taken(&handle),
        };
        transact!(self, tx => async {
            // Validate the agent before the project row is locked.
            Agent::default().decide(command.clone())?;
            self.project_in(tx, meta, project_id, ProjectCommand::AddAgentMember {
                member_id,
                agent_id,
                project_role_id: new.project_role_id,
            }).await?;
            self.agent_in(tx, meta, project_id, agent_id, command.clone(), vec![reserve.clone()])
                .await?;
            if let Some(key) = &key {
                self.store_secret(tx, agent_id, LLM_API_KEY, key).await?;
            }
            Ok((agent_id, member_id))
        }
        .await)
    }

    pub async fn update_agent(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        patch: AgentPatch,
    ) -> CommandResult<()> {
        let current = self.agent_state(project_id, agent_id).await?;
        let new_handle = patch
            .handle
            .as_deref()
            .map(domain::agent::normalize_handle)
            .transpose()?
            .filter(|h| *h != current.handle);
        let key = patch
            .llm_api_key
            .map(|k| k.filter(|k| !k.trim().is_empty()));
        if matches!(key, Some(Some(_))) {
            self.secret_box()?;
        }
        transact!(self, tx => async {
            if let Some(role_id) = patch.project_role_id {
                let agent = self.agent_state(project_id, agent_id).await?;
                self.project_in(tx, meta, project_id, ProjectCommand::ChangeMemberRole {
                    member_id: agent.member_id,
                    project_role_id: role_id,
                }).await?;
            }
            let effects = match &new_handle {
                Some(handle) => vec![
                    WriteSide::Reserve {
                        scope: HANDLE_SCOPE,
                        key: handle_key(project_id, handle),
                        owner: agent_id,
                        taken: handle_taken(handle),
                    },
                    WriteSide::Release {
                        scope: HANDLE_SCOPE,
                        key: handle_key(project_id, &current.handle),
                        owner: agent_id,
                    },
                ],
                None => vec![],
            };
            self.agent_in(tx, meta, project_id, agent_id, AgentCommand::Update {
                handle: new_handle.clone(),
                settings: patch.settings.clone(),
            }, effects).await?;
            match &key {
                None => {}
                Some(Some(value)) => {
                    self.agent_in(tx, meta, project_id, agent_id,
                        AgentCommand::ChangeLlmKey { has_llm_api_key: true }, vec![]).await?;
                    self.store_secret(tx, agent_id, LLM_API_KEY, value).await?;
                }
                Some(None) => {
                    self.agent_in(tx, meta, project_id, agent_id,
                        AgentCommand::ChangeLlmKey { has_llm_api_key: false }, vec![]).await?;
                    self.delete_secrets(tx, agent_id, LLM_API_KEY).await?;
                }
            }
            Ok(())
        }
        .await)
    }

    /// Deletes the agent: its membership ends, its handle is freed, its
    /// secrets are erased, and every task it is assigned to gets an
    /// explicit `task.updated` removing it (caused by the deletion, shown
    /// in each task's activity), all in one transaction.
    pub async fn delete_agent(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
    ) -> CommandResult<Vec<Uuid>> {
        let current = self.agent_state(project_id, agent_id).await?;
        let member = current.member_id;
        transact!(self, tx => async {
            self.project_in(tx, meta, project_id, ProjectCommand::RemoveAgentMember {
                member_id: member,
            }).await?;
            self.agent_in(tx, meta, project_id, agent_id, AgentCommand::Delete, vec![
                WriteSide::Release {
                    scope: HANDLE_SCOPE,
                    key: handle_key(project_id, &current.handle),
                    owner: agent_id,
                },
            ]).await?;
            self.delete_secrets(tx, agent_id, "").await?;
            self.unassign_member_in(tx, meta, project_id, member).await
        }
        .await)
    }

    /// Removes `member_id` from the assignees of every live task of the
    /// project (candidates from the task list, each decided on its own
    /// aggregate).
    async fn unassign_member_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        member_id: Uuid,
    ) -> CommandResult<Vec<Uuid>> {
        let candidates: Vec<Uuid> = sqlx::query_scalar(
            "SELECT task_id FROM task_index
             WHERE project_id = $1 AND NOT deleted AND $2 = ANY(assignee_ids)
             ORDER BY task_id",
        )
        .bind(project_id)
        .bind(member_id)
        .fetch_all(tx.conn())
        .await?;
        if candidates.is_empty() {
            return Ok(vec![]);
        }
        let ctx = self
            .task_context(tx.conn(), project_id, None, None, None)
            .await?;
        let mut meta = meta.clone();
        meta.extra.insert(
            "reason".into(),
            serde_json::Value::String("agent_deleted".into()),
        );
        let mut unassigned = Vec::new();
        for task_id in candidates {
            let ctx = TaskContext {
                self_id: Some(task_id),
                ..ctx.clone()
            };
            let mut changed = false;
            let mut decide = |task: &Task| {
                if !task.fields.assignee_ids.contains(&member_id) {
                    return Ok((vec![], vec![]));
                }
                let patch = TaskPatch {
                    assignee_ids: Some(
                        task.fields
                            .assignee_ids
                            .iter()
                            .copied()
                            .filter(|id| *id != member_id)
                            .collect(),
                    ),
                    ..TaskPatch::default()
                };
                let events = task.decide(TaskCommand::Update(patch), &ctx)?;
                changed = !events.is_empty();
                Ok((events, vec![]))
            };
            self.execute_in(
                tx,
                task_id,
                Some(project_id),
                Task::evolve,
                &meta,
                &mut decide,
                None,
            )
            .await?;
            if changed {
                unassigned.push(task_id);
            }
        }
        Ok(unassigned)
    }

    pub async fn add_mcp_server(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        server: McpServer,
    ) -> CommandResult<Uuid> {
        let server_id = Uuid::now_v7();
        let secrets: Vec<(String, String)> = server
            .env
            .iter()
            .filter(|(k, _)| is_secret_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !secrets.is_empty() {
            self.secret_box()?;
        }
        transact!(self, tx => async {
            self.agent_in(tx, meta, project_id, agent_id, AgentCommand::AddMcpServer {
                server_id,
                server: server.clone(),
            }, vec![]).await?;
            for (key, value) in &secrets {
                self.store_secret(tx, agent_id, &mcp_env_name(server_id, key), value).await?;
            }
            Ok(server_id)
        }
        .await)
    }

    pub async fn update_mcp_server(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        server_id: Uuid,
        patch: McpServerPatch,
    ) -> CommandResult<()> {
        // A secret value sent back as "***" (as GET shows it) keeps the
        // stored one.
        let replaced: Option<Vec<(String, String)>> = patch.env.as_ref().map(|env| {
            env.iter()
                .filter(|(k, v)| is_secret_key(k) && v.as_str() != domain::agent::MASK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        if replaced.as_ref().is_some_and(|r| !r.is_empty()) {
            self.secret_box()?;
        }
        transact!(self, tx => async {
            self.agent_in(tx, meta, project_id, agent_id, AgentCommand::UpdateMcpServer {
                server_id,
                command: patch.command.clone(),
                args: patch.args.clone(),
                url: patch.url.clone(),
                env: patch.env.clone(),
                is_enabled: patch.is_enabled,
            }, vec![]).await?;
            if let (Some(env), Some(replaced)) = (&patch.env, &replaced) {
                // Keys no longer present lose their secret.
                let prefix = format!("mcp:{server_id}:");
                let kept: Vec<String> = env.keys().map(|k| mcp_env_name(server_id, k)).collect();
                sqlx::query(
                    "DELETE FROM agent_credentials WHERE agent_id = $1
                       AND starts_with(name, $2) AND NOT (name = ANY($3))",
                )
                .bind(agent_id)
                .bind(&prefix)
                .bind(&kept)
                .execute(tx.conn())
                .await?;
                for (key, value) in replaced {
                    self.store_secret(tx, agent_id, &mcp_env_name(server_id, key), value).await?;
                }
            }
            Ok(())
        }
        .await)
    }

    pub async fn remove_mcp_server(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        server_id: Uuid,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            self.agent_in(tx, meta, project_id, agent_id,
                AgentCommand::RemoveMcpServer { server_id }, vec![]).await?;
            self.delete_secrets(tx, agent_id, &format!("mcp:{server_id}:")).await
        }
        .await)
    }

    pub async fn add_skill(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        skill: Skill,
    ) -> CommandResult<Uuid> {
        let skill_id = Uuid::now_v7();
        transact!(self, tx => async {
            self.agent_in(tx, meta, project_id, agent_id,
                AgentCommand::AddSkill { skill_id, skill: skill.clone() }, vec![]).await?;
            Ok(skill_id)
        }
        .await)
    }

    pub async fn update_skill(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        agent_id: Uuid,
        command: AgentCommand,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            self.agent_in(tx, meta, project_id, agent_id, command.clone(), vec![]).await?;
            Ok(())
        }
        .await)
    }
}
