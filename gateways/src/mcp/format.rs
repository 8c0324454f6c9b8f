//! The human-readable texts tools return (the same layout as Paca's MCP
//! server, so prompts and skills written for it read ours the same way).

use serde_json::Value;

use super::markdown::blocks_to_markdown;

/// A field as display text: strings as they are, numbers and booleans
/// printed, absent/null/empty as `fallback`.
pub fn s(v: &Value, key: &str, fallback: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) if !x.is_empty() => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => fallback.to_owned(),
    }
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn list(items: &[Value], f: fn(&Value) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join("\n\n---\n\n")
}

pub fn project(p: &Value) -> String {
    format!(
        "Project: {}\nID: {}\nDescription: {}\nTask ID Prefix: {}\nCreated by: {}\nCreated: {}",
        s(p, "name", ""),
        s(p, "id", ""),
        s(p, "description", "No description"),
        s(p, "task_id_prefix", "None"),
        s(p, "created_by", "Unknown"),
        s(p, "created_at", ""),
    )
}

fn description(task: &Value) -> String {
    match task.get("description") {
        Some(d) if !d.is_null() => {
            let md = blocks_to_markdown(d);
            if md.is_empty() {
                "No description".into()
            } else {
                md
            }
        }
        _ => "No description".into(),
    }
}

pub fn task(t: &Value) -> String {
    let assignees = str_list(t, "assignee_ids");
    let tags = str_list(t, "tags");
    format!(
        "Task #{}: {}\nID: {}\nStatus: {}\nType: {}\nSprint: {}\nAssignees: {}\nParent Task: {}\nImportance: {}\nStory Points: {}\nTags: {}\nStart Date: {}\nDue Date: {}\nCreated: {}\nUpdated: {}\n\nDescription:\n{}",
        s(t, "task_number", ""),
        s(t, "title", ""),
        s(t, "id", ""),
        s(t, "status_id", "None"),
        s(t, "task_type_id", "None"),
        s(t, "sprint_id", "None"),
        if assignees.is_empty() {
            "Unassigned".into()
        } else {
            assignees.join(", ")
        },
        s(t, "parent_task_id", "None"),
        s(t, "importance", "0"),
        s(t, "story_points", "None"),
        if tags.is_empty() {
            "None".into()
        } else {
            tags.join(", ")
        },
        s(t, "start_date", "None"),
        s(t, "due_date", "None"),
        s(t, "created_at", ""),
        s(t, "updated_at", ""),
        description(t),
    )
}

/// Everything the web app's task detail shows, resolved to names.
pub struct TaskDetail<'a> {
    pub task: &'a Value,
    pub project: Option<&'a Value>,
    pub statuses: &'a [Value],
    pub types: &'a [Value],
    pub sprints: &'a [Value],
    pub members: &'a [Value],
    pub parent: Option<&'a Value>,
    pub subtasks: &'a [Value],
    pub attachments: &'a [Value],
    pub activities: &'a [Value],
    pub custom_fields: &'a [Value],
}

fn by_id<'a>(items: &'a [Value], id: &str) -> Option<&'a Value> {
    if id.is_empty() {
        return None;
    }
    items
        .iter()
        .find(|i| i.get("id").and_then(Value::as_str) == Some(id))
}

fn member_label(m: &Value) -> String {
    let username = s(m, "username", "");
    let name = s(m, "full_name", &username);
    format!("{name} (@{username})")
}

fn file_size(bytes: f64) -> String {
    if bytes <= 0.0 {
        return "0 Bytes".into();
    }
    let units = ["Bytes", "KB", "MB", "GB"];
    let i = ((bytes.ln() / 1024f64.ln()).floor() as usize).min(units.len() - 1);
    let v = bytes / 1024f64.powi(i as i32);
    format!("{} {}", (v * 100.0).round() / 100.0, units[i])
}

