//! `plugin.json`: the fields the host acts on (PLUGIN-ABI.md §4). The whole
//! object is kept as JSON too: it is what `GET /api/v1/plugins` returns and
//! what the web app and the MCP loader read.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::router::Router;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub id: String,
    pub version: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub min_core_version: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub backend: Option<Backend>,
    #[serde(skip)]
    pub raw: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub event_subscriptions: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_domains: Vec<String>,
    #[serde(default)]
    pub allowed_config_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub public: bool,
    /// `None`: omitted (the default chain); `Some([])`: no middleware.
    #[serde(default)]
    pub middlewares: Option<Vec<Middleware>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Middleware {
    pub name: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub project_param: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// Route middleware, resolved from the manifest's names (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Authn,
    OptionalAuthn,
    RequireFreshPassword,
    RequireJwtAuth,
    /// `requirePermissions` / `requireActions`: every permission (dotted,
    /// `tasks.read`) must be granted, globally or in the project named by
    /// the route parameter `project_param`.
    RequirePermissions {
        project_param: Option<String>,
        permissions: Vec<String>,
    },
}

impl Manifest {
    pub fn parse(raw: &Value) -> Result<Self, String> {
        let mut manifest: Manifest =
            serde_json::from_value(raw.clone()).map_err(|e| format!("invalid plugin.json: {e}"))?;
        manifest.raw = raw.clone();
        domain::plugin::validate_name(&manifest.id).map_err(|e| e.message)?;
        domain::plugin::Version::parse(&manifest.version).map_err(|e| e.message)?;
        if let Some(backend) = &manifest.backend {
            // Compiling the routes validates methods, paths and middleware.
            Router::new(&backend.routes)?;
            for topic in &backend.event_subscriptions {
                if topic.is_empty() || topic.len() > 128 {
                    return Err(format!("eventSubscriptions: invalid topic {topic:?}"));
                }
            }
            for domain in &backend.allowed_outbound_domains {
                if domain != "*" && !valid_host(domain) {
                    return Err(format!("allowedOutboundDomains: invalid host {domain:?}"));
                }
            }
        }
        Ok(manifest)
    }

    pub fn backend(&self) -> Backend {
        self.backend.clone().unwrap_or_default()
    }

    pub fn subscribes(&self, topic: &str) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| b.event_subscriptions.iter().any(|t| t == topic))
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

impl Route {
    /// The middleware chain this route runs, as PLUGIN-ABI.md §4 and the
    /// seeds define it: `public: true` or `[]` run none; an omitted list
    /// runs `optionalAuthn` + `requireFreshPassword`, plus `projects.read`
    /// on the project when the path has a `:projectId` parameter (seed
    /// page 20), so an omitted chain never opens a private project's data
    /// to anonymous callers.
    pub fn steps(&self) -> Result<Vec<Step>, String> {
        if self.public {
            return Ok(vec![]);
        }
        let Some(list) = &self.middlewares else {
            let mut steps = vec![Step::OptionalAuthn, Step::RequireFreshPassword];
            if self.path.split('/').any(|s| s == ":projectId") {
                steps.push(Step::RequirePermissions {
                    project_param: Some("projectId".into()),
                    permissions: vec!["projects.read".into()],
                });
            }
            return Ok(steps);
        };
        list.iter().map(Middleware::step).collect()
    }
}

