//! User commands: admin-created users, profile, passwords, roles, API keys.

use chrono::{DateTime, Utc};
use domain::global_role::{GlobalRole, GlobalRoleEvent};
use domain::user::{User, UserCommand, UserEvent, validate_password};
use domain::{DomainError, ErrorCode};
use eventstore::{AppendTx, LockMode, Metadata};
use uuid::Uuid;

use crate::auth::{generate_api_key, hash_password};
use crate::{CommandError, CommandResult, Commands, WriteSide};

pub const USERNAME_SCOPE: &str = "username";

fn username_taken(username: &str) -> DomainError {
    DomainError::new(
        ErrorCode::USER_USERNAME_TAKEN,
        format!("username {username:?} is already taken"),
    )
}

/// An API key as returned once at creation.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub key_id: Uuid,
    pub raw: String,
}

pub struct NewUser {
    pub username: String,
    pub password: String,
    pub full_name: String,
    pub email: Option<String>,
    pub role_id: Uuid,
    pub must_change_password: bool,
}

impl Commands {
    pub async fn load_user(&self, user_id: Uuid) -> CommandResult<User> {
        Ok(self
            .load::<UserEvent, User>(user_id, User::evolve)
            .await?
            .state)
    }

    /// The role, checked live, with its stream row share-locked until the
    /// transaction ends: a deletion (which locks it `FOR UPDATE` and counts
    /// holders) waits for this assignment, and sees its holder.
    async fn live_role_in(&self, tx: &mut AppendTx, role_id: Uuid) -> CommandResult<GlobalRole> {
        tx.lock_streams(&[role_id], LockMode::Shared).await?;
        let role = self
            .load_in::<GlobalRoleEvent, GlobalRole>(tx.conn(), role_id, GlobalRole::evolve)
            .await?
            .state;
        if !role.is_live() {
            return Err(CommandError::domain(
                ErrorCode::ROLE_NOT_FOUND,
                "global role not found",
            ));
        }
        Ok(role)
    }

    pub async fn create_user(&self, meta: &Metadata, new: NewUser) -> CommandResult<Uuid> {
        validate_password(&new.password)?;
        let hash = hash_password(new.password).await?;
        let user_id = Uuid::now_v7();
        let key = new.username.to_lowercase();
        transact!(self, tx => async {
        let role = self.live_role_in(tx, new.role_id).await?;
        let mut decide = |user: &User| {
            let events = user.decide(UserCommand::Create {
                username: new.username.clone(),
                full_name: new.full_name.clone(),
                email: new.email.clone(),
                role_id: new.role_id,
                role_name: role.name.clone(),
                must_change_password: new.must_change_password,
            })?;
            Ok((
                events,
                vec![
                    WriteSide::Reserve {
                        scope: USERNAME_SCOPE,
                        key: key.clone(),
                        owner: user_id,
                        taken: username_taken(&new.username),
                    },
                    WriteSide::SetPasswordHash {
                        user_id,
                        hash: hash.clone(),
                    },
                ],
            ))
        };
        self.execute_in(tx, user_id, None, User::evolve, meta, &mut decide, None).await
        }
        .await)?;
        Ok(user_id)
    }

    pub async fn update_profile(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        full_name: Option<String>,
        email: Option<String>,
    ) -> CommandResult<()> {
        self.execute(user_id, None, User::evolve, meta, |user: &User| {
            Ok((
                user.decide(UserCommand::UpdateProfile {
                    full_name: full_name.clone(),
                    email: email.clone(),
                })?,
                vec![],
            ))
        })
        .await?;
        Ok(())
    }

    /// A user changing their own password; needs the current one.
    pub async fn change_own_password(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        current: &str,
        new: String,
    ) -> CommandResult<()> {
        validate_password(&new)?;
        if !self.check_current_password(user_id, current).await? {
            return Err(CommandError::domain(
                ErrorCode::USER_INVALID_CURRENT_PASSWORD,
                "current password is incorrect",
            ));
        }
        self.set_password(meta, user_id, new, false).await
    }

    /// An administrator's reset: the user must pick a new one at next login.
    pub async fn reset_password(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        new: String,
    ) -> CommandResult<()> {
        validate_password(&new)?;
        self.set_password(meta, user_id, new, true).await
    }

    async fn set_password(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        new: String,
        by_admin: bool,
    ) -> CommandResult<()> {
        let hash = hash_password(new).await?;
        self.execute(user_id, None, User::evolve, meta, |user: &User| {
            Ok((
                user.decide(UserCommand::ChangePassword { by_admin })?,
                vec![
                    WriteSide::SetPasswordHash {
                        user_id,
                        hash: hash.clone(),
                    },
                    WriteSide::RevokeSessions { user_id },
                ],
            ))
        })
        .await?;
        Ok(())
    }

    pub async fn change_user_role(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        role_id: Uuid,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            let role = self.live_role_in(tx, role_id).await?;
            let mut decide = |user: &User| {
                Ok((
                    user.decide(UserCommand::ChangeRole {
                        role_id,
                        role_name: role.name.clone(),
                    })?,
                    vec![],
                ))
            };
            self.execute_in(tx, user_id, None, User::evolve, meta, &mut decide, None)
                .await
        }
        .await)?;
        Ok(())
    }

    pub async fn delete_user(&self, meta: &Metadata, user_id: Uuid) -> CommandResult<()> {
        self.execute(user_id, None, User::evolve, meta, |user: &User| {
            Ok((
                user.decide(UserCommand::Delete)?,
                vec![WriteSide::RevokeSessions { user_id }],
            ))
        })
        .await?;
        Ok(())
    }

    pub async fn create_api_key(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        name: String,
        expires_at: Option<DateTime<Utc>>,
    ) -> CommandResult<MintedKey> {
        let (raw, prefix, hash) = generate_api_key();
        let key_id = Uuid::now_v7();
        let now = Utc::now();
        self.execute(user_id, None, User::evolve, meta, |user: &User| {
            Ok((
                user.decide(UserCommand::CreateApiKey {
                    key_id,
                    name: name.clone(),
                    key_prefix: prefix.clone(),
                    expires_at,
                    now,
                })?,
                vec![WriteSide::StoreApiKeyHash {
                    key_id,
                    user_id,
                    hash: hash.clone(),
                }],
            ))
        })
        .await?;
        Ok(MintedKey { key_id, raw })
    }

    pub async fn revoke_api_key(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        key_id: Uuid,
    ) -> CommandResult<()> {
        self.execute(user_id, None, User::evolve, meta, |user: &User| {
            Ok((user.decide(UserCommand::RevokeApiKey { key_id })?, vec![]))
        })
        .await?;
        Ok(())
    }
}
