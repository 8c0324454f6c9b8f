//! Global roles, including the seeded ones and the seeded administrator.

use domain::global_role::{self, GlobalRole, GlobalRoleCommand, GlobalRoleEvent};
use domain::{DomainError, ErrorCode};
use eventstore::Metadata;
use uuid::Uuid;

use crate::users::{NewUser, USERNAME_SCOPE};
use crate::{CommandError, CommandResult, Commands, WriteSide};

pub const ROLE_SCOPE: &str = "global_role";

/// Fixed ids for the seeded roles, so that two nodes starting at once
/// create them exactly once (the second append hits `NoStream`).
pub fn seeded_role_id(name: &str) -> Uuid {
    match name {
        global_role::SUPER_ADMIN => Uuid::from_u128(0x7061_6361_0000_0000_0000_0000_0000_0001),
        global_role::ADMIN => Uuid::from_u128(0x7061_6361_0000_0000_0000_0000_0000_0002),
        _ => Uuid::from_u128(0x7061_6361_0000_0000_0000_0000_0000_0003),
    }
}

fn name_taken(name: &str) -> DomainError {
    DomainError::new(
        ErrorCode::ROLE_NAME_TAKEN,
        format!("a global role named {name:?} already exists"),
    )
}

impl Commands {
    /// Creates the seeded global roles if absent. Safe to run on every
    /// start and from several nodes at once.
    pub async fn seed_global_roles(&self) -> CommandResult<()> {
        let meta = Metadata::system("system");
        for (name, permissions) in global_role::seeded() {
            let role_id = seeded_role_id(name);
            let result = self
                .execute(
                    role_id,
                    None,
                    GlobalRole::evolve,
                    &meta,
                    |role: &GlobalRole| {
                        if role.exists {
                            return Ok((vec![], vec![]));
                        }
                        let events = role.decide(GlobalRoleCommand::Create {
                            name: name.into(),
                            permissions: permissions.clone(),
                        })?;
                        Ok((
                            events,
                            vec![WriteSide::Reserve {
                                scope: ROLE_SCOPE,
                                key: name.to_lowercase(),
                                owner: role_id,
                                taken: name_taken(name),
                            }],
                        ))
                    },
                )
                .await;
            match result {
                Ok(_) => {}
                // Another node seeded it between our load and append.
                Err(CommandError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Creates the administrator from `ADMIN_USERNAME`/`ADMIN_PASSWORD` if
    /// no user holds that username; an existing account is left unchanged.
    /// Returns whether it was created.
    pub async fn seed_admin(&self, username: &str, password: &str) -> CommandResult<bool> {
        let taken: Option<Uuid> =
            sqlx::query_scalar("SELECT owner_id FROM reservations WHERE scope = $1 AND key = $2")
                .bind(USERNAME_SCOPE)
                .bind(username.to_lowercase())
                .fetch_optional(self.store.pool())
                .await?;
        if taken.is_some() {
            return Ok(false);
        }
        let result = self
            .create_user(
                &Metadata::system("system"),
                NewUser {
                    username: username.into(),
                    password: password.into(),
                    full_name: "Admin".into(),
                    email: None,
                    role_id: seeded_role_id(global_role::SUPER_ADMIN),
                    must_change_password: false,
                },
            )
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(CommandError::Domain(e)) if e.code == ErrorCode::USER_USERNAME_TAKEN => Ok(false),
            Err(other) => Err(other),
        }
    }

    pub async fn create_global_role(
        &self,
        meta: &Metadata,
        name: String,
        permissions: Vec<String>,
    ) -> CommandResult<Uuid> {
        let role_id = Uuid::now_v7();
        self.execute(
            role_id,
            None,
            GlobalRole::evolve,
            meta,
            |role: &GlobalRole| {
                let events = role.decide(GlobalRoleCommand::Create {
                    name: name.clone(),
                    permissions: permissions.clone(),
                })?;
                let key = match &events[..] {
                    [GlobalRoleEvent::Created { name, .. }] => name.to_lowercase(),
                    _ => name.to_lowercase(),
                };
                Ok((
                    events,
                    vec![WriteSide::Reserve {
                        scope: ROLE_SCOPE,
                        key,
                        owner: role_id,
                        taken: name_taken(&name),
                    }],
                ))
            },
        )
        .await?;
        Ok(role_id)
    }

    pub async fn update_global_role(
        &self,
        meta: &Metadata,
        role_id: Uuid,
        name: Option<String>,
        permissions: Option<Vec<String>>,
    ) -> CommandResult<()> {
        self.execute(
            role_id,
            None,
            GlobalRole::evolve,
            meta,
            |role: &GlobalRole| {
                let events = role.decide(GlobalRoleCommand::Update {
                    name: name.clone(),
                    permissions: permissions.clone(),
                })?;
                let mut effects = vec![];
                if let Some(GlobalRoleEvent::Updated {
                    name: Some(new_name),
                    ..
                }) = events.first()
                {
                    effects.push(WriteSide::Release {
                        scope: ROLE_SCOPE,
                        key: role.name.to_lowercase(),
                        owner: role_id,
                    });
                    effects.push(WriteSide::Reserve {
                        scope: ROLE_SCOPE,
                        key: new_name.to_lowercase(),
                        owner: role_id,
                        taken: name_taken(new_name),
                    });
                }
                Ok((events, effects))
            },
        )
        .await?;
        Ok(())
    }

    /// Deletes a global role nobody holds. The holders are counted inside
    /// the transaction that holds the role's stream row `FOR UPDATE`;
    /// assigning a role shares that row lock and checks the role is live,
    /// so a role can never be deleted while a concurrent assignment makes
    /// someone its holder.
    pub async fn delete_global_role(&self, meta: &Metadata, role_id: Uuid) -> CommandResult<()> {
        transact!(self, tx => async {
            let mut decide = |role: &GlobalRole| {
                Ok((
                    role.decide(GlobalRoleCommand::Delete)?,
                    vec![
                        WriteSide::RequireNoRoleHolders { role_id },
                        WriteSide::Release {
                            scope: ROLE_SCOPE,
                            key: role.name.to_lowercase(),
                            owner: role_id,
                        },
                    ],
                ))
            };
            self.execute_in(tx, role_id, None, GlobalRole::evolve, meta, &mut decide, None)
                .await
        }
        .await)?;
        Ok(())
    }
}