pub fn task_detail(d: &TaskDetail) -> String {
    let t = d.task;
    let prefix = d
        .project
        .map(|p| s(p, "task_id_prefix", ""))
        .unwrap_or_default();
    let mut out = vec![format!(
        "# Task {}{}: {}",
        if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}-")
        },
        s(t, "task_number", ""),
        s(t, "title", "")
    )];
    out.push(format!("**ID:** {}", s(t, "id", "")));
    let status_id = s(t, "status_id", "");
    if !status_id.is_empty() {
        out.push(match by_id(d.statuses, &status_id) {
            Some(st) => {
                let color = s(st, "color", "");
                format!(
                    "**Status:** {}{}",
                    s(st, "name", ""),
                    if color.is_empty() {
                        String::new()
                    } else {
                        format!(" (Color: {color})")
                    }
                )
            }
            None => format!("**Status:** {status_id}"),
        });
    }
    let type_id = s(t, "task_type_id", "");
    if !type_id.is_empty() {
        out.push(match by_id(d.types, &type_id) {
            Some(ty) => {
                let icon = s(ty, "icon", "");
                let color = s(ty, "color", "");
                format!(
                    "**Type:** {}{}{}",
                    s(ty, "name", ""),
                    if icon.is_empty() {
                        String::new()
                    } else {
                        format!(" (Icon: {icon})")
                    },
                    if color.is_empty() {
                        String::new()
                    } else {
                        format!(" (Color: {color})")
                    }
                )
            }
            None => format!("**Type:** {type_id}"),
        });
    }
    let sprint_id = s(t, "sprint_id", "");
    if !sprint_id.is_empty() {
        out.push(format!(
            "**Sprint:** {}",
            by_id(d.sprints, &sprint_id)
                .map(|sp| s(sp, "name", ""))
                .unwrap_or(sprint_id)
        ));
    }
    let assignee_ids = str_list(t, "assignee_ids");
    if !assignee_ids.is_empty() {
        let labels: Vec<String> = assignee_ids
            .iter()
            .map(|id| {
                by_id(d.members, id)
                    .map(member_label)
                    .unwrap_or_else(|| id.clone())
            })
            .collect();
        out.push(format!("**Assignees:** {}", labels.join(", ")));
    }
    let reporter = s(t, "reporter_id", "");
    if !reporter.is_empty() {
        out.push(format!(
            "**Reporter:** {}",
            by_id(d.members, &reporter)
                .map(member_label)
                .unwrap_or(reporter)
        ));
    }
    let parent_id = s(t, "parent_task_id", "");
    if !parent_id.is_empty() {
        out.push(format!(
            "**Parent Task:** {}",
            d.parent
                .map(|p| format!("{} (#{})", s(p, "title", ""), s(p, "task_number", "")))
                .unwrap_or(parent_id)
        ));
    }
    out.push(format!("**Importance:** {}", s(t, "importance", "0")));
    out.push(format!(
        "**Story Points:** {}",
        s(t, "story_points", "None")
    ));
    let tags = str_list(t, "tags");
    out.push(format!(
        "**Tags:** {}",
        if tags.is_empty() {
            "None".into()
        } else {
            tags.join(", ")
        }
    ));
    for (key, label) in [("start_date", "Start Date"), ("due_date", "Due Date")] {
        let v = s(t, key, "");
        if !v.is_empty() {
            out.push(format!("**{label}:** {v}"));
        }
    }
    out.push(format!("**Created:** {}", s(t, "created_at", "")));
    out.push(format!("**Updated:** {}", s(t, "updated_at", "")));
    out.push(String::new());
    if !d.custom_fields.is_empty() {
        out.push("## Custom Fields".into());
        for f in d.custom_fields {
            let key = s(f, "field_key", "");
            let value = t.get("custom_fields").and_then(|c| c.get(&key));
            let shown = match value {
                None | Some(Value::Null) => "None".to_owned(),
                Some(Value::String(x)) => x.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(other) => other.to_string(),
            };
            out.push(format!(
                "- **{}** ({}): {}",
                s(f, "display_name", ""),
                s(f, "field_type", ""),
                shown
            ));
        }
        out.push(String::new());
    }
    out.push("## Description".into());
    out.push(description(t));
    if !d.subtasks.is_empty() {
        out.push(String::new());
        out.push("## Subtasks".into());
        for (i, st) in d.subtasks.iter().enumerate() {
            let ids = str_list(st, "assignee_ids");
            out.push(format!(
                "{}. **{}** (#{}) - Status ID: {}, Type ID: {}, Assignee IDs: {}",
                i + 1,
                s(st, "title", ""),
                s(st, "task_number", ""),
                s(st, "status_id", "None"),
                s(st, "task_type_id", "None"),
                if ids.is_empty() {
                    "Unassigned".into()
                } else {
                    ids.join(", ")
                }
            ));
        }
    }
    if !d.attachments.is_empty() {
        out.push(String::new());
        out.push("## Attachments".into());
        for a in d.attachments {
            let file = a.get("file").cloned().unwrap_or(Value::Null);
            out.push(format!(
                "- **{}** ({}) - Uploaded: {}",
                s(&file, "file_name", "Unknown"),
                file_size(file.get("file_size").and_then(Value::as_f64).unwrap_or(0.0)),
                s(a, "created_at", "")
            ));
        }
    }
    if !d.activities.is_empty() {
        out.push(String::new());
        out.push("## Activities".into());
        for a in d.activities {
            out.push(format!(
                "- **{}** by {} (@{}) - {}",
                s(a, "activity_type", ""),
                s(a, "actor_name", ""),
                s(a, "actor_username", ""),
                s(a, "created_at", "")
            ));
            if s(a, "activity_type", "") == "comment"
                && let Some(content) = a.get("content")
            {
                let md = blocks_to_markdown(content);
                if !md.trim().is_empty() {
                    let lines: Vec<String> = md
                        .split('\n')
                        .enumerate()
                        .map(|(i, l)| {
                            if i == 0 {
                                format!("  - {l}")
                            } else {
                                format!("    {l}")
                            }
                        })
                        .collect();
                    out.push(lines.join("\n"));
                }
            }
        }
    }
    out.join("\n")
}

