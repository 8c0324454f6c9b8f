//! The project aggregate, with its project roles and members. Role-name and
//! membership uniqueness are checked against this state; the stream's
//! optimistic concurrency makes those checks race-free.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{Changes, FieldChange};
use crate::global_role::{normalize_name, normalize_permissions};
use crate::task_config::{
    self, ConfigSeedIds, CustomField, CustomFieldField, TaskConfig, TaskStatus, TaskStatusField,
    TaskType, TaskTypeField,
};
use crate::vecmap::VecMap;
use crate::{Decision, DomainError, DomainEvent, ErrorCode, permissions, validate};

pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 10_000;

crate::fields! {
    /// The project's own tracked fields.
    pub enum ProjectField {
        Name = "name",
        Description = "description",
        TaskIdPrefix = "task_id_prefix",
        IsPublic = "is_public",
        Settings = "settings",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum ProjectEvent {
    #[serde(rename = "project.created")]
    Created {
        name: String,
        description: String,
        task_id_prefix: String,
        is_public: bool,
        settings: Value,
        created_by: Uuid,
    },
    #[serde(rename = "project.updated")]
    Updated {
        changes: Vec<FieldChange<ProjectField>>,
    },
    #[serde(rename = "project.deleted")]
    Deleted {},
    #[serde(rename = "project.role_created")]
    RoleCreated {
        role_id: Uuid,
        role_name: String,
        permissions: Vec<String>,
    },
    #[serde(rename = "project.role_updated")]
    RoleUpdated {
        role_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        permissions: Option<Vec<String>>,
    },
    #[serde(rename = "project.role_deleted")]
    RoleDeleted { role_id: Uuid, role_name: String },
    #[serde(rename = "project.member_added")]
    MemberAdded {
        member_id: Uuid,
        user_id: Uuid,
        project_role_id: Uuid,
        role_name: String,
        member_type: String,
    },
    #[serde(rename = "project.member_role_changed")]
    MemberRoleChanged {
        member_id: Uuid,
        user_id: Uuid,
        project_role_id: Uuid,
        role_name: String,
        old_project_role_id: Uuid,
    },
    #[serde(rename = "project.member_removed")]
    MemberRemoved { member_id: Uuid, user_id: Uuid },
    /// An agent joins as a member (seed page 06: `member_type = 'agent'`,
    /// `agent_id` set, no user), in the transaction that creates it.
    #[serde(rename = "project.agent_member_added")]
    AgentMemberAdded {
        member_id: Uuid,
        agent_id: Uuid,
        project_role_id: Uuid,
        role_name: String,
        member_type: String,
    },
    #[serde(rename = "project.agent_member_removed")]
    AgentMemberRemoved { member_id: Uuid, agent_id: Uuid },
    #[serde(rename = "project.task_type_created")]
    TaskTypeCreated {
        type_id: Uuid,
        #[serde(flatten)]
        task_type: TaskType,
        is_default: bool,
    },
    #[serde(rename = "project.task_type_updated")]
    TaskTypeUpdated {
        type_id: Uuid,
        changes: Vec<FieldChange<TaskTypeField>>,
    },
    #[serde(rename = "project.task_type_deleted")]
    TaskTypeDeleted { type_id: Uuid, name: String },
    #[serde(rename = "project.default_task_type_set")]
    DefaultTaskTypeSet {
        type_id: Uuid,
        old_type_id: Option<Uuid>,
    },
    #[serde(rename = "project.task_status_created")]
    TaskStatusCreated {
        status_id: Uuid,
        #[serde(flatten)]
        status: TaskStatus,
        is_default: bool,
    },
    #[serde(rename = "project.task_status_updated")]
    TaskStatusUpdated {
        status_id: Uuid,
        changes: Vec<FieldChange<TaskStatusField>>,
    },
    #[serde(rename = "project.task_status_deleted")]
    TaskStatusDeleted { status_id: Uuid, name: String },
    #[serde(rename = "project.default_task_status_set")]
    DefaultTaskStatusSet {
        status_id: Uuid,
        old_status_id: Option<Uuid>,
    },
    #[serde(rename = "project.task_statuses_reordered")]
    TaskStatusesReordered { status_ids: Vec<Uuid> },
    #[serde(rename = "project.custom_field_created")]
    CustomFieldCreated {
        field_id: Uuid,
        #[serde(flatten)]
        field: CustomField,
    },
    #[serde(rename = "project.custom_field_updated")]
    CustomFieldUpdated {
        field_id: Uuid,
        changes: Vec<FieldChange<CustomFieldField>>,
    },
    #[serde(rename = "project.custom_field_deleted")]
    CustomFieldDeleted { field_id: Uuid, field_key: String },
}

impl DomainEvent for ProjectEvent {
    const STREAM_TYPE: &'static str = "project";
}

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    /// Interned ([`permissions::intern`]): every project seeds the same
    /// three roles, so the directory, which holds every project, keeps one
    /// copy of each list instead of one per project.
    pub permissions: Arc<[String]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Nil for agent members (they have `agent_id` instead).
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub agent_id: Option<Uuid>,
}

impl Member {
    /// Is this the membership of the user (not of an agent)?
    pub fn is_user(&self, user_id: Uuid) -> bool {
        self.agent_id.is_none() && self.user_id == user_id
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Project {
    pub exists: bool,
    pub deleted: bool,
    pub name: String,
    pub description: String,
    pub task_id_prefix: String,
    pub is_public: bool,
    pub settings: Value,
    pub roles: VecMap<Uuid, Role>,
    pub members: VecMap<Uuid, Member>,
    pub config: TaskConfig,
}

/// Ids the command handler allocates for a new project's seeded entities.
#[derive(Debug, Clone)]
pub struct SeedIds {
    pub admin_role: Uuid,
    pub editor_role: Uuid,
    pub viewer_role: Uuid,
    pub creator_member: Uuid,
    pub config: ConfigSeedIds,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per command, never stored
pub enum ProjectCommand {
    Create {
        name: String,
        description: String,
        task_id_prefix: Option<String>,
        is_public: bool,
        settings: Option<Value>,
        created_by: Uuid,
        ids: SeedIds,
    },
    Update {
        name: Option<String>,
        description: Option<String>,
        task_id_prefix: Option<String>,
        is_public: Option<bool>,
        settings: Option<Value>,
    },
    Delete,
    CreateRole {
        role_id: Uuid,
        role_name: String,
        permissions: Vec<String>,
    },
    UpdateRole {
        role_id: Uuid,
        role_name: Option<String>,
        permissions: Option<Vec<String>>,
    },
    DeleteRole {
        role_id: Uuid,
    },
    AddMember {
        member_id: Uuid,
        user_id: Uuid,
        project_role_id: Uuid,
    },
    ChangeMemberRole {
        member_id: Uuid,
        project_role_id: Uuid,
    },
    RemoveMember {
        member_id: Uuid,
    },
    AddAgentMember {
        member_id: Uuid,
        agent_id: Uuid,
        project_role_id: Uuid,
    },
    RemoveAgentMember {
        member_id: Uuid,
    },
}

/// The seeded project roles (CONTRACT-NOTES §18b, extended with the docs
/// and agents domains the seeds define, and with read access to members and
/// roles so every member can see who else is on the project).
pub fn seeded_roles() -> [(&'static str, Vec<&'static str>); 3] {
    [
        (
            "Admin",
            vec![
                "projects.*",
                "project.members.*",
                "project.roles.*",
                "tasks.*",
                "sprints.*",
                "docs.*",
                "agents.*",
            ],
        ),
        (
            "Editor",
            vec![
                "projects.read",
                "project.members.read",
                "project.roles.read",
                "tasks.read",
                "tasks.write",
                "sprints.read",
                "sprints.write",
                "docs.read",
                "docs.write",
                "agents.read",
            ],
        ),
        (
            "Viewer",
            vec![
                "projects.read",
                "project.members.read",
                "project.roles.read",
                "tasks.read",
                "sprints.read",
                "docs.read",
            ],
        ),
    ]
}

/// `task_id_prefix` rules (CONTRACT-NOTES §6): the given value trimmed and
/// uppercased, or one derived from the name; then `^[A-Z0-9]{1,10}$`.
pub fn task_id_prefix(given: Option<&str>, name: &str) -> Result<String, DomainError> {
    let given = given.map(|g| g.trim().to_uppercase()).unwrap_or_default();
    let prefix = if given.is_empty() {
        derive_prefix(name)
    } else {
        given
    };
    let valid = (1..=10).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !valid {
        return Err(DomainError::new(
            ErrorCode::PROJECT_PREFIX_INVALID,
            "task_id_prefix must be 1-10 characters of A-Z and 0-9",
        ));
    }
    Ok(prefix)
}

fn derive_prefix(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || c.is_whitespace())
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let prefix: String = match words.as_slice() {
        [] => "PROJ".into(),
        [one] => one.chars().take(4).collect(),
        many => many
            .iter()
            .take(4)
            .filter_map(|w| w.chars().next())
            .collect(),
    };
    prefix.to_uppercase()
}

fn normalize_project_name(name: &str) -> Result<String, DomainError> {
    validate::bounded_name(name, NAME_MAX, ErrorCode::PROJECT_NAME_INVALID, "name")
}

fn check_description(description: &str) -> Result<(), DomainError> {
    if description.chars().count() > DESCRIPTION_MAX {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("description must be at most {DESCRIPTION_MAX} characters"),
        ));
    }
    Ok(())
}

fn check_settings(settings: &Value) -> Result<(), DomainError> {
    if !settings.is_object() {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            "settings must be a JSON object",
        ));
    }
    Ok(())
}

