//! The plugin aggregate: one stream per installed plugin name (the stream id
//! is derived from the reverse-DNS name, so a reinstall after an uninstall
//! continues the same stream and the name is unique by construction).
//!
//! Only the lifecycle lives here: install, upgrade, manual update, enable,
//! disable, uninstall and extension settings. What a plugin *does* (emitted
//! topics, recorded activities) goes to its own activity stream, so a busy
//! plugin never makes lifecycle commands fold a long stream.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Decision, DomainError, DomainEvent, ErrorCode};

/// Longest plugin name Paca accepts.
pub const NAME_MAX: usize = 128;

/// Namespace of the name-derived stream ids.
const STREAM_NAMESPACE: Uuid = Uuid::from_u128(0x8c1b_4f0e_52a7_4d1e_9b53_6f3c_2a90_d17e);

/// The plugin's stream id (and API id): the same name always maps to the
/// same stream.
pub fn plugin_id(name: &str) -> Uuid {
    Uuid::new_v5(&STREAM_NAMESPACE, name.as_bytes())
}

/// The stream a plugin's own effects (emitted topics, activities) go to.
pub fn activity_stream_id(name: &str) -> Uuid {
    Uuid::new_v5(&plugin_id(name), b"activity")
}

/// Stream type of [`activity_stream_id`] streams.
pub const ACTIVITY_STREAM_TYPE: &str = "plugin_activity";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum PluginEvent {
    #[serde(rename = "plugin.installed")]
    Installed {
        name: String,
        version: String,
        manifest: Value,
        enabled: bool,
        /// directory, tarball, catalog or admin (manual registration).
        source: String,
    },
    #[serde(rename = "plugin.upgraded")]
    Upgraded {
        old_version: String,
        version: String,
        manifest: Value,
        source: String,
    },
    /// Manual `PATCH /admin/plugins/:id` of version and/or manifest.
    #[serde(rename = "plugin.updated")]
    Updated {
        old_version: String,
        version: String,
        manifest: Value,
    },
    #[serde(rename = "plugin.enabled")]
    Enabled {},
    #[serde(rename = "plugin.disabled")]
    Disabled {},
    #[serde(rename = "plugin.uninstalled")]
    Uninstalled { name: String, version: String },
    #[serde(rename = "plugin.extension_settings_updated")]
    ExtensionSettingsUpdated {
        extension_point: String,
        settings: Value,
    },
}

impl DomainEvent for PluginEvent {
    const STREAM_TYPE: &'static str = "plugin";
}

/// What a plugin did, recorded on its activity stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum PluginActivityEvent {
    /// `paca.activity_record`: an entry about a task, by the plugin for the
    /// calling user or member.
    #[serde(rename = "plugin.activity_recorded")]
    ActivityRecorded {
        plugin: String,
        task_id: Uuid,
        project_id: Uuid,
        activity_type: String,
        content: Value,
    },
    /// `paca.summary_set`: the plugin's orchestration summary of a task (or,
    /// without `task_id`, of the project); `null` clears it.
    #[serde(rename = "plugin.summary_set")]
    SummarySet {
        plugin: String,
        project_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<Uuid>,
        summary: Value,
    },
}

impl DomainEvent for PluginActivityEvent {
    const STREAM_TYPE: &'static str = ACTIVITY_STREAM_TYPE;
}

/// The row id of a plugin's summary of a task or project.
pub fn summary_id(plugin: &str, target: Uuid) -> Uuid {
    Uuid::new_v5(&activity_stream_id(plugin), target.as_bytes())
}

/// The id of the task a plugin creates under `origin_key`: the same plugin
/// and key always name the same task stream, so a second create with the
/// key finds the stream taken instead of making a duplicate.
pub fn origin_task_id(plugin: &str, origin_key: &str) -> Uuid {
    Uuid::new_v5(
        &plugin_id(plugin),
        format!("task-origin:{origin_key}").as_bytes(),
    )
}