pub fn sprint(sp: &Value) -> String {
    format!(
        "Sprint: {}\nID: {}\nProject: {}\nStart Date: {}\nEnd Date: {}\nGoal: {}\nStatus: {}\nCreated: {}\nUpdated: {}",
        s(sp, "name", ""),
        s(sp, "id", ""),
        s(sp, "project_id", ""),
        s(sp, "start_date", "None"),
        s(sp, "end_date", "None"),
        s(sp, "goal", "None"),
        s(sp, "status", ""),
        s(sp, "created_at", ""),
        s(sp, "updated_at", ""),
    )
}

pub fn member(m: &Value) -> String {
    let role = s(m, "role_name", "");
    let roles = m
        .get("roles")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .map(|x| format!("{} ({})", s(x, "name", ""), s(x, "id", "")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|r| !r.is_empty());
    let role_text = roles.unwrap_or_else(|| {
        if role.is_empty() {
            "None".into()
        } else {
            format!("{role} ({})", s(m, "project_role_id", ""))
        }
    });
    format!(
        "Member: {} ({})\nMember ID: {}\nUser ID: {}\nType: {}\nRole: {}",
        s(m, "username", ""),
        s(m, "full_name", ""),
        s(m, "id", ""),
        s(m, "user_id", "None"),
        s(m, "member_type", "human"),
        role_text,
    )
}

fn permissions_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

pub fn role(r: &Value) -> String {
    let name = {
        let n = s(r, "role_name", "");
        if n.is_empty() { s(r, "name", "") } else { n }
    };
    let perms = permissions_text(r.get("permissions"));
    format!(
        "Role: {}\nID: {}\nDescription: {}\nPermissions: {}\nCreated: {}",
        name,
        s(r, "id", ""),
        s(r, "description", "None"),
        if perms.is_empty() {
            "None".into()
        } else {
            perms
        },
        s(r, "created_at", ""),
    )
}

pub fn task_type(t: &Value) -> String {
    format!(
        "Task Type: {}\nID: {}\nIcon: {}\nColor: {}\nDescription: {}\nDefault: {}\nSystem: {}\nCreated: {}",
        s(t, "name", ""),
        s(t, "id", ""),
        s(t, "icon", "None"),
        s(t, "color", "None"),
        s(t, "description", "None"),
        s(t, "is_default", "false"),
        s(t, "is_system", "false"),
        s(t, "created_at", ""),
    )
}

pub fn task_status(t: &Value) -> String {
    format!(
        "Task Status: {}\nID: {}\nColor: {}\nCategory: {}\nPosition: {}\nDefault: {}\nCreated: {}",
        s(t, "name", ""),
        s(t, "id", ""),
        s(t, "color", "None"),
        s(t, "category", ""),
        s(t, "position", ""),
        s(t, "is_default", "false"),
        s(t, "created_at", ""),
    )
}

pub fn view(v: &Value, context: &str) -> String {
    let mut lines = vec![
        format!("View: {}", s(v, "name", "")),
        format!("ID: {}", s(v, "id", "")),
        format!("Type: {}", s(v, "view_type", "")),
        format!("Context: {}", s(v, "context", context)),
        format!("Sprint ID: {}", s(v, "sprint_id", "None")),
    ];
    if let Some(cfg) = v.get("config")
        && let Some(pid) = cfg.get("plugin_manifest_id").and_then(Value::as_str)
    {
        lines.push(format!(
            "Plugin: {pid} (component: {})",
            s(cfg, "plugin_component", "")
        ));
    }
    lines.push(format!("Position: {}", s(v, "position", "")));
    lines.push(format!("Created: {}", s(v, "created_at", "")));
    lines.join("\n")
}

pub fn custom_field(f: &Value) -> String {
    let options: Vec<String> = f
        .get("options")
        .and_then(Value::as_array)
        .map(|o| {
            o.iter()
                .map(|x| {
                    x.get("value")
                        .and_then(Value::as_str)
                        .or_else(|| x.as_str())
                        .unwrap_or("")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "Custom Field: {}\nID: {}\nKey: {}\nType: {}\nOptions: {}\nRequired: {}\nCreated: {}",
        s(f, "display_name", ""),
        s(f, "id", ""),
        s(f, "field_key", ""),
        s(f, "field_type", ""),
        if options.is_empty() {
            "None".into()
        } else {
            options.join(", ")
        },
        s(f, "is_required", "false"),
        s(f, "created_at", ""),
    )
}

pub fn attachment(a: &Value) -> String {
    let file = a.get("file").cloned().unwrap_or(Value::Null);
    format!(
        "Attachment: {}\nID: {}\nSize: {} bytes\nType: {}\nUploaded by: {}\nUploaded at: {}",
        s(&file, "file_name", "Unknown"),
        s(a, "id", ""),
        s(&file, "file_size", "0"),
        s(&file, "content_type", "Unknown"),
        s(a, "created_by", "Unknown"),
        s(a, "created_at", ""),
    )
}

pub fn activity(a: &Value) -> String {
    let content = if s(a, "activity_type", "") == "comment" {
        a.get("content").map(blocks_to_markdown).unwrap_or_default()
    } else {
        serde_json::to_string_pretty(a.get("content").unwrap_or(&Value::Null)).unwrap_or_default()
    };
    format!(
        "Activity: {}\nID: {}\nUser: {} ({})\nDescription: {}\nCreated: {}",
        s(a, "activity_type", ""),
        s(a, "id", ""),
        s(a, "actor_name", ""),
        s(a, "actor_id", ""),
        content,
        s(a, "created_at", ""),
    )
}

pub fn comment(c: &Value) -> String {
    format!(
        "Comment:\nID: {}\nUser: {} ({})\nContent: {}\nCreated: {}\nUpdated: {}",
        s(c, "id", ""),
        s(c, "actor_name", ""),
        s(c, "actor_id", ""),
        c.get("content").map(blocks_to_markdown).unwrap_or_default(),
        s(c, "created_at", ""),
        s(c, "updated_at", ""),
    )
}
