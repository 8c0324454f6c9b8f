//! The inline projector for identity and project read models. It runs in
//! the append transaction (live) and in rebuilds (replay); it is pure with
//! respect to the log: every value it writes comes from the event itself,
//! including timestamps (`recorded_at`), so a replay reproduces the live
//! tables exactly.

use domain::DomainEvent;
use domain::global_role::GlobalRoleEvent;
use domain::project::ProjectEvent;
use domain::user::UserEvent;
use eventstore::{InlineProjector, RecordedEvent};
use serde_json::Value;
use sqlx::PgConnection;

use crate::stmt::{Arg, Stmt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct ReadModelProjector;

pub const NAME: &str = "read_models";

#[async_trait::async_trait]
impl InlineProjector for ReadModelProjector {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), BoxError> {
        for event in events {
            for stmt in statements(event)? {
                stmt.execute(conn).await?;
            }
        }
        Ok(())
    }
}

/// The row changes one event makes to the read models.
pub fn statements(event: &RecordedEvent) -> Result<Vec<Stmt>, BoxError> {
    let mut stmts = Vec::new();
    match event.stream_type.as_str() {
        UserEvent::STREAM_TYPE => user(
            &mut stmts,
            event,
            UserEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        GlobalRoleEvent::STREAM_TYPE => global_role(
            &mut stmts,
            event,
            GlobalRoleEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        ProjectEvent::STREAM_TYPE => project(
            &mut stmts,
            event,
            ProjectEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        // Streams owned by other projections.
        _ => {}
    }
    Ok(stmts.into_iter().map(Stmt::with_row_key).collect())
}

/// Applies a batch of events in one round trip (replays). The caller's
/// transaction must have `standard_conforming_strings = on`.
pub async fn apply_rendered(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), BoxError> {
    let mut stmts = Vec::with_capacity(events.len());
    for event in events {
        stmts.extend(statements(event)?);
    }
    let sql = crate::stmt::render_batch(stmts);
    if !sql.is_empty() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(conn)
            .await?;
    }
    Ok(())
}

fn user(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: UserEvent) {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        UserEvent::Created {
            username,
            full_name,
            email,
            role_id,
            must_change_password,
            ..
        } => {
            stmts.push(Stmt::new("INSERT INTO users (id, username, full_name, email, role_id, must_change_password,
                                    created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)")
            .arg(id)
            .arg(username)
            .arg(full_name)
            .arg(email)
            .arg(role_id)
            .arg(must_change_password)
            .arg(at));
        }
        UserEvent::ProfileUpdated { full_name, .. } => {
            stmts.push(
                Stmt::new("UPDATE users SET full_name = $2, updated_at = $3 WHERE id = $1")
                    .arg(id)
                    .arg(full_name)
                    .arg(at),
            );
        }
        UserEvent::RoleChanged { role_id, .. } => {
            stmts.push(
                Stmt::new("UPDATE users SET role_id = $2, updated_at = $3 WHERE id = $1")
                    .arg(id)
                    .arg(role_id)
                    .arg(at),
            );
        }
        UserEvent::PasswordChanged {
            must_change_password,
            ..
        } => {
            stmts.push(
                Stmt::new(
                    "UPDATE users SET must_change_password = $2, updated_at = $3 WHERE id = $1",
                )
                .arg(id)
                .arg(must_change_password)
                .arg(at),
            );
        }
        UserEvent::Deleted {} => {
            stmts.push(
                Stmt::new("UPDATE users SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                    .arg(id)
                    .arg(at),
            );
        }
        UserEvent::ApiKeyCreated {
            key_id,
            name,
            key_prefix,
            expires_at,
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO api_keys (id, user_id, name, key_prefix, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .arg(key_id)
                .arg(id)
                .arg(name)
                .arg(key_prefix)
                .arg(expires_at)
                .arg(at),
            );
        }
        UserEvent::ApiKeyRevoked { key_id } => {
            stmts.push(
                Stmt::new("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
                    .arg(key_id)
                    .arg(at),
            );
        }
    }
}

fn json_list(list: &[String]) -> Value {
    Value::Array(list.iter().cloned().map(Value::String).collect())
}

fn global_role(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: GlobalRoleEvent) {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        GlobalRoleEvent::Created { name, permissions } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO global_roles (id, name, permissions, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)",
                )
                .arg(id)
                .arg(name)
                .arg(json_list(&permissions))
                .arg(at),
            );
        }
        GlobalRoleEvent::Updated { name, permissions } => {
            stmts.push(
                Stmt::new(
                    "UPDATE global_roles SET name = COALESCE($2, name),
                        permissions = COALESCE($3, permissions), updated_at = $4
                 WHERE id = $1",
                )
                .arg(id)
                .arg(name)
                .arg(permissions.as_deref().map(json_list))
                .arg(at),
            );
        }
        GlobalRoleEvent::Deleted {} => {
            stmts.push(
                Stmt::new("UPDATE global_roles SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                    .arg(id)
                    .arg(at),
            );
        }
    }
}

