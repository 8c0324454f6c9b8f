//! Project commands: the project itself, its roles and its members.
//!
//! Uses: `views::seed_project_views` (a new project's backlog and
//! timeline tabs, in the creating transaction).

use domain::ErrorCode;
use domain::project::{Project, ProjectCommand, ProjectEvent, SeedIds};
use domain::task_config::ConfigSeedIds;
use domain::user::{User, UserEvent};
use eventstore::Metadata;
use serde_json::Value;
use uuid::Uuid;

use crate::{CommandError, CommandResult, Commands, TaskColumn, WriteSide};
use domain::DomainError;

pub struct NewProject {
    pub name: String,
    pub description: String,
    pub task_id_prefix: Option<String>,
    pub is_public: bool,
    pub settings: Option<Value>,
}

#[derive(Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub task_id_prefix: Option<String>,
    pub is_public: Option<bool>,
    pub settings: Option<Value>,
}

impl Commands {
    pub async fn load_project(&self, project_id: Uuid) -> CommandResult<Project> {
        Ok(self
            .load::<ProjectEvent, Project>(project_id, Project::evolve)
            .await?
            .state)
    }

    async fn project_command(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        command: ProjectCommand,
    ) -> CommandResult<Project> {
        let (project, _) = self
            .execute(
                project_id,
                Some(project_id),
                Project::evolve,
                meta,
                |p: &Project| Ok((p.decide(command.clone())?, vec![])),
            )
            .await?;
        Ok(project)
    }

    pub async fn create_project(
        &self,
        meta: &Metadata,
        created_by: Uuid,
        new: NewProject,
    ) -> CommandResult<Uuid> {
        let project_id = Uuid::now_v7();
        let ids = SeedIds {
            admin_role: Uuid::now_v7(),
            editor_role: Uuid::now_v7(),
            viewer_role: Uuid::now_v7(),
            creator_member: Uuid::now_v7(),
            config: ConfigSeedIds {
                types: [(); 5].map(|_| Uuid::now_v7()),
                statuses: [(); 4].map(|_| Uuid::now_v7()),
            },
        };
        // Seeded views (seed page 05): the timeline roadmap shows Epics.
        let epic_type_id = ids.config.types[3];
        let command = ProjectCommand::Create {
            name: new.name,
            description: new.description,
            task_id_prefix: new.task_id_prefix,
            is_public: new.is_public,
            settings: new.settings,
            created_by,
            ids,
        };
        // The project and its default views commit together.
        transact!(self, tx => async {
            let mut decide = |p: &Project| Ok((p.decide(command.clone())?, vec![]));
            let project = Some(project_id);
            self.execute_in(tx, project_id, project, Project::evolve, meta, &mut decide, None)
                .await?;
            self.seed_project_views(tx, meta, project_id, epic_type_id)
                .await
        }
        .await)?;
        Ok(project_id)
    }

    pub async fn update_project(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        patch: ProjectPatch,
    ) -> CommandResult<()> {
        self.project_command(
            meta,
            project_id,
            ProjectCommand::Update {
                name: patch.name,
                description: patch.description,
                task_id_prefix: patch.task_id_prefix,
                is_public: patch.is_public,
                settings: patch.settings,
            },
        )
        .await?;
        Ok(())
    }

    pub async fn delete_project(&self, meta: &Metadata, project_id: Uuid) -> CommandResult<()> {
        self.project_command(meta, project_id, ProjectCommand::Delete)
            .await?;
        Ok(())
    }

    pub async fn create_project_role(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        role_name: String,
        permissions: Vec<String>,
    ) -> CommandResult<Uuid> {
        let role_id = Uuid::now_v7();
        self.project_command(
            meta,
            project_id,
            ProjectCommand::CreateRole {
                role_id,
                role_name,
                permissions,
            },
        )
        .await?;
        Ok(role_id)
    }

    pub async fn update_project_role(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        role_id: Uuid,
        role_name: Option<String>,
        permissions: Option<Vec<String>>,
    ) -> CommandResult<()> {
        self.project_command(
            meta,
            project_id,
            ProjectCommand::UpdateRole {
                role_id,
                role_name,
                permissions,
            },
        )
        .await?;
        Ok(())
    }

    pub async fn delete_project_role(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        role_id: Uuid,
    ) -> CommandResult<()> {
        self.project_command(meta, project_id, ProjectCommand::DeleteRole { role_id })
            .await?;
        Ok(())
    }

    pub async fn add_member(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        user_id: Uuid,
        project_role_id: Uuid,
    ) -> CommandResult<Uuid> {
        let user = self
            .load::<UserEvent, User>(user_id, User::evolve)
            .await?
            .state;
        if !user.exists || user.deleted {
            return Err(CommandError::domain(
                ErrorCode::USER_NOT_FOUND,
                "user not found",
            ));
        }
        let member_id = Uuid::now_v7();
        self.project_command(
            meta,
            project_id,
            ProjectCommand::AddMember {
                member_id,
                user_id,
                project_role_id,
            },
        )
        .await?;
        Ok(member_id)
    }

    /// Resolves `:memberId` path segments, which Paca's web app and MCP
    /// tools fill with either a member id or a user id (CONTRACT-NOTES §18c).
    pub async fn resolve_member(&self, project_id: Uuid, id: Uuid) -> CommandResult<Uuid> {
        let project = self.load_project(project_id).await?;
        if !project.is_live() {
            return Err(CommandError::domain(
                ErrorCode::PROJECT_NOT_FOUND,
                "project not found",
            ));
        }
        if project.members.contains_key(&id) {
            return Ok(id);
        }
        project
            .member_by_user(id)
            .map(|(member_id, _)| member_id)
            .ok_or_else(|| {
                CommandError::domain(ErrorCode::PROJECT_MEMBER_NOT_FOUND, "member not found")
            })
    }

    pub async fn change_member_role(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        member_id: Uuid,
        project_role_id: Uuid,
    ) -> CommandResult<()> {
        self.project_command(
            meta,
            project_id,
            ProjectCommand::ChangeMemberRole {
                member_id,
                project_role_id,
            },
        )
        .await?;
        Ok(())
    }

    pub async fn remove_member(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        member_id: Uuid,
    ) -> CommandResult<()> {
        self.project_command(meta, project_id, ProjectCommand::RemoveMember { member_id })
            .await?;
        Ok(())
    }
}

impl Commands {
    /// Task configuration commands (types, statuses, custom fields).
    pub async fn configure_tasks(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        command: domain::task_config::ConfigCommand,
    ) -> CommandResult<Project> {
        let (project, _) = self
            .execute(
                project_id,
                Some(project_id),
                Project::evolve,
                meta,
                |p: &Project| {
                    use domain::task_config::ConfigCommand;
                    let effects = match &command {
                        ConfigCommand::DeleteType { type_id } => {
                            vec![WriteSide::RequireNoTaskUses {
                                column: TaskColumn::TaskType,
                                id: *type_id,
                                in_use: DomainError::new(
                                    ErrorCode::TASK_TYPE_IN_USE,
                                    "tasks use this task type; move them first",
                                ),
                            }]
                        }
                        ConfigCommand::DeleteStatus { status_id } => {
                            vec![WriteSide::RequireNoTaskUses {
                                column: TaskColumn::Status,
                                id: *status_id,
                                in_use: DomainError::new(
                                    ErrorCode::TASK_STATUS_IN_USE,
                                    "tasks use this status; move them first",
                                ),
                            }]
                        }
                        _ => vec![],
                    };
                    Ok((p.decide_config(command.clone())?, effects))
                },
            )
            .await?;
        Ok(project)
    }
}