impl Middleware {
    fn step(&self) -> Result<Step, String> {
        Ok(match self.name.to_ascii_lowercase().as_str() {
            "authn" => Step::Authn,
            "optionalauthn" => Step::OptionalAuthn,
            "requirefreshpassword" => Step::RequireFreshPassword,
            "requirejwtauth" => Step::RequireJwtAuth,
            "requirepermissions" | "requireactions" => {
                let permissions: Vec<String> = self
                    .permissions
                    .iter()
                    .chain(&self.actions)
                    // IAM-era actions are `domain:verb`; the seeds' model
                    // is dotted.
                    .map(|p| p.replace(':', "."))
                    .collect();
                if permissions.is_empty() {
                    return Err(format!("middleware {} needs permissions", self.name));
                }
                let project_param = match self.scope.as_deref().unwrap_or("global") {
                    "global" => None,
                    "project" => Some(
                        self.project_param
                            .clone()
                            .unwrap_or_else(|| "projectId".into()),
                    ),
                    other => {
                        return Err(format!(
                            "middleware scope {other:?} is not global or project"
                        ));
                    }
                };
                Step::RequirePermissions {
                    project_param,
                    permissions,
                }
            }
            other => return Err(format!("unknown middleware {other:?}")),
        })
    }
}

/// `com.paca.checklist` -> `plugin_data_com_paca_checklist`. Names that
/// would exceed PostgreSQL's 63-byte identifiers are shortened with a hash
/// of the full name (PostgreSQL would silently truncate, and two long
/// names could then share a schema).
pub fn schema_name(plugin: &str) -> String {
    identifier("plugin_data_", plugin)
}

/// The PostgreSQL role that owns the plugin's schema and runs its SQL.
pub fn role_name(plugin: &str) -> String {
    identifier("paca_plugin_", plugin)
}

fn identifier(prefix: &str, plugin: &str) -> String {
    let sanitized: String = plugin
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let full = format!("{prefix}{sanitized}");
    if full.len() <= 63 {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(plugin.as_bytes())[..6]);
    format!("{}_{hash}", &full[..50])
}

/// Double-quotes an identifier (names here are already restricted to
/// `[a-z0-9_]`, this is belt and braces).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_map_to_bounded_identifiers() {
        assert_eq!(
            schema_name("com.paca.checklist"),
            "plugin_data_com_paca_checklist"
        );
        assert_eq!(role_name("com.Acme.x-y"), "paca_plugin_com_acme_x_y");
        let long = format!("com.{}", "a".repeat(120));
        assert!(schema_name(&long).len() <= 63);
        assert_ne!(schema_name(&long), schema_name(&format!("{long}b")));
    }

    #[test]
    fn default_middleware_chain() {
        let m = Manifest::parse(&json!({
            "id": "com.x", "version": "1.0.0",
            "backend": {"routes": [
                {"method": "GET", "path": "/projects/:projectId/items"},
                {"method": "GET", "path": "/open", "middlewares": []},
                {"method": "GET", "path": "/legacy", "public": true},
                {"method": "POST", "path": "/w", "middlewares": [
                    {"name": "requireActions", "scope": "project", "actions": ["tasks:write"]}]}
            ]}
        }))
        .unwrap();
        let routes = &m.backend.as_ref().unwrap().routes;
        assert_eq!(
            routes[0].steps().unwrap(),
            vec![
                Step::OptionalAuthn,
                Step::RequireFreshPassword,
                Step::RequirePermissions {
                    project_param: Some("projectId".into()),
                    permissions: vec!["projects.read".into()]
                }
            ]
        );
        assert!(routes[1].steps().unwrap().is_empty());
        assert!(routes[2].steps().unwrap().is_empty());
        assert_eq!(
            routes[3].steps().unwrap(),
            vec![Step::RequirePermissions {
                project_param: Some("projectId".into()),
                permissions: vec!["tasks.write".into()]
            }]
        );
    }

    #[test]
    fn bad_manifests_are_refused() {
        for bad in [
            json!({"id": "a b", "version": "1.0.0"}),
            json!({"id": "com.x", "version": "1.0"}),
            json!({"id": "com.x", "version": "1.0.0", "backend": {"routes": [{"method": "GET", "path": "/a", "middlewares": [{"name": "sudo"}]}]}}),
            json!({"id": "com.x", "version": "1.0.0", "backend": {"routes": [{"method": "GET", "path": "/*rest/more"}]}}),
        ] {
            assert!(Manifest::parse(&bad).is_err(), "{bad} accepted");
        }
    }
}