/// Stream type of a plugin wakeup (one stream per wakeup).
pub const WAKEUP_STREAM_TYPE: &str = "plugin_wakeup";

/// A durable callback a plugin scheduled (`paca.wakeup_schedule`). Version
/// 1 is the schedule; whichever of fired or cancelled is appended at
/// version 2 wins, so a wakeup fires at most once across every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum PluginWakeupEvent {
    #[serde(rename = "plugin.wakeup_scheduled")]
    Scheduled {
        plugin: String,
        project_id: Uuid,
        /// The user the callback runs as (permissions re-checked when it
        /// fires).
        user_id: Uuid,
        due_at: chrono::DateTime<chrono::Utc>,
        payload: Value,
    },
    #[serde(rename = "plugin.wakeup_fired")]
    Fired { plugin: String },
    #[serde(rename = "plugin.wakeup_cancelled")]
    Cancelled { plugin: String },
}

impl DomainEvent for PluginWakeupEvent {
    const STREAM_TYPE: &'static str = WAKEUP_STREAM_TYPE;
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plugin {
    pub installed: bool,
    pub name: String,
    pub version: String,
    pub manifest: Value,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub enum PluginCommand {
    Install {
        name: String,
        version: String,
        manifest: Value,
        enabled: bool,
        source: String,
        /// This server's version, for the manifest's `minCoreVersion`.
        host_version: String,
    },
    Upgrade {
        version: String,
        manifest: Value,
        source: String,
        host_version: String,
    },
    Update {
        version: Option<String>,
        manifest: Option<Value>,
    },
    SetEnabled(bool),
    Uninstall,
    SetExtensionSettings {
        extension_point: String,
        settings: Value,
    },
}

/// The extension points the web host renders (seed page 07).
pub const EXTENSION_POINTS: &[&str] = &[
    "sidebar.general.section",
    "sidebar.project.section",
    "task.detail.section",
    "project.settings.tab",
    "view",
];

fn err(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

/// Paca's name rule: dot-separated labels of `[A-Za-z0-9][A-Za-z0-9_-]*`,
/// at most 128 characters.
pub fn validate_name(name: &str) -> Result<(), DomainError> {
    let bad = || {
        err(
            ErrorCode::BAD_REQUEST,
            format!(
                "plugin name {name:?} must be dot-separated labels of letters, digits, '_' and '-' \
                 (each starting with a letter or digit), at most {NAME_MAX} characters"
            ),
        )
    };
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(bad());
    }
    for label in name.split('.') {
        let mut bytes = label.bytes();
        match bytes.next() {
            Some(b) if b.is_ascii_alphanumeric() => {}
            _ => return Err(bad()),
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad());
        }
    }
    Ok(())
}

/// A strict `X.Y.Z` version (no pre-release, no build metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let bad = || {
            err(
                ErrorCode::BAD_REQUEST,
                format!("version {text:?} must be strict X.Y.Z semver"),
            )
        };
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut numbers = [0u64; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            // No sign, no leading zeros (semver), digits only.
            if part.is_empty()
                || !part.bytes().all(|b| b.is_ascii_digit())
                || (part.len() > 1 && part.starts_with('0'))
            {
                return Err(bad());
            }
            *slot = part.parse().map_err(|_| bad())?;
        }
        Ok(Version(numbers[0], numbers[1], numbers[2]))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The manifest must be an object whose `id` is the plugin name and whose
