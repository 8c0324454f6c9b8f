//! The inline projector for identity and project read models. It runs in
//! the append transaction (live) and in rebuilds (replay); it is pure with
//! respect to the log: every value it writes comes from the event itself,
//! including timestamps (`recorded_at`), so a replay reproduces the live
//! tables exactly.

use domain::DomainEvent;
use domain::agent::AgentEvent;
use domain::conversation::{ChatSessionEvent, ConversationEvent};
use domain::doc::{DocEvent, DocFolderEvent};
use domain::global_role::GlobalRoleEvent;
use domain::notification::InboxEvent;
use domain::plugin::{PluginActivityEvent, PluginEvent, PluginWakeupEvent};
use domain::project::ProjectEvent;
use domain::sprint::SprintEvent;
use domain::task::TaskEvent;
use domain::user::UserEvent;
use domain::view::ViewEvent;
use eventstore::{InlineProjector, RecordedEvent};
use serde_json::Value;
use sqlx::PgConnection;

use crate::columns::changes_update;
use crate::stmt::Stmt;

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

    fn statements(&self, events: &[RecordedEvent]) -> Option<Result<Vec<Stmt>, BoxError>> {
        let mut all = Vec::new();
        for event in events {
            match statements(event) {
                Ok(stmts) => all.extend(stmts),
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok(all))
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
        TaskEvent::STREAM_TYPE => crate::projector_tasks::statements(
            &mut stmts,
            event,
            TaskEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        SprintEvent::STREAM_TYPE => crate::projector_sprints::sprint(
            &mut stmts,
            event,
            SprintEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        ViewEvent::STREAM_TYPE => crate::projector_sprints::view(
            &mut stmts,
            event,
            ViewEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        AgentEvent::STREAM_TYPE => crate::projector_agents::agent(
            &mut stmts,
            event,
            AgentEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        ConversationEvent::STREAM_TYPE => crate::projector_agents::conversation(
            &mut stmts,
            event,
            ConversationEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        ChatSessionEvent::STREAM_TYPE => crate::projector_agents::chat_session(
            &mut stmts,
            event,
            ChatSessionEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        PluginEvent::STREAM_TYPE => crate::projector_plugins::plugin(
            &mut stmts,
            event,
            PluginEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        DocEvent::STREAM_TYPE => crate::projector_docs::doc(
            &mut stmts,
            event,
            DocEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        DocFolderEvent::STREAM_TYPE => crate::projector_docs::folder(
            &mut stmts,
            event,
            DocFolderEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        // Plugins' own `event_emit` topics share this stream; only the
        // activity records are the feed's.
        PluginActivityEvent::STREAM_TYPE => {
            match PluginActivityEvent::from_stored(&event.event_type, &event.payload) {
                Ok(activity @ PluginActivityEvent::ActivityRecorded { .. }) => {
                    crate::projector_tasks::plugin_activity(&mut stmts, event, activity);
                }
                Ok(summary @ PluginActivityEvent::SummarySet { .. }) => {
                    crate::projector_plugins::summary(&mut stmts, event, summary);
                }
                Err(_) => {}
            }
        }
        PluginWakeupEvent::STREAM_TYPE => crate::projector_plugins::wakeup(
            &mut stmts,
            event,
            PluginWakeupEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        InboxEvent::STREAM_TYPE => inbox(
            &mut stmts,
            event,
            InboxEvent::from_stored(&event.event_type, &event.payload)?,
        ),
        // Streams owned by other projections.
        _ => {}
    }
    Ok(stmts.into_iter().map(Stmt::with_row_key).collect())
}

/// Applies a batch of events in one round trip (replays).
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

/// A user's notifications.
fn inbox(stmts: &mut Vec<Stmt>, e: &RecordedEvent, event: InboxEvent) {
    // `COALESCE`: the first read is the one that counts.
    let read = |id: uuid::Uuid, at| {
        Stmt::new("UPDATE notifications SET read_at = COALESCE(read_at, $2) WHERE id = $1")
            .arg(id)
            .arg(at)
    };
    match event {
        InboxEvent::Created(n) => stmts.push(
            Stmt::new(
                "INSERT INTO notifications (id, recipient_user_id, type, project_id, task_id,
                     doc_id, comment_id, actor_user_id, actor_agent_id, actor_member_id,
                     source_event_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .arg(n.notification_id)
            .arg(n.recipient_user_id)
            .arg(n.kind)
            .arg(n.project_id)
            .arg(n.task_id)
            .arg(n.doc_id)
            .arg(n.comment_id)
            .arg(n.actor_user_id)
            .arg(n.actor_agent_id)
            .arg(n.actor_member_id)
            .arg(n.source_event_id)
            .arg(n.created_at),
        ),
        InboxEvent::Read {
            notification_id,
            read_at,
            ..
        } => stmts.push(read(notification_id, read_at.unwrap_or(e.recorded_at))),
        InboxEvent::AllRead {
            notification_ids, ..
        } => {
            for id in notification_ids {
                stmts.push(read(id, e.recorded_at));
            }
        }
    }
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
        UserEvent::ProfileUpdated {
            full_name, email, ..
        } => {
            stmts.push(
                Stmt::new(
                    "UPDATE users SET full_name = $2, email = COALESCE($3, email), updated_at = $4
                      WHERE id = $1",
                )
                .arg(id)
                .arg(full_name)
                .arg(email)
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
        // Sessions are not a read model: the directory (commands) keeps
        // revocations in memory, the log keeps them for audit.
        UserEvent::SessionsRevoked { .. } => {}
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
            stmts.extend(changes_update("projects", project_id, at, &changes))
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
        ProjectEvent::AgentMemberAdded {
            member_id,
            agent_id,
            project_role_id,
            member_type,
            ..
        } => {
            stmts.push(
                Stmt::new(
                    "INSERT INTO project_members (id, project_id, user_id, project_role_id,
                                              member_type, created_at, agent_id)
                 VALUES ($1, $2, NULL, $3, $4, $5, $6)",
                )
                .arg(member_id)
                .arg(project_id)
                .arg(project_role_id)
                .arg(member_type)
                .arg(at)
                .arg(agent_id),
            );
        }
        ProjectEvent::AgentMemberRemoved { member_id, .. } => {
            stmts.push(Stmt::new("DELETE FROM project_members WHERE id = $1").arg(member_id));
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
        ProjectEvent::TaskTypeCreated {
            type_id,
            task_type: t,
            is_default,
        } => stmts.push(
            Stmt::new(
                "INSERT INTO task_types (id, project_id, name, icon, color, description, is_default,
                                         is_system, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .arg(type_id)
            .arg(project_id)
            .arg(t.name)
            .arg(t.icon)
            .arg(t.color)
            .arg(t.description)
            .arg(is_default)
            .arg(t.is_system)
            .arg(at),
        ),
        ProjectEvent::TaskTypeUpdated { type_id, changes } => {
            stmts.extend(changes_update("task_types", type_id, at, &changes))
        }
        ProjectEvent::TaskTypeDeleted { type_id, .. } => {
            stmts.push(Stmt::new("DELETE FROM task_types WHERE id = $1").arg(type_id))
        }
        ProjectEvent::DefaultTaskTypeSet { type_id, old_type_id } => {
            for (id, flag) in [(old_type_id, false), (Some(type_id), true)] {
                if let Some(id) = id {
                    stmts.push(
                        Stmt::new("UPDATE task_types SET is_default = $2, updated_at = $3 WHERE id = $1")
                            .arg(id)
                            .arg(flag)
                            .arg(at),
                    );
                }
            }
        }
        ProjectEvent::TaskStatusCreated {
            status_id,
            status,
            is_default,
        } => stmts.push(
            Stmt::new(
                "INSERT INTO task_statuses (id, project_id, name, color, position, category,
                                            is_default, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .arg(status_id)
            .arg(project_id)
            .arg(status.name)
            .arg(status.color)
            .arg(status.position)
            .arg(status.category)
            .arg(is_default)
            .arg(at),
        ),
        ProjectEvent::TaskStatusUpdated { status_id, changes } => {
            stmts.extend(changes_update("task_statuses", status_id, at, &changes))
        }
        ProjectEvent::TaskStatusDeleted { status_id, .. } => {
            stmts.push(Stmt::new("DELETE FROM task_statuses WHERE id = $1").arg(status_id))
        }
        ProjectEvent::DefaultTaskStatusSet {
            status_id,
            old_status_id,
        } => {
            for (id, flag) in [(old_status_id, false), (Some(status_id), true)] {
                if let Some(id) = id {
                    stmts.push(
                        Stmt::new("UPDATE task_statuses SET is_default = $2, updated_at = $3 WHERE id = $1")
                            .arg(id)
                            .arg(flag)
                            .arg(at),
                    );
                }
            }
        }
        ProjectEvent::TaskStatusesReordered { status_ids } => {
            for (i, id) in status_ids.into_iter().enumerate() {
                stmts.push(
                    Stmt::new("UPDATE task_statuses SET position = $2, updated_at = $3 WHERE id = $1")
                        .arg(id)
                        .arg(i as i64)
                        .arg(at),
                );
            }
        }
        ProjectEvent::CustomFieldCreated { field_id, field } => stmts.push(
            Stmt::new(
                "INSERT INTO custom_fields (id, project_id, field_key, display_name, field_type,
                                            options, is_required, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .arg(field_id)
            .arg(project_id)
            .arg(field.field_key)
            .arg(field.display_name)
            .arg(field.field_type)
            .arg(serde_json::to_value(&field.options).unwrap_or_default())
            .arg(field.is_required)
            .arg(at),
        ),
        ProjectEvent::CustomFieldUpdated { field_id, changes } => {
            stmts.extend(changes_update("custom_fields", field_id, at, &changes))
        }
        ProjectEvent::CustomFieldDeleted { field_id, .. } => {
            stmts.push(Stmt::new("DELETE FROM custom_fields WHERE id = $1").arg(field_id))
        }
    }
}
