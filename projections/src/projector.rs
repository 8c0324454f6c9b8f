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
            apply_one(conn, event).await?;
        }
        Ok(())
    }
}

pub async fn apply_one(conn: &mut PgConnection, event: &RecordedEvent) -> Result<(), BoxError> {
    match event.stream_type.as_str() {
        UserEvent::STREAM_TYPE => {
            user(
                conn,
                event,
                UserEvent::from_stored(&event.event_type, &event.payload)?,
            )
            .await
        }
        GlobalRoleEvent::STREAM_TYPE => {
            global_role(
                conn,
                event,
                GlobalRoleEvent::from_stored(&event.event_type, &event.payload)?,
            )
            .await
        }
        ProjectEvent::STREAM_TYPE => {
            project(
                conn,
                event,
                ProjectEvent::from_stored(&event.event_type, &event.payload)?,
            )
            .await
        }
        // Streams owned by other projections.
        _ => Ok(()),
    }
}

async fn user(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: UserEvent,
) -> Result<(), BoxError> {
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
            sqlx::query(
                "INSERT INTO users (id, username, full_name, email, role_id, must_change_password,
                                    created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(id)
            .bind(username)
            .bind(full_name)
            .bind(email)
            .bind(role_id)
            .bind(must_change_password)
            .bind(at)
            .execute(conn)
            .await?;
        }
        UserEvent::ProfileUpdated { full_name, .. } => {
            sqlx::query("UPDATE users SET full_name = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(full_name)
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::RoleChanged { role_id, .. } => {
            sqlx::query("UPDATE users SET role_id = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(role_id)
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::PasswordChanged {
            must_change_password,
            ..
        } => {
            sqlx::query(
                "UPDATE users SET must_change_password = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(must_change_password)
            .bind(at)
            .execute(conn)
            .await?;
        }
        UserEvent::Deleted {} => {
            sqlx::query("UPDATE users SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(conn)
                .await?;
        }
        UserEvent::ApiKeyCreated {
            key_id,
            name,
            key_prefix,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO api_keys (id, user_id, name, key_prefix, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(key_id)
            .bind(id)
            .bind(name)
            .bind(key_prefix)
            .bind(expires_at)
            .bind(at)
            .execute(conn)
            .await?;
        }
        UserEvent::ApiKeyRevoked { key_id } => {
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
                .bind(key_id)
                .bind(at)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

fn json_list(list: &[String]) -> Value {
    Value::Array(list.iter().cloned().map(Value::String).collect())
}

async fn global_role(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: GlobalRoleEvent,
) -> Result<(), BoxError> {
    let at = e.recorded_at;
    let id = e.stream_id;
    match event {
        GlobalRoleEvent::Created { name, permissions } => {
            sqlx::query(
                "INSERT INTO global_roles (id, name, permissions, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(id)
            .bind(name)
            .bind(json_list(&permissions))
            .bind(at)
            .execute(conn)
            .await?;
        }
        GlobalRoleEvent::Updated { name, permissions } => {
            sqlx::query(
                "UPDATE global_roles SET name = COALESCE($2, name),
                        permissions = COALESCE($3, permissions), updated_at = $4
                 WHERE id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(permissions.as_deref().map(json_list))
            .bind(at)
            .execute(conn)
            .await?;
        }
        GlobalRoleEvent::Deleted {} => {
            sqlx::query("UPDATE global_roles SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

async fn project(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    event: ProjectEvent,
) -> Result<(), BoxError> {
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
            sqlx::query(
                "INSERT INTO projects (id, name, description, task_id_prefix, is_public, settings,
                                       created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(project_id)
            .bind(name)
            .bind(description)
            .bind(task_id_prefix)
            .bind(is_public)
            .bind(settings)
            .bind(created_by)
            .bind(at)
            .execute(conn)
            .await?;
        }
        ProjectEvent::Updated { changes } => {
            for change in changes {
                // Column names come from this fixed list, never from input.
                let column = match change.field.as_str() {
                    "name" => "name",
                    "description" => "description",
                    "task_id_prefix" => "task_id_prefix",
                    "is_public" => "is_public",
                    "settings" => "settings",
                    _ => continue,
                };
                let sql = format!(
                    "UPDATE projects SET {column} = (jsonb_populate_record(NULL::projects,
                        jsonb_build_object('{column}', $2::jsonb))).{column}, updated_at = $3
                     WHERE id = $1"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(project_id)
                    .bind(change.new)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        ProjectEvent::Deleted {} => {
            sqlx::query("UPDATE projects SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                .bind(project_id)
                .bind(at)
                .execute(conn)
                .await?;
        }
        ProjectEvent::RoleCreated {
            role_id,
            role_name,
            permissions,
        } => {
            sqlx::query(
                "INSERT INTO project_roles (id, project_id, role_name, permissions, created_at,
                                            updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(role_id)
            .bind(project_id)
            .bind(role_name)
            .bind(json_list(&permissions))
            .bind(at)
            .execute(conn)
            .await?;
        }
        ProjectEvent::RoleUpdated {
            role_id,
            role_name,
            permissions,
        } => {
            sqlx::query(
                "UPDATE project_roles SET role_name = COALESCE($2, role_name),
                        permissions = COALESCE($3, permissions), updated_at = $4
                 WHERE id = $1",
            )
            .bind(role_id)
            .bind(role_name)
            .bind(permissions.as_deref().map(json_list))
            .bind(at)
            .execute(conn)
            .await?;
        }
        ProjectEvent::RoleDeleted { role_id, .. } => {
            sqlx::query("DELETE FROM project_roles WHERE id = $1")
                .bind(role_id)
                .execute(conn)
                .await?;
        }
        ProjectEvent::MemberAdded {
            member_id,
            user_id,
            project_role_id,
            member_type,
            ..
        } => {
            sqlx::query(
                "INSERT INTO project_members (id, project_id, user_id, project_role_id,
                                              member_type, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(member_id)
            .bind(project_id)
            .bind(user_id)
            .bind(project_role_id)
            .bind(member_type)
            .bind(at)
            .execute(conn)
            .await?;
        }
        ProjectEvent::MemberRoleChanged {
            member_id,
            project_role_id,
            ..
        } => {
            sqlx::query("UPDATE project_members SET project_role_id = $2 WHERE id = $1")
                .bind(member_id)
                .bind(project_role_id)
                .execute(conn)
                .await?;
        }
        ProjectEvent::MemberRemoved { member_id, .. } => {
            sqlx::query("DELETE FROM project_members WHERE id = $1")
                .bind(member_id)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}
