//! The user aggregate: profile, global role, password state and API keys.
//! Password and key *hashes* never appear here; events only record that a
//! password or key changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Decision, DomainError, DomainEvent, ErrorCode};

pub const USERNAME_MAX: usize = 64;
pub const FULL_NAME_MAX: usize = 200;
pub const PASSWORD_MIN: usize = 8;
pub const API_KEY_NAME_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum UserEvent {
    #[serde(rename = "user.created")]
    Created {
        username: String,
        full_name: String,
        #[serde(default)]
        email: Option<String>,
        role_id: Uuid,
        role_name: String,
        must_change_password: bool,
    },
    #[serde(rename = "user.profile_updated")]
    ProfileUpdated {
        full_name: String,
        old_full_name: String,
        /// Set only when the email changed (absent in events written before
        /// email could be changed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_email: Option<String>,
    },
    #[serde(rename = "user.role_changed")]
    RoleChanged {
        role_id: Uuid,
        role_name: String,
        old_role_id: Uuid,
    },
    /// The hash itself lives in `user_credentials`, never in the log.
    #[serde(rename = "user.password_changed")]
    PasswordChanged {
        by_admin: bool,
        must_change_password: bool,
    },
    #[serde(rename = "user.deleted")]
    Deleted {},
    #[serde(rename = "user.api_key_created")]
    ApiKeyCreated {
        key_id: Uuid,
        name: String,
        key_prefix: String,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    #[serde(rename = "user.api_key_revoked")]
    ApiKeyRevoked { key_id: Uuid },
    /// Sessions (refresh-token families) ended before they expired: a
    /// logout, or a refresh token presented twice. Access tokens of these
    /// families stop working on every node once this event is seen.
    #[serde(rename = "user.sessions_revoked")]
    SessionsRevoked {
        family_ids: Vec<Uuid>,
        reason: SessionEnd,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    Logout,
    RefreshReuse,
}

/// What the user aggregate knows of one API key (its hash lives in the
/// credential table, never here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiKeyState {
    pub revoked: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

impl DomainEvent for UserEvent {
    const STREAM_TYPE: &'static str = "user";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    pub exists: bool,
    pub deleted: bool,
    pub username: String,
    pub full_name: String,
    pub email: Option<String>,
    pub role_id: Uuid,
    pub must_change_password: bool,
    pub api_keys: BTreeMap<Uuid, ApiKeyState>,
}

#[derive(Debug, Clone)]
pub enum UserCommand {
    Create {
        username: String,
        full_name: String,
        email: Option<String>,
        role_id: Uuid,
        role_name: String,
        must_change_password: bool,
    },
    UpdateProfile {
        /// `None` or blank: unchanged.
        full_name: Option<String>,
        /// `None` or blank: unchanged (Paca's profile page sends `""`).
        email: Option<String>,
    },
    ChangeRole {
        role_id: Uuid,
        role_name: String,
    },
    ChangePassword {
        by_admin: bool,
    },
    Delete,
    CreateApiKey {
        key_id: Uuid,
        name: String,
        key_prefix: String,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    RevokeApiKey {
        key_id: Uuid,
    },
    RevokeSessions {
        family_ids: Vec<Uuid>,
        reason: SessionEnd,
    },
}

pub fn validate_username(username: &str) -> Result<(), DomainError> {
    let ok = !username.is_empty()
        && username.len() <= USERNAME_MAX
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!(
                "username must be 1-{USERNAME_MAX} characters of letters, digits, '_', '-', '.', '@'"
            ),
        ))
    }
}

pub fn validate_full_name(full_name: &str) -> Result<(), DomainError> {
    if full_name.trim().is_empty() || full_name.chars().count() > FULL_NAME_MAX {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("full_name must be 1-{FULL_NAME_MAX} characters"),
        ));
    }
    Ok(())
}

pub const EMAIL_MAX: usize = 254;

/// A deliberately loose check (one `@` with text on both sides, no
/// whitespace): the address is shown, never used to send mail.
pub fn validate_email(email: &str) -> Result<(), DomainError> {
    let valid = email.chars().count() <= EMAIL_MAX
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, host)| {
            !local.is_empty() && !host.is_empty() && !host.contains('@')
        });
    if !valid {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            "email must be an address like name@example.com",
        ));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), DomainError> {
    if password.chars().count() < PASSWORD_MIN {
        return Err(DomainError::new(
            ErrorCode::BAD_REQUEST,
            format!("password must be at least {PASSWORD_MIN} characters"),
        ));
    }
    Ok(())
}