/// `version` (when present) is the version being installed; its
/// `minCoreVersion` (when present) must not be newer than this server.
fn check_manifest(
    name: &str,
    version: &str,
    manifest: &Value,
    host_version: Option<&str>,
) -> Result<(), DomainError> {
    let Some(object) = manifest.as_object() else {
        return Err(err(
            ErrorCode::BAD_REQUEST,
            "manifest must be a JSON object",
        ));
    };
    match object.get("id").and_then(Value::as_str) {
        Some(id) if id == name => {}
        Some(id) => {
            return Err(err(
                ErrorCode::BAD_REQUEST,
                format!("manifest id {id:?} does not match plugin name {name:?}"),
            ));
        }
        None => return Err(err(ErrorCode::BAD_REQUEST, "manifest.id is required")),
    }
    if let Some(v) = object.get("version")
        && v.as_str() != Some(version)
    {
        return Err(err(
            ErrorCode::BAD_REQUEST,
            format!("manifest version {v} does not match version {version:?}"),
        ));
    }
    if let (Some(required), Some(host)) = (
        object.get("minCoreVersion").and_then(Value::as_str),
        host_version,
    ) {
        let required_v = Version::parse(required).map_err(|_| {
            err(
                ErrorCode::BAD_REQUEST,
                format!("manifest minCoreVersion {required:?} must be X.Y.Z"),
            )
        })?;
        let host_v = Version::parse(host)?;
        if required_v > host_v {
            return Err(err(
                ErrorCode::PLUGIN_INCOMPATIBLE_HOST_VERSION,
                format!(
                    "plugin requires core version {required} (required_version), this host is {host} (host_version)"
                ),
            ));
        }
    }
    Ok(())
}

impl Plugin {
    pub fn evolve(mut self, event: &PluginEvent) -> Self {
        match event {
            PluginEvent::Installed {
                name,
                version,
                manifest,
                enabled,
                ..
            } => {
                self.installed = true;
                self.name.clone_from(name);
                self.version.clone_from(version);
                self.manifest.clone_from(manifest);
                self.enabled = *enabled;
            }
            PluginEvent::Upgraded {
                version, manifest, ..
            }
            | PluginEvent::Updated {
                version, manifest, ..
            } => {
                self.version.clone_from(version);
                self.manifest.clone_from(manifest);
            }
            PluginEvent::Enabled {} => self.enabled = true,
            PluginEvent::Disabled {} => self.enabled = false,
            PluginEvent::Uninstalled { .. } => {
                self.installed = false;
                self.enabled = false;
            }
            PluginEvent::ExtensionSettingsUpdated { .. } => {}
        }
        self
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.installed {
            return Err(err(ErrorCode::PLUGIN_NOT_FOUND, "plugin not found"));
        }
        Ok(())
    }

    /// The semver rule of upgrades: strictly newer only.
    pub fn check_upgrade(&self, version: &str) -> Result<(), DomainError> {
        self.live()?;
        let new = Version::parse(version)?;
        // An installed version that is not strict semver (manual
        // registration) can be replaced by any strict one.
        if let Ok(current) = Version::parse(&self.version) {
            if new == current {
                return Err(err(
                    ErrorCode::PLUGIN_ALREADY_UP_TO_DATE,
                    format!("plugin is already up to date ({current})"),
                ));
            }
            if new < current {
                return Err(err(
                    ErrorCode::PLUGIN_DOWNGRADE_NOT_ALLOWED,
                    format!("version {new} is older than the installed {current}"),
                ));
            }
        }
        Ok(())
    }