impl Project {
    pub fn evolve(mut self, event: &ProjectEvent) -> Self {
        match event {
            ProjectEvent::Created {
                name,
                description,
                task_id_prefix,
                is_public,
                settings,
                ..
            } => {
                self.exists = true;
                self.name.clone_from(name);
                self.description.clone_from(description);
                self.task_id_prefix.clone_from(task_id_prefix);
                self.is_public = *is_public;
                self.settings = settings.clone();
            }
            ProjectEvent::Updated { changes } => {
                for change in changes {
                    let text = || change.new.as_str().unwrap_or_default().into();
                    match change.field {
                        ProjectField::Name => self.name = text(),
                        ProjectField::Description => self.description = text(),
                        ProjectField::TaskIdPrefix => self.task_id_prefix = text(),
                        ProjectField::IsPublic => {
                            self.is_public = change.new.as_bool().unwrap_or_default()
                        }
                        ProjectField::Settings => self.settings = change.new.clone(),
                    }
                }
            }
            ProjectEvent::Deleted {} => self.deleted = true,
            ProjectEvent::RoleCreated {
                role_id,
                role_name,
                permissions,
            } => {
                self.roles.insert(
                    *role_id,
                    Role {
                        name: role_name.clone(),
                        permissions: permissions::intern(permissions),
                    },
                );
            }
            ProjectEvent::RoleUpdated {
                role_id,
                role_name,
                permissions,
            } => {
                if let Some(role) = self.roles.get_mut(role_id) {
                    if let Some(name) = role_name {
                        role.name.clone_from(name);
                    }
                    if let Some(permissions) = permissions {
                        role.permissions = permissions::intern(permissions);
                    }
                }
            }
            ProjectEvent::RoleDeleted { role_id, .. } => {
                self.roles.remove(role_id);
            }
            ProjectEvent::MemberAdded {
                member_id,
                user_id,
                project_role_id,
                ..
            } => {
                self.members.insert(
                    *member_id,
                    Member {
                        user_id: *user_id,
                        role_id: *project_role_id,
                        agent_id: None,
                    },
                );
            }
            ProjectEvent::AgentMemberAdded {
                member_id,
                agent_id,
                project_role_id,
                ..
            } => {
                self.members.insert(
                    *member_id,
                    Member {
                        user_id: Uuid::nil(),
                        role_id: *project_role_id,
                        agent_id: Some(*agent_id),
                    },
                );
            }
            ProjectEvent::AgentMemberRemoved { member_id, .. } => {
                self.members.remove(member_id);
            }
            ProjectEvent::MemberRoleChanged {
                member_id,
                project_role_id,
                ..
            } => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.role_id = *project_role_id;
                }
            }
            ProjectEvent::MemberRemoved { member_id, .. } => {
                self.members.remove(member_id);
            }
            config_event => self.evolve_config(config_event),
        }
        self
    }

    pub fn is_live(&self) -> bool {
        self.exists && !self.deleted
    }

    pub fn member_by_user(&self, user_id: Uuid) -> Option<(Uuid, &Member)> {
        self.members
            .iter()
            .find(|(_, m)| m.is_user(user_id))
            .map(|(id, m)| (*id, m))
    }

    pub fn member_by_agent(&self, agent_id: Uuid) -> Option<(Uuid, &Member)> {
        self.members
            .iter()
            .find(|(_, m)| m.agent_id == Some(agent_id))
            .map(|(id, m)| (*id, m))
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.is_live() {
            return Err(DomainError::new(
                ErrorCode::PROJECT_NOT_FOUND,
                "project not found",
            ));
        }
        Ok(())
    }

    fn role(&self, role_id: Uuid) -> Result<&Role, DomainError> {
        self.roles
            .get(&role_id)
            .ok_or_else(|| DomainError::new(ErrorCode::ROLE_NOT_FOUND, "project role not found"))
    }

    fn role_name_free(&self, name: &str, except: Option<Uuid>) -> Result<(), DomainError> {
        let names = self.roles.iter().map(|(id, r)| (id, r.name.as_str()));
        validate::name_free(
            names,
            name,
            except.as_ref(),
            ErrorCode::ROLE_NAME_TAKEN,
            "project role",
        )
    }

    /// Members whose role lets them manage members; the project must keep
    /// at least one, or nobody could ever fix its membership again. Agents
    /// do not count: deleting an agent must never strand a project.
    fn managers_after(&self, member_id: Uuid, new_role: Option<Uuid>) -> usize {
        self.members
            .iter()
            .filter(|(_, m)| m.agent_id.is_none())
            .filter_map(|(id, m)| {
                if *id == member_id {
                    new_role
                } else {
                    Some(m.role_id)
                }
            })
            .filter(|role_id| {
                self.roles.get(role_id).is_some_and(|r| {
                    permissions::grants(&r.permissions, permissions::project::MEMBERS_WRITE)
                })
            })
            .count()
    }

    pub fn decide(&self, command: ProjectCommand) -> Decision<ProjectEvent> {
        match command {
            ProjectCommand::Create {
                name,
                description,
                task_id_prefix: prefix,
                is_public,
                settings,
                created_by,
                ids,
            } => {
                if self.exists {
                    return Err(DomainError::new(
                        ErrorCode::CONFLICT,
                        "project already exists",
                    ));
                }
                let name = normalize_project_name(&name)?;
                check_description(&description)?;
                let settings = settings.unwrap_or_else(|| Value::Object(Default::default()));
                check_settings(&settings)?;
                let task_id_prefix = task_id_prefix(prefix.as_deref(), &name)?;
                let mut events = vec![ProjectEvent::Created {
                    name,
                    description,
                    task_id_prefix,
                    is_public,
                    settings,
                    created_by,
                }];
                let role_ids = [ids.admin_role, ids.editor_role, ids.viewer_role];
                for ((role_name, perms), role_id) in seeded_roles().into_iter().zip(role_ids) {
                    events.push(ProjectEvent::RoleCreated {
                        role_id,
                        role_name: role_name.into(),
                        permissions: perms.into_iter().map(String::from).collect(),
                    });
                }
                events.push(ProjectEvent::MemberAdded {
                    member_id: ids.creator_member,
                    user_id: created_by,
                    project_role_id: ids.admin_role,
                    role_name: "Admin".into(),
                    member_type: "human".into(),
                });
                events.extend(task_config::seed_events(&ids.config));
                Ok(events)
            }
            ProjectCommand::Update {
                name,
                description,
                task_id_prefix: prefix,
                is_public,
                settings,
            } => {
                self.live()?;
                let mut changes = Changes::new();
                // Paca's settings page sends every field, blank ones included:
                // a blank string means "unchanged" (CONTRACT-NOTES §6 "Update").
                let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
                if let Some(name) = given(name) {
                    let name = normalize_project_name(&name)?;
                    changes.record(ProjectField::Name, self.name.clone(), name);
                }
                if let Some(description) = given(description) {
                    check_description(&description)?;
                    changes.record(
                        ProjectField::Description,
                        self.description.clone(),
                        description,
                    );
                }
                if let Some(prefix) = given(prefix) {
                    let prefix = task_id_prefix(Some(&prefix), &self.name)?;
                    changes.record(
                        ProjectField::TaskIdPrefix,
                        self.task_id_prefix.clone(),
                        prefix,
                    );
                }
                if let Some(is_public) = is_public {
                    changes.record(ProjectField::IsPublic, self.is_public, is_public);
                }
                if let Some(settings) = settings {
                    check_settings(&settings)?;
                    changes.record(ProjectField::Settings, self.settings.clone(), settings);
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::Updated {
                    changes: changes.into_vec(),
                }])
            }
            ProjectCommand::Delete => {
                self.live()?;
                Ok(vec![ProjectEvent::Deleted {}])
            }
            ProjectCommand::CreateRole {
                role_id,
                role_name,
                permissions,
            } => {
                self.live()?;
                let role_name = normalize_name(&role_name)?;
                self.role_name_free(&role_name, None)?;
                Ok(vec![ProjectEvent::RoleCreated {
                    role_id,
                    role_name,
                    permissions: normalize_permissions(permissions)?,
                }])
            }
            ProjectCommand::UpdateRole {
                role_id,
                role_name,
                permissions,
            } => {
                self.live()?;
                let role = self.role(role_id)?;
                let role_name = role_name
                    .map(|n| normalize_name(&n))
                    .transpose()?
                    .filter(|n| *n != role.name);
                if let Some(name) = &role_name {
                    self.role_name_free(name, Some(role_id))?;
                }
                let permissions = permissions
                    .map(normalize_permissions)
                    .transpose()?
                    .filter(|p| p.as_slice() != &*role.permissions);
                if let Some(new_permissions) = &permissions {
                    let mut after = self.clone();
                    if let Some(r) = after.roles.get_mut(&role_id) {
                        r.permissions = permissions::intern(new_permissions);
                    }
                    if after.managers_after(Uuid::nil(), None) == 0 {
                        return Err(DomainError::new(
                            ErrorCode::PROJECT_LAST_ADMIN,
                            "no member would be left who can manage members",
                        ));
                    }
                }
                if role_name.is_none() && permissions.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::RoleUpdated {
                    role_id,
                    role_name,
                    permissions,
                }])
            }
            ProjectCommand::DeleteRole { role_id } => {
                self.live()?;
                let role = self.role(role_id)?;
                if self.members.values().any(|m| m.role_id == role_id) {
                    return Err(DomainError::new(
                        ErrorCode::ROLE_IN_USE,
                        "the role is assigned to members; move them to another role first",
                    ));
                }
                Ok(vec![ProjectEvent::RoleDeleted {
                    role_id,
                    role_name: role.name.clone(),
                }])
            }
            ProjectCommand::AddMember {
                member_id,
                user_id,
                project_role_id,
            } => {
                self.live()?;
                let role = self.role(project_role_id)?;
                if self.member_by_user(user_id).is_some() {
                    return Err(DomainError::new(
                        ErrorCode::PROJECT_MEMBER_ALREADY_ADDED,
                        "the user is already a member of this project",
                    ));
                }
                Ok(vec![ProjectEvent::MemberAdded {
                    member_id,
                    user_id,
                    project_role_id,
                    role_name: role.name.clone(),
                    member_type: "human".into(),
                }])
            }
            ProjectCommand::ChangeMemberRole {
                member_id,
                project_role_id,
            } => {
                self.live()?;
                let member = self.members.get(&member_id).ok_or_else(|| {
                    DomainError::new(ErrorCode::PROJECT_MEMBER_NOT_FOUND, "member not found")
                })?;
                let role = self.role(project_role_id)?;
                if member.role_id == project_role_id {
                    return Ok(vec![]);
                }
                if self.managers_after(member_id, Some(project_role_id)) == 0 {
                    return Err(DomainError::new(
                        ErrorCode::PROJECT_LAST_ADMIN,
                        "this is the last member who can manage members",
                    ));
                }
                Ok(vec![ProjectEvent::MemberRoleChanged {
                    member_id,
                    user_id: member.user_id,
                    project_role_id,
                    role_name: role.name.clone(),
                    old_project_role_id: member.role_id,
                }])
            }
            ProjectCommand::RemoveMember { member_id } => {
                self.live()?;
                let member = self.members.get(&member_id).ok_or_else(|| {
                    DomainError::new(ErrorCode::PROJECT_MEMBER_NOT_FOUND, "member not found")
                })?;
                if member.agent_id.is_some() {
                    return Err(DomainError::new(
                        ErrorCode::BAD_REQUEST,
                        "an agent member leaves the project when the agent is deleted \
                         (DELETE /projects/:id/agents/:agentId)",
                    ));
                }
                if self.managers_after(member_id, None) == 0 {
                    return Err(DomainError::new(
                        ErrorCode::PROJECT_LAST_ADMIN,
                        "this is the last member who can manage members",
                    ));
                }
                Ok(vec![ProjectEvent::MemberRemoved {
                    member_id,
                    user_id: member.user_id,
                }])
            }
            ProjectCommand::AddAgentMember {
                member_id,
                agent_id,
                project_role_id,
            } => {
                self.live()?;
                let role = self.role(project_role_id)?;
                if self.member_by_agent(agent_id).is_some() {
                    return Err(DomainError::new(
                        ErrorCode::PROJECT_MEMBER_ALREADY_ADDED,
                        "the agent is already a member of this project",
                    ));
                }
                Ok(vec![ProjectEvent::AgentMemberAdded {
                    member_id,
                    agent_id,
                    project_role_id,
                    role_name: role.name.clone(),
                    member_type: "agent".into(),
                }])
            }
            ProjectCommand::RemoveAgentMember { member_id } => {
                // A deleted project keeps no members to remove; deleting
                // its agents afterwards only ends the agents.
                let Some(member) = self.members.get(&member_id) else {
                    return Ok(vec![]);
                };
                let Some(agent_id) = member.agent_id else {
                    return Err(DomainError::new(
                        ErrorCode::BAD_REQUEST,
                        "not an agent member",
                    ));
                };
                Ok(vec![ProjectEvent::AgentMemberRemoved {
                    member_id,
                    agent_id,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> SeedIds {
        SeedIds {
            admin_role: Uuid::from_u128(1),
            editor_role: Uuid::from_u128(2),
            viewer_role: Uuid::from_u128(3),
            creator_member: Uuid::from_u128(10),
            config: ConfigSeedIds {
                types: [20, 21, 22, 23, 24].map(Uuid::from_u128),
                statuses: [30, 31, 32, 33].map(Uuid::from_u128),
            },
        }
    }

    fn created() -> Project {
        let events = Project::default()
            .decide(ProjectCommand::Create {
                name: "My First Project".into(),
                description: "Getting started".into(),
                task_id_prefix: None,
                is_public: false,
                settings: None,
                created_by: Uuid::from_u128(100),
                ids: ids(),
            })
            .unwrap();
        events.iter().fold(Project::default(), Project::evolve)
    }

    #[test]
    fn prefix_derivation() {
        assert_eq!(task_id_prefix(None, "My First Project").unwrap(), "MFP");
        assert_eq!(task_id_prefix(None, "paca").unwrap(), "PACA");
        assert_eq!(task_id_prefix(None, "Platform").unwrap(), "PLAT");
        assert_eq!(task_id_prefix(None, "a b c d e").unwrap(), "ABCD");
        assert_eq!(task_id_prefix(None, "!!!").unwrap(), "PROJ");
        assert_eq!(task_id_prefix(Some(" paca "), "x").unwrap(), "PACA");
        assert_eq!(
            task_id_prefix(Some("PA-CA"), "x").unwrap_err().code,
            ErrorCode::PROJECT_PREFIX_INVALID
        );
    }

    #[test]
    fn create_seeds_roles_and_makes_the_creator_admin() {
        let project = created();
        assert_eq!(project.task_id_prefix, "MFP");
        assert_eq!(project.roles.len(), 3);
        let (_, member) = project.member_by_user(Uuid::from_u128(100)).unwrap();
        assert_eq!(project.roles[&member.role_id].name, "Admin");
        assert_eq!(project.settings, serde_json::json!({}));
    }

    #[test]
    fn update_records_only_real_changes() {
        let project = created();
        assert_eq!(
            project.decide(ProjectCommand::Update {
                name: Some("My First Project".into()),
                description: None,
                task_id_prefix: None,
                is_public: Some(false),
                settings: None
            }),
            Ok(vec![])
        );
        let events = project
            .decide(ProjectCommand::Update {
                name: None,
                description: None,
                task_id_prefix: None,
                is_public: Some(true),
                settings: None,
            })
            .unwrap();
        assert_eq!(
            events,
            vec![ProjectEvent::Updated {
                changes: vec![FieldChange {
                    field: ProjectField::IsPublic,
                    old: false.into(),
                    new: true.into()
                }]
            }]
        );
    }

    #[test]
    fn member_rules() {
        let project = created();
        let user = Uuid::from_u128(200);
        let add = ProjectCommand::AddMember {
            member_id: Uuid::from_u128(11),
            user_id: user,
            project_role_id: ids().viewer_role,
        };
        let events = project.decide(add.clone()).unwrap();
        let project = events.iter().fold(project, Project::evolve);
        assert_eq!(
            project.decide(add).unwrap_err().code,
            ErrorCode::PROJECT_MEMBER_ALREADY_ADDED
        );
        // The creator is the only member who can manage members.
        assert_eq!(
            project
                .decide(ProjectCommand::RemoveMember {
                    member_id: ids().creator_member
                })
                .unwrap_err()
                .code,
            ErrorCode::PROJECT_LAST_ADMIN
        );
        assert_eq!(
            project
                .decide(ProjectCommand::DeleteRole {
                    role_id: ids().viewer_role
                })
                .unwrap_err()
                .code,
            ErrorCode::ROLE_IN_USE
        );
        assert!(
            project
                .decide(ProjectCommand::RemoveMember {
                    member_id: Uuid::from_u128(11)
                })
                .is_ok()
        );
    }

    #[test]
    fn agent_members() {
        let project = created();
        let agent = Uuid::from_u128(500);
        let add = ProjectCommand::AddAgentMember {
            member_id: Uuid::from_u128(12),
            agent_id: agent,
            project_role_id: ids().admin_role,
        };
        let events = project.decide(add.clone()).unwrap();
        assert!(matches!(
            &events[0],
            ProjectEvent::AgentMemberAdded { member_type, role_name, .. }
                if member_type == "agent" && role_name == "Admin"
        ));
        let project = events.iter().fold(project, Project::evolve);
        assert_eq!(
            project.member_by_agent(agent).unwrap().0,
            Uuid::from_u128(12)
        );
        assert_eq!(
            project.decide(add).unwrap_err().code,
            ErrorCode::PROJECT_MEMBER_ALREADY_ADDED
        );
        // An Admin agent does not count as the project's manager.
        assert_eq!(
            project
                .decide(ProjectCommand::RemoveMember {
                    member_id: ids().creator_member
                })
                .unwrap_err()
                .code,
            ErrorCode::PROJECT_LAST_ADMIN
        );
        // Agents leave through agent deletion, not the members route.
        assert_eq!(
            project
                .decide(ProjectCommand::RemoveMember {
                    member_id: Uuid::from_u128(12)
                })
                .unwrap_err()
                .code,
            ErrorCode::BAD_REQUEST
        );
        let events = project
            .decide(ProjectCommand::RemoveAgentMember {
                member_id: Uuid::from_u128(12),
            })
            .unwrap();
        let project = events.iter().fold(project, Project::evolve);
        assert!(project.member_by_agent(agent).is_none());
    }

    #[test]
    fn role_names_are_unique_per_project() {
        let project = created();
        let err = project
            .decide(ProjectCommand::CreateRole {
                role_id: Uuid::from_u128(4),
                role_name: "editor".into(),
                permissions: vec![],
            })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ROLE_NAME_TAKEN);
    }

    #[test]
    fn deleted_project_refuses_commands() {
        let project = created();
        let events = project.decide(ProjectCommand::Delete).unwrap();
        let project = events.iter().fold(project, Project::evolve);
        assert_eq!(
            project.decide(ProjectCommand::Delete).unwrap_err().code,
            ErrorCode::PROJECT_NOT_FOUND
        );
    }
}