impl User {
    pub fn evolve(mut self, event: &UserEvent) -> Self {
        match event {
            UserEvent::Created {
                username,
                full_name,
                email,
                role_id,
                must_change_password,
                ..
            } => {
                self.exists = true;
                self.username.clone_from(username);
                self.full_name.clone_from(full_name);
                self.email.clone_from(email);
                self.role_id = *role_id;
                self.must_change_password = *must_change_password;
            }
            UserEvent::ProfileUpdated {
                full_name, email, ..
            } => {
                self.full_name.clone_from(full_name);
                if email.is_some() {
                    self.email.clone_from(email);
                }
            }
            UserEvent::RoleChanged { role_id, .. } => self.role_id = *role_id,
            UserEvent::PasswordChanged {
                must_change_password,
                ..
            } => self.must_change_password = *must_change_password,
            UserEvent::Deleted {} => self.deleted = true,
            UserEvent::ApiKeyCreated {
                key_id, expires_at, ..
            } => {
                self.api_keys.insert(
                    *key_id,
                    ApiKeyState {
                        revoked: false,
                        expires_at: *expires_at,
                    },
                );
            }
            UserEvent::ApiKeyRevoked { key_id } => {
                self.api_keys.entry(*key_id).or_default().revoked = true;
            }
            UserEvent::SessionsRevoked { .. } => {}
        }
        self
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.exists || self.deleted {
            return Err(DomainError::new(
                ErrorCode::USER_NOT_FOUND,
                "user not found",
            ));
        }
        Ok(())
    }

