//! Global roles: named sets of global permissions. `SUPER_ADMIN`, `ADMIN`
//! and `USER` are seeded and cannot be renamed or deleted.

use serde::{Deserialize, Serialize};

use crate::{Decision, DomainError, DomainEvent, ErrorCode, permissions, validate};

pub const SUPER_ADMIN: &str = "SUPER_ADMIN";
pub const ADMIN: &str = "ADMIN";
pub const USER: &str = "USER";
pub const ROLE_NAME_MAX: usize = 100;

/// The seeded roles and their permissions (CONTRACT-NOTES §18b).
pub fn seeded() -> [(&'static str, Vec<String>); 3] {
    [
        (SUPER_ADMIN, vec!["*".into()]),
        (
            ADMIN,
            vec![
                "users.*".into(),
                "global_roles.*".into(),
                "projects.*".into(),
            ],
        ),
        (USER, vec!["users.read".into()]),
    ]
}

pub fn is_system(name: &str) -> bool {
    matches!(name, SUPER_ADMIN | ADMIN | USER)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum GlobalRoleEvent {
    #[serde(rename = "global_role.created")]
    Created {
        name: String,
        permissions: Vec<String>,
    },
    #[serde(rename = "global_role.updated")]
    Updated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        permissions: Option<Vec<String>>,
    },
    #[serde(rename = "global_role.deleted")]
    Deleted {},
}

impl DomainEvent for GlobalRoleEvent {
    const STREAM_TYPE: &'static str = "global_role";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GlobalRole {
    pub exists: bool,
    pub deleted: bool,
    pub name: String,
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum GlobalRoleCommand {
    Create {
        name: String,
        permissions: Vec<String>,
    },
    Update {
        name: Option<String>,
        permissions: Option<Vec<String>>,
    },
    Delete,
}

pub fn normalize_name(name: &str) -> Result<String, DomainError> {
    validate::bounded_name(
        name,
        ROLE_NAME_MAX,
        ErrorCode::ROLE_NAME_INVALID,
        "role name",
    )
}

/// Validates and de-duplicates a permission list, keeping its order.
pub fn normalize_permissions(list: Vec<String>) -> Result<Vec<String>, DomainError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for p in list {
        let p = p.trim().to_owned();
        if !permissions::is_valid(&p) {
            return Err(DomainError::new(
                ErrorCode::BAD_REQUEST,
                format!("invalid permission {p:?}"),
            ));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

impl GlobalRole {
    pub fn evolve(mut self, event: &GlobalRoleEvent) -> Self {
        match event {
            GlobalRoleEvent::Created { name, permissions } => {
                self.exists = true;
                self.name.clone_from(name);
                self.permissions.clone_from(permissions);
            }
            GlobalRoleEvent::Updated { name, permissions } => {
                if let Some(name) = name {
                    self.name.clone_from(name);
                }
                if let Some(permissions) = permissions {
                    self.permissions.clone_from(permissions);
                }
            }
            GlobalRoleEvent::Deleted {} => self.deleted = true,
        }
        self
    }

    pub fn is_live(&self) -> bool {
        self.exists && !self.deleted
    }

    pub fn decide(&self, command: GlobalRoleCommand) -> Decision<GlobalRoleEvent> {
        match command {
            GlobalRoleCommand::Create { name, permissions } => {
                if self.exists {
                    return Err(DomainError::new(ErrorCode::CONFLICT, "role already exists"));
                }
                Ok(vec![GlobalRoleEvent::Created {
                    name: normalize_name(&name)?,
                    permissions: normalize_permissions(permissions)?,
                }])
            }
            GlobalRoleCommand::Update { name, permissions } => {
                if !self.is_live() {
                    return Err(DomainError::new(
                        ErrorCode::ROLE_NOT_FOUND,
                        "role not found",
                    ));
                }
                let name = name.map(|n| normalize_name(&n)).transpose()?;
                let name = name.filter(|n| *n != self.name);
                if name.is_some() && is_system(&self.name) {
                    return Err(DomainError::new(
                        ErrorCode::ROLE_IS_SYSTEM,
                        "system roles cannot be renamed",
                    ));
                }
                let permissions = permissions
                    .map(normalize_permissions)
                    .transpose()?
                    .filter(|p| *p != self.permissions);
                if permissions.is_some() && self.name == SUPER_ADMIN {
                    // Keeps at least one role with full access.
                    return Err(DomainError::new(
                        ErrorCode::ROLE_IS_SYSTEM,
                        "SUPER_ADMIN always has every permission",
                    ));
                }
                if name.is_none() && permissions.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![GlobalRoleEvent::Updated { name, permissions }])
            }
            GlobalRoleCommand::Delete => {
                if !self.is_live() {
                    return Err(DomainError::new(
                        ErrorCode::ROLE_NOT_FOUND,
                        "role not found",
                    ));
                }
                if is_system(&self.name) {
                    return Err(DomainError::new(
                        ErrorCode::ROLE_IS_SYSTEM,
                        "system roles cannot be deleted",
                    ));
                }
                Ok(vec![GlobalRoleEvent::Deleted {}])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[GlobalRoleEvent]) -> GlobalRole {
        events
            .iter()
            .fold(GlobalRole::default(), GlobalRole::evolve)
    }

    #[test]
    fn system_roles_cannot_be_deleted_or_renamed() {
        let role = given(&[GlobalRoleEvent::Created {
            name: USER.into(),
            permissions: vec!["users.read".into()],
        }]);
        assert_eq!(
            role.decide(GlobalRoleCommand::Delete).unwrap_err().code,
            ErrorCode::ROLE_IS_SYSTEM
        );
        assert_eq!(
            role.decide(GlobalRoleCommand::Update {
                name: Some("PEOPLE".into()),
                permissions: None
            })
            .unwrap_err()
            .code,
            ErrorCode::ROLE_IS_SYSTEM
        );
        // Changing a system role's permissions (other than SUPER_ADMIN) is allowed.
        assert!(
            role.decide(GlobalRoleCommand::Update {
                name: None,
                permissions: Some(vec!["users.read".into(), "projects.create".into()])
            })
            .is_ok()
        );
    }

    #[test]
    fn create_rejects_bad_permissions_and_names() {
        let role = given(&[]);
        let err = role
            .decide(GlobalRoleCommand::Create {
                name: "  ".into(),
                permissions: vec![],
            })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ROLE_NAME_INVALID);
        let err = role
            .decide(GlobalRoleCommand::Create {
                name: "PM".into(),
                permissions: vec!["Projects READ".into()],
            })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
    }

    #[test]
    fn custom_role_lifecycle() {
        let role = given(&[GlobalRoleEvent::Created {
            name: "PM".into(),
            permissions: vec!["projects.create".into()],
        }]);
        assert_eq!(
            role.decide(GlobalRoleCommand::Update {
                name: Some("PM".into()),
                permissions: Some(vec!["projects.create".into()])
            }),
            Ok(vec![])
        );
        let events = role.decide(GlobalRoleCommand::Delete).unwrap();
        let role = events.iter().fold(role, GlobalRole::evolve);
        assert_eq!(
            role.decide(GlobalRoleCommand::Delete).unwrap_err().code,
            ErrorCode::ROLE_NOT_FOUND
        );
    }
}
