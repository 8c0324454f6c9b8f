//! Operating modes and the permission filter of seed page 18.
//!
//! | mode | trigger | permissions read | core tools listed |
//! |---|---|---|---|
//! | personal (legacy) | key only (default) | none | all 62 |
//! | user global | key only + `PACA_MCP_MODE=global` | `GET /users/me/global-permissions` | global tools the global role grants; project-scoped hidden |
//! | user single-project | `PACA_PROJECT_ID` | global + `GET /projects/{id}/members/me/permissions` | those granted in the project |
//! | agent single-project | `PACA_AGENT_ID` + `PACA_PROJECT_ID` | `GET /projects/{id}/members/me/permissions` with `X-Agent-ID` | those granted; `projectId` locked |
//!
//! Page 18 gives "personal" and "user global" the same trigger, and page 10
//! (the configuration the seeds' clients use) says a key-only server lists
//! every tool; so key-only is personal and user-global filtering is opted
//! into. A failed permission read keeps every core tool listed ("for
//! backward compatibility", page 10); the REST API still authorizes every
//! call.

use serde_json::Value;

use super::client::Api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Personal,
    UserGlobal,
    UserProject,
    AgentProject,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Personal => "personal",
            Mode::UserGlobal => "user-global",
            Mode::UserProject => "user-single-project",
            Mode::AgentProject => "agent-single-project",
        }
    }
}

/// Permissions read at startup; `None` means unknown (fetch failed or not
/// needed), which lists every core tool.
#[derive(Debug, Clone, Default)]
pub struct Granted {
    pub global: Option<Vec<String>>,
    pub project: Option<Vec<String>>,
}

/// Reads a permission payload: `{"permissions": {"k": true}}`,
/// `{"permissions": ["k"]}`, `{"actions": [...]}`, or the bare map/array.
pub fn parse_permissions(value: &Value) -> Option<Vec<String>> {
    let inner = value
        .get("permissions")
        .or_else(|| value.get("actions"))
        .unwrap_or(value);
    match inner {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Value::Object(map) => Some(
            map.iter()
                .filter(|(_, v)| v.as_bool() == Some(true) || v.as_str() == Some("true"))
                .map(|(k, _)| k.clone())
                .collect(),
        ),
        _ => None,
    }
}

/// Fetches what the mode needs. Failures are logged and leave the side
/// unknown.
pub async fn fetch(api: &Api, mode: Mode, project_id: Option<&str>) -> Granted {
    let mut granted = Granted::default();
    if matches!(mode, Mode::UserGlobal | Mode::UserProject) {
        match api.get("/users/me/global-permissions").await {
            Ok(v) => granted.global = parse_permissions(&v),
            Err(e) => tracing::warn!(target: "permissions", "global permissions unavailable: {e}"),
        }
    }
    if let (Some(pid), Mode::UserProject | Mode::AgentProject) = (project_id, mode) {
        match api
            .get(&format!("/projects/{pid}/members/me/permissions"))
            .await
        {
            Ok(v) => granted.project = parse_permissions(&v),
            Err(e) => {
                tracing::warn!(target: "permissions", "project permissions unavailable: {e}")
            }
        }
    }
    granted
}

/// Whether a core tool with this permission key is listed.
pub fn tool_visible(
    mode: Mode,
    granted: &Granted,
    permission: &str,
    requires_project: bool,
) -> bool {
    let has = |list: &Option<Vec<String>>| {
        list.as_ref()
            .is_some_and(|l| domain::permissions::grants(l, permission))
    };
    match mode {
        Mode::Personal => true,
        Mode::UserGlobal => match &granted.global {
            None => true,
            Some(_) => !requires_project && has(&granted.global),
        },
        Mode::UserProject => {
            if granted.global.is_none() && granted.project.is_none() {
                return true;
            }
            has(&granted.global) || has(&granted.project)
        }
        Mode::AgentProject => match &granted.project {
            None => true,
            Some(_) => has(&granted.project),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_permission_shapes_parse() {
        let map =
            parse_permissions(&json!({"permissions": {"tasks.read": true, "tasks.write": false}}));
        assert_eq!(map, Some(vec!["tasks.read".to_owned()]));
        let list = parse_permissions(&json!({"permissions": ["tasks.read", "sprints.*"]}));
        assert_eq!(
            list,
            Some(vec!["tasks.read".to_owned(), "sprints.*".to_owned()])
        );
        assert_eq!(parse_permissions(&json!("x")), None);
    }

    #[test]
    fn filtering_per_mode() {
        let g = Granted {
            global: Some(vec!["users.read".into()]),
            project: Some(vec!["tasks.*".into(), "projects.read".into()]),
        };
        assert!(tool_visible(
            Mode::Personal,
            &Granted::default(),
            "tasks.write",
            true
        ));
        assert!(tool_visible(Mode::UserProject, &g, "tasks.write", true));
        assert!(!tool_visible(Mode::UserProject, &g, "sprints.read", true));
        assert!(tool_visible(Mode::AgentProject, &g, "projects.read", false));
        assert!(!tool_visible(Mode::UserGlobal, &g, "projects.read", false));
        let admin = Granted {
            global: Some(vec!["*".into()]),
            project: None,
        };
        assert!(tool_visible(
            Mode::UserGlobal,
            &admin,
            "projects.create",
            false
        ));
        assert!(!tool_visible(Mode::UserGlobal, &admin, "tasks.read", true));
        // Unknown permissions keep tools listed.
        assert!(tool_visible(
            Mode::AgentProject,
            &Granted::default(),
            "tasks.read",
            true
        ));
    }
}