    pub fn decide(&self, command: UserCommand) -> Decision<UserEvent> {
        match command {
            UserCommand::Create {
                username,
                full_name,
                email,
                role_id,
                role_name,
                must_change_password,
            } => {
                if self.exists {
                    return Err(DomainError::new(
                        ErrorCode::USER_USERNAME_TAKEN,
                        "user already exists",
                    ));
                }
                validate_username(&username)?;
                validate_full_name(&full_name)?;
                Ok(vec![UserEvent::Created {
                    username,
                    full_name: full_name.trim().to_owned(),
                    email: email.filter(|e| !e.trim().is_empty()),
                    role_id,
                    role_name,
                    must_change_password,
                }])
            }
            UserCommand::UpdateProfile { full_name, email } => {
                self.live()?;
                let given =
                    |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                let full_name = match given(full_name) {
                    Some(name) => {
                        validate_full_name(&name)?;
                        name
                    }
                    None => self.full_name.clone(),
                };
                let email = match given(email) {
                    Some(email) => {
                        validate_email(&email)?;
                        Some(email).filter(|e| self.email.as_ref() != Some(e))
                    }
                    None => None,
                };
                if full_name == self.full_name && email.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::ProfileUpdated {
                    full_name,
                    old_full_name: self.full_name.clone(),
                    old_email: email.as_ref().and(self.email.clone()),
                    email,
                }])
            }
            UserCommand::ChangeRole { role_id, role_name } => {
                self.live()?;
                if role_id == self.role_id {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::RoleChanged {
                    role_id,
                    role_name,
                    old_role_id: self.role_id,
                }])
            }
            UserCommand::ChangePassword { by_admin } => {
                self.live()?;
                // An admin reset forces the user to pick a fresh password.
                Ok(vec![UserEvent::PasswordChanged {
                    by_admin,
                    must_change_password: by_admin,
                }])
            }
            UserCommand::Delete => {
                self.live()?;
                Ok(vec![UserEvent::Deleted {}])
            }
            UserCommand::CreateApiKey {
                key_id,
                name,
                key_prefix,
                expires_at,
                now,
            } => {
                self.live()?;
                let name = name.trim().to_owned();
                if name.is_empty() {
                    return Err(DomainError::new(
                        ErrorCode::API_KEY_NAME_INVALID,
                        "name must not be empty",
                    ));
                }
                if name.chars().count() > API_KEY_NAME_MAX {
                    return Err(DomainError::new(
                        ErrorCode::API_KEY_NAME_TOO_LONG,
                        format!("name must be at most {API_KEY_NAME_MAX} characters"),
                    ));
                }
                let expires_at = expires_at
                    .map(|at| crate::validate::timestamp("expires_at", at))
                    .transpose()?;
                if expires_at.is_some_and(|at| at <= now) {
                    return Err(DomainError::new(
                        ErrorCode::BAD_REQUEST,
                        "expires_at must be in the future",
                    ));
                }
                Ok(vec![UserEvent::ApiKeyCreated {
                    key_id,
                    name,
                    key_prefix,
                    expires_at,
                }])
            }
            UserCommand::RevokeApiKey { key_id } => {
                self.live()?;
                match self.api_keys.get(&key_id) {
                    Some(key) if !key.revoked => Ok(vec![UserEvent::ApiKeyRevoked { key_id }]),
                    _ => Err(DomainError::new(
                        ErrorCode::API_KEY_NOT_FOUND,
                        "API key not found",
                    )),
                }
            }
            // Ending sessions is allowed for a deleted user too (its
            // sessions must end however it got there); nothing to end is
            // nothing to record.
            UserCommand::RevokeSessions { family_ids, reason } => {
                if !self.exists || family_ids.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::SessionsRevoked { family_ids, reason }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[UserEvent]) -> User {
        events.iter().fold(User::default(), User::evolve)
    }

    fn created() -> UserEvent {
        UserEvent::Created {
            username: "ada".into(),
            full_name: "Ada".into(),
            email: None,
            role_id: Uuid::nil(),
            role_name: "USER".into(),
            must_change_password: true,
        }
    }

    #[test]
    fn create_validates_username() {
        let err = given(&[])
            .decide(UserCommand::Create {
                username: "a b".into(),
                full_name: "A".into(),
                email: None,
                role_id: Uuid::nil(),
                role_name: "USER".into(),
                must_change_password: false,
            })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
    }

    #[test]
    fn self_password_change_clears_the_gate_and_admin_reset_sets_it() {
        let user = given(&[created()]);
        assert!(user.must_change_password);
        let events = user
            .decide(UserCommand::ChangePassword { by_admin: false })
            .unwrap();
        assert_eq!(
            events,
            vec![UserEvent::PasswordChanged {
                by_admin: false,
                must_change_password: false
            }]
        );
        let user = events.iter().fold(user, User::evolve);
        assert!(!user.must_change_password);
        let events = user
            .decide(UserCommand::ChangePassword { by_admin: true })
            .unwrap();
        assert!(events.iter().fold(user, User::evolve).must_change_password);
    }

    #[test]
    fn blank_email_is_unchanged_and_a_new_one_is_recorded_with_the_old() {
        let user = given(&[created()]);
        let events = user
            .decide(UserCommand::UpdateProfile {
                full_name: None,
                email: Some("ada@example.com".into()),
            })
            .unwrap();
        let user = events.iter().fold(user, User::evolve);
        assert_eq!(user.email.as_deref(), Some("ada@example.com"));
        for blank in ["", "   "] {
            assert_eq!(
                user.decide(UserCommand::UpdateProfile {
                    full_name: None,
                    email: Some(blank.into()),
                }),
                Ok(vec![])
            );
        }
        let events = user
            .decide(UserCommand::UpdateProfile {
                full_name: None,
                email: Some(" lovelace@example.com ".into()),
            })
            .unwrap();
        assert!(matches!(
            events.as_slice(),
            [UserEvent::ProfileUpdated { email: Some(e), old_email: Some(o), .. }]
                if e == "lovelace@example.com" && o == "ada@example.com"
        ));
        assert_eq!(
            user.decide(UserCommand::UpdateProfile {
                full_name: None,
                email: Some("not an address".into()),
            })
            .unwrap_err()
            .code,
            ErrorCode::BAD_REQUEST
        );
    }

    #[test]
    fn unchanged_profile_records_nothing() {
        let user = given(&[created()]);
        assert_eq!(
            user.decide(UserCommand::UpdateProfile {
                full_name: Some("Ada".into()),
                email: Some(String::new()),
            }),
            Ok(vec![])
        );
    }

    #[test]
    fn deleted_user_refuses_commands() {
        let user = given(&[created(), UserEvent::Deleted {}]);
        let err = user.decide(UserCommand::Delete).unwrap_err();
        assert_eq!(err.code, ErrorCode::USER_NOT_FOUND);
    }

    #[test]
    fn api_key_lifecycle() {
        let key_id = Uuid::now_v7();
        let now = Utc::now();
        let user = given(&[created()]);
        let err = user
            .decide(UserCommand::CreateApiKey {
                key_id,
                name: "x".repeat(101),
                key_prefix: "paca_ab".into(),
                expires_at: None,
                now,
            })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::API_KEY_NAME_TOO_LONG);
        let events = user
            .decide(UserCommand::CreateApiKey {
                key_id,
                name: "ci".into(),
                key_prefix: "paca_ab".into(),
                expires_at: None,
                now,
            })
            .unwrap();
        let user = events.iter().fold(user, User::evolve);
        let events = user.decide(UserCommand::RevokeApiKey { key_id }).unwrap();
        let user = events.iter().fold(user, User::evolve);
        let err = user
            .decide(UserCommand::RevokeApiKey { key_id })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::API_KEY_NOT_FOUND);
    }

    #[test]
    fn events_round_trip_through_the_stored_form() {
        let event = created();
        assert_eq!(event.event_type(), "user.created");
        let payload = event.to_payload();
        assert!(payload.get("event_type").is_none());
        assert_eq!(
            UserEvent::from_stored("user.created", &payload).unwrap(),
            event
        );
    }
}