    pub fn decide(&self, command: PluginCommand) -> Decision<PluginEvent> {
        match command {
            PluginCommand::Install {
                name,
                version,
                manifest,
                enabled,
                source,
                host_version,
            } => {
                if self.installed {
                    return Err(err(
                        ErrorCode::PLUGIN_NAME_TAKEN,
                        format!("plugin {name} is already installed (use upgrade)"),
                    ));
                }
                validate_name(&name)?;
                if version.trim().is_empty() {
                    return Err(err(ErrorCode::BAD_REQUEST, "version is required"));
                }
                check_manifest(&name, &version, &manifest, Some(&host_version))?;
                Ok(vec![PluginEvent::Installed {
                    name,
                    version,
                    manifest,
                    enabled,
                    source,
                }])
            }
            PluginCommand::Upgrade {
                version,
                manifest,
                source,
                host_version,
            } => {
                self.check_upgrade(&version)?;
                check_manifest(&self.name, &version, &manifest, Some(&host_version))?;
                Ok(vec![PluginEvent::Upgraded {
                    old_version: self.version.clone(),
                    version,
                    manifest,
                    source,
                }])
            }
            PluginCommand::Update { version, manifest } => {
                self.live()?;
                let version = version.unwrap_or_else(|| self.version.clone());
                if version.trim().is_empty() {
                    return Err(err(ErrorCode::BAD_REQUEST, "version must not be empty"));
                }
                let manifest = manifest.unwrap_or_else(|| self.manifest.clone());
                if version == self.version && manifest == self.manifest {
                    return Ok(vec![]);
                }
                check_manifest(&self.name, &version, &manifest, None)?;
                Ok(vec![PluginEvent::Updated {
                    old_version: self.version.clone(),
                    version,
                    manifest,
                }])
            }
            PluginCommand::SetEnabled(enabled) => {
                self.live()?;
                Ok(match (self.enabled, enabled) {
                    (false, true) => vec![PluginEvent::Enabled {}],
                    (true, false) => vec![PluginEvent::Disabled {}],
                    _ => vec![],
                })
            }
            PluginCommand::Uninstall => {
                self.live()?;
                Ok(vec![PluginEvent::Uninstalled {
                    name: self.name.clone(),
                    version: self.version.clone(),
                }])
            }
            PluginCommand::SetExtensionSettings {
                extension_point,
                settings,
            } => {
                self.live()?;
                if !EXTENSION_POINTS.contains(&extension_point.as_str()) {
                    return Err(err(
                        ErrorCode::BAD_REQUEST,
                        format!(
                            "extension_point must be one of {}",
                            EXTENSION_POINTS.join(", ")
                        ),
                    ));
                }
                if !settings.is_object() {
                    return Err(err(
                        ErrorCode::BAD_REQUEST,
                        "settings must be a JSON object",
                    ));
                }
                Ok(vec![PluginEvent::ExtensionSettingsUpdated {
                    extension_point,
                    settings,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn given(events: &[PluginEvent]) -> Plugin {
        events.iter().fold(Plugin::default(), Plugin::evolve)
    }

    fn manifest(version: &str) -> Value {
        json!({"id": "com.acme.demo", "version": version, "minCoreVersion": "0.1.0"})
    }

    fn installed(version: &str) -> PluginEvent {
        PluginEvent::Installed {
            name: "com.acme.demo".into(),
            version: version.into(),
            manifest: manifest(version),
            enabled: true,
            source: "directory".into(),
        }
    }

    fn install(version: &str, manifest: Value) -> PluginCommand {
        PluginCommand::Install {
            name: "com.acme.demo".into(),
            version: version.into(),
            manifest,
            enabled: true,
            source: "directory".into(),
            host_version: "0.1.0".into(),
        }
    }

    fn upgrade(version: &str) -> PluginCommand {
        PluginCommand::Upgrade {
            version: version.into(),
            manifest: manifest(version),
            source: "catalog".into(),
            host_version: "0.1.0".into(),
        }
    }

    fn code(result: Decision<PluginEvent>) -> ErrorCode {
        result.unwrap_err().code
    }

    #[test]
    fn install_then_installed_again_is_name_taken() {
        let events = given(&[])
            .decide(install("1.0.0", manifest("1.0.0")))
            .unwrap();
        assert_eq!(events, vec![installed("1.0.0")]);
        let state = given(&events);
        assert_eq!(
            code(state.decide(install("1.0.0", manifest("1.0.0")))),
            ErrorCode::PLUGIN_NAME_TAKEN
        );
    }

    #[test]
    fn reinstall_after_uninstall_is_allowed() {
        let state = given(&[
            installed("1.0.0"),
            PluginEvent::Uninstalled {
                name: "com.acme.demo".into(),
                version: "1.0.0".into(),
            },
        ]);
        assert!(!state.installed);
        assert!(state.decide(install("2.0.0", manifest("2.0.0"))).is_ok());
    }

    #[test]
    fn install_refuses_mismatched_manifest_and_bad_names() {
        let other = json!({"id": "com.other", "version": "1.0.0"});
        assert_eq!(
            code(given(&[]).decide(install("1.0.0", other))),
            ErrorCode::BAD_REQUEST
        );
        assert_eq!(
            code(given(&[]).decide(install("1.0.0", manifest("1.0.1")))),
            ErrorCode::BAD_REQUEST
        );
        for bad in ["", ".a", "a..b", "a/b", "-a", "a.-b", "ä"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["com.paca.github", "a", "A1.b_c-d"] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
        assert!(validate_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn min_core_version_newer_than_host_is_incompatible() {
        let m = json!({"id": "com.acme.demo", "version": "1.0.0", "minCoreVersion": "9.0.0"});
        assert_eq!(
            code(given(&[]).decide(install("1.0.0", m))),
            ErrorCode::PLUGIN_INCOMPATIBLE_HOST_VERSION
        );
    }

    #[test]
    fn upgrade_semver_rules() {
        let state = given(&[installed("1.2.3")]);
        assert_eq!(
            code(state.decide(upgrade("1.2.3"))),
            ErrorCode::PLUGIN_ALREADY_UP_TO_DATE
        );
        assert_eq!(
            code(state.decide(upgrade("1.2.2"))),
            ErrorCode::PLUGIN_DOWNGRADE_NOT_ALLOWED
        );
        assert_eq!(
            code(state.decide(upgrade("1.3.0-beta.1"))),
            ErrorCode::BAD_REQUEST
        );
        assert_eq!(
            code(state.decide(upgrade("1.3.0+001"))),
            ErrorCode::BAD_REQUEST
        );
        let events = state.decide(upgrade("1.10.0")).unwrap();
        assert_eq!(
            events,
            vec![PluginEvent::Upgraded {
                old_version: "1.2.3".into(),
                version: "1.10.0".into(),
                manifest: manifest("1.10.0"),
                source: "catalog".into(),
            }]
        );
        assert_eq!(
            given(&[installed("1.2.3"), events[0].clone()]).version,
            "1.10.0"
        );
        assert_eq!(
            code(given(&[]).decide(upgrade("1.0.0"))),
            ErrorCode::PLUGIN_NOT_FOUND
        );
    }

    #[test]
    fn enable_disable_are_idempotent() {
        let state = given(&[installed("1.0.0")]);
        assert_eq!(
            state.decide(PluginCommand::SetEnabled(true)).unwrap(),
            vec![]
        );
        let off = state.decide(PluginCommand::SetEnabled(false)).unwrap();
        assert_eq!(off, vec![PluginEvent::Disabled {}]);
        let state = given(&[installed("1.0.0"), PluginEvent::Disabled {}]);
        assert!(!state.enabled);
        assert_eq!(
            state.decide(PluginCommand::SetEnabled(true)).unwrap(),
            vec![PluginEvent::Enabled {}]
        );
    }

    #[test]
    fn extension_settings_need_a_known_point() {
        let state = given(&[installed("1.0.0")]);
        let bad = state.decide(PluginCommand::SetExtensionSettings {
            extension_point: "nowhere".into(),
            settings: json!({}),
        });
        assert_eq!(code(bad), ErrorCode::BAD_REQUEST);
        assert!(
            state
                .decide(PluginCommand::SetExtensionSettings {
                    extension_point: "view".into(),
                    settings: json!({"hidden": true}),
                })
                .is_ok()
        );
    }

    #[test]
    fn version_parse_is_strict() {
        assert_eq!(Version::parse("1.20.3").unwrap(), Version(1, 20, 3));
        for bad in [
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "v1.2.3",
            "1.2.3-rc1",
            "",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Version(1, 10, 0) > Version(1, 9, 9));
    }
}