fn project(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: ProjectEvent) {
    let at = e.recorded_at;
    let project_id = e.stream_id;
    match event {
        ProjectEvent::Created {
            name,
            description,
            task_id_prefix,
            is_public,
            settings,
            created_by,
        } => {
            stmts.push(Stmt::new("INSERT INTO projects (id, name, description, task_id_prefix, is_public, settings,
                                       created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)")
            .arg(project_id)
            .arg(name)
            .arg(description)
            .arg(task_id_prefix)
            .arg(is_public)
            .arg(settings)
            .arg(created_by)
            .arg(at));
        }
        ProjectEvent::Updated { changes } => {
            // One statement for all fields of the change; each column keeps
            // its value unless the change names it.
            let mut sets = Vec::new();
            let mut stmt_args: Vec<Arg> = vec![project_id.into(), at.into()];
            for change in changes {
                // Column names come from this fixed list, never from input.
                let set = match change.field.as_str() {
                    "name" | "description" | "task_id_prefix" => {
                        stmt_args.push(change.new.as_str().map(str::to_owned).into());
                        format!("{} = ${}", change.field, stmt_args.len())
                    }
                    "is_public" => {
                        stmt_args.push(Arg::Bool(change.new.as_bool()));
                        format!("is_public = ${}", stmt_args.len())
                    }
                    "settings" => {
                        stmt_args.push(change.new.into());
                        format!("settings = ${}", stmt_args.len())
                    }
                    _ => continue,
                };
                sets.push(set);
            }
            if !sets.is_empty() {
                let mut stmt = Stmt::new(format!(
                    "UPDATE projects SET {}, updated_at = $2 WHERE id = $1",
                    sets.join(", ")
                ));
                stmt.args = stmt_args;
                stmts.push(stmt);
            }
        }
        ProjectEvent::Deleted {} => {
            stmts.push(
                Stmt::new("UPDATE projects SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                    .arg(project_id)
                    .arg(at),
            );
        }
        ProjectEvent::RoleCreated {
            role_id,
            role_name,
            permissions,
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO project_roles (id, project_id, role_name, permissions, created_at,
                                            updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .arg(role_id)
                .arg(project_id)
                .arg(role_name)
                .arg(json_list(&permissions))
                .arg(at),
            );
        }
        ProjectEvent::RoleUpdated {
            role_id,
            role_name,
            permissions,
        } => {
            stmts.push(
                Stmt::new(
                    "UPDATE project_roles SET role_name = COALESCE($2, role_name),
                        permissions = COALESCE($3, permissions), updated_at = $4
                 WHERE id = $1",
                )
                .arg(role_id)
                .arg(role_name)
                .arg(permissions.as_deref().map(json_list))
                .arg(at),
            );
        }
        ProjectEvent::RoleDeleted { role_id, .. } => {
            stmts.push(Stmt::new("DELETE FROM project_roles WHERE id = $1").arg(role_id));
        }
        ProjectEvent::MemberAdded {
            member_id,
            user_id,
            project_role_id,
            member_type,
            ..
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO project_members (id, project_id, user_id, project_role_id,
                                              member_type, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .arg(member_id)
                .arg(project_id)
                .arg(user_id)
                .arg(project_role_id)
                .arg(member_type)
                .arg(at)
                // UNIQUE (project_id, user_id): a re-add must stay after a removal.
                .key(format!("member_of:{project_id}:{user_id}")),
            );
        }
        ProjectEvent::MemberRoleChanged {
            member_id,
            project_role_id,
            ..
        } => {
            stmts.push(
                Stmt::new("UPDATE project_members SET project_role_id = $2 WHERE id = $1")
                    .arg(member_id)
                    .arg(project_role_id),
            );
        }
        ProjectEvent::MemberRemoved { member_id, user_id } => {
            stmts.push(
                Stmt::new("DELETE FROM project_members WHERE id = $1")
                    .arg(member_id)
                    .key(format!("member_of:{project_id}:{user_id}")),
            );
        }
    }
}
