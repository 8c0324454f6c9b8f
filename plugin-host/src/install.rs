//! Installing, upgrading and removing plugins.
//!
//! Every install or upgrade is staged: artifacts are unpacked into
//! `.staging-*` directories beside the live ones (never served: plugin
//! names cannot start with a dot), checked (catalog `sha256`, manifest id
//! and version, `minCoreVersion`, semver), the database role and schema
//! provisioned and pending migrations run, the module compiled,
//! instantiated and its `Init` run. Only then is the lifecycle event
//! appended and the directories and the serving instance switched. Any
//! failure before the switch leaves the previous version serving (Paca
//! deletes it).
//!
//! Sources: a local directory, a `.tar.gz` of one (`paca plugins install
//! PATH`), or a catalog entry (Paca's catalog format, plus optional
//! `<artifact>_sha256` fields next to each `<artifact>_url`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use domain::ErrorCode;
use domain::plugin::{Plugin, PluginCommand};
use eventstore::Metadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::archive::{MAX_DOWNLOAD_BYTES, unpack_tar_gz};
use crate::manifest::{Manifest, schema_name};
use crate::{HostError, HostResult, PluginHost};

/// The module of an artifact directory: `backend.wasm`, else the first
/// `*.wasm`, else `backend.wat` (WebAssembly text, compiled here).
pub fn read_backend(dir: &Path) -> Result<Option<Vec<u8>>, String> {
    let wasm = dir.join("backend.wasm");
    if wasm.is_file() {
        return std::fs::read(&wasm).map(Some).map_err(|e| e.to_string());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut wasm_files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        wasm_files.sort();
        if let Some(first) = wasm_files.first() {
            return std::fs::read(first).map(Some).map_err(|e| e.to_string());
        }
    }
    let wat = dir.join("backend.wat");
    if wat.is_file() {
        let text = std::fs::read(&wat).map_err(|e| e.to_string())?;
        return wat::parse_bytes(&text)
            .map(|b| Some(b.into_owned()))
            .map_err(|e| format!("backend.wat: {e}"));
    }
    Ok(None)
}

/// `migrations/*.sql` of an artifact directory, by file name.
pub fn read_migrations(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("migrations")) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "sql") && path.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sql = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
            out.push((name, sql));
        }
    }
    out.sort();
    Ok(out)
}

/// A catalog (Paca's `catalog/plugins.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub schema_version: Option<i64>,
    #[serde(default)]
    pub plugins: Vec<CatalogEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_url: Option<String>,
    /// `<kind>_tar_gz_url` and optional `<kind>_tar_gz_sha256`.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
}

/// The artifact kinds of a catalog entry and where they go.
const KINDS: &[&str] = &[
    "manifest",
    "backend",
    "migrations",
    "frontend",
    "mcp",
    "skills",
];

/// Staged artifacts: one directory per store, inside that store's root.
struct Staged {
    name: String,
    manifest: Value,
    /// `wasm_dir/.staging-<id>`: plugin.json, backend, migrations.
    backend: PathBuf,
    /// Staged frontend / mcp / skills trees (store root, staged dir).
    bundles: Vec<(PathBuf, PathBuf)>,
    /// Scratch directories to remove afterwards.
    scratch: Vec<PathBuf>,
}

impl Staged {
    fn cleanup(&self) {
        let mut dirs = self.scratch.clone();
        dirs.push(self.backend.clone());
        dirs.extend(self.bundles.iter().map(|(_, d)| d.clone()));
        for dir in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn io(e: std::io::Error) -> HostError {
    HostError::Internal(e.to_string())
}

/// Copies a directory tree (regular files and directories only).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Finds `file` at the top of `dir` or in its single top-level folder (a
/// tarball of `my-plugin/…`).
fn plugin_root(dir: &Path) -> PathBuf {
    if dir.join("plugin.json").is_file() {
        return dir.to_owned();
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    if subdirs.len() == 1 && subdirs[0].join("plugin.json").is_file() {
        return subdirs[0].clone();
    }
    dir.to_owned()
}

fn find_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                find_files(&path, ext, out);
            } else if path.extension().is_some_and(|x| x == ext) {
                out.push(path);
            }
        }
    }
}

fn read_manifest(path: &Path) -> HostResult<Value> {
    let text = std::fs::read(path)
        .map_err(|e| HostError::bad_request(format!("reading plugin.json: {e}")))?;
    serde_json::from_slice(&text)
        .map_err(|e| HostError::bad_request(format!("plugin.json is not valid JSON: {e}")))
}

pub enum Mode {
    Install { enabled: bool },
    Upgrade,
}

impl PluginHost {
    fn staging_dir(&self, root: &Path) -> PathBuf {
        root.join(format!(".staging-{}", Uuid::new_v4()))
    }

    /// Stages a plugin directory (`plugin.json`, `backend.wasm` or
    /// `backend.wat`, `migrations/`, `frontend/`, `mcp/`, `skills/`).
    fn stage_directory(&self, source: &Path, scratch: Vec<PathBuf>) -> HostResult<Staged> {
        let root = plugin_root(source);
        let manifest = read_manifest(&root.join("plugin.json"))?;
        let name = manifest
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| HostError::bad_request("plugin.json has no id"))?
            .to_owned();
        domain::plugin::validate_name(&name)?;
        let backend = self.staging_dir(&self.cfg.wasm_dir);
        std::fs::create_dir_all(backend.join("migrations")).map_err(io)?;
        let mut staged = Staged {
            name,
            manifest,
            backend,
            bundles: Vec::new(),
            scratch,
        };
        let result = (|| {
            std::fs::copy(root.join("plugin.json"), staged.backend.join("plugin.json"))
                .map_err(io)?;
            for file in ["backend.wasm", "backend.wat"] {
                if root.join(file).is_file() {
                    std::fs::copy(root.join(file), staged.backend.join(file)).map_err(io)?;
                }
            }
            if !staged.backend.join("backend.wasm").exists()
                && !staged.backend.join("backend.wat").exists()
            {
                let mut wasm = Vec::new();
                find_files(&root.join("backend"), "wasm", &mut wasm);
                find_files(&root, "wasm", &mut wasm);
                if let Some(first) = wasm.first() {
                    std::fs::copy(first, staged.backend.join("backend.wasm")).map_err(io)?;
                }
            }
            for dir in [
                root.join("migrations"),
                root.join("backend").join("migrations"),
            ] {
                let mut sql = Vec::new();
                find_files(&dir, "sql", &mut sql);
                for file in sql {
                    if let Some(name) = file.file_name() {
                        std::fs::copy(&file, staged.backend.join("migrations").join(name))
                            .map_err(io)?;
                    }
                }
            }
            for (sub, store) in [
                ("frontend", &self.cfg.frontend_dir),
                ("mcp", &self.cfg.mcp_dir),
                ("skills", &self.cfg.skills_dir),
            ] {
                if root.join(sub).is_dir() {
                    let dest = self.staging_dir(store);
                    copy_tree(&root.join(sub), &dest).map_err(HostError::Internal)?;
                    staged.bundles.push((store.clone(), dest));
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            staged.cleanup();
            return Err(e);
        }
        Ok(staged)
    }

    /// Stages a `.tar.gz` of a plugin directory.
    fn stage_tarball(&self, gz: &[u8]) -> HostResult<Staged> {
        let scratch = self.staging_dir(&self.cfg.wasm_dir);
        std::fs::create_dir_all(&scratch).map_err(io)?;
        if let Err(e) = unpack_tar_gz(gz, &scratch) {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(HostError::bad_request(e));
        }
        self.stage_directory(&scratch.clone(), vec![scratch])
    }

    /// Downloads, verifies and stages a catalog entry's artifacts.
    async fn stage_catalog(&self, entry: &CatalogEntry) -> HostResult<Staged> {
        let scratch = self.staging_dir(&self.cfg.wasm_dir);
        std::fs::create_dir_all(&scratch).map_err(io)?;
        let result = async {
            let assembled = scratch.join("plugin");
            std::fs::create_dir_all(assembled.join("migrations")).map_err(io)?;
            if !entry.artifacts.contains_key("manifest_tar_gz_url") {
                return Err(HostError::bad_request("catalog entry has no manifest_tar_gz_url"));
            }
            for kind in KINDS {
                let Some(url) = entry.artifacts.get(&format!("{kind}_tar_gz_url")) else {
                    continue;
                };
                let bytes = self
                    .fetcher
                    .download(url, MAX_DOWNLOAD_BYTES, self.cfg.marketplace_timeout)
                    .await
                    .map_err(|e| HostError::bad_request(format!("downloading {kind} artifact: {e}")))?;
                if let Some(expected) = entry.artifacts.get(&format!("{kind}_tar_gz_sha256")) {
                    let actual = hex::encode(Sha256::digest(&bytes));
                    if !actual.eq_ignore_ascii_case(expected.trim()) {
                        return Err(HostError::bad_request(format!(
                            "{kind} artifact checksum mismatch: expected sha256 {expected}, got {actual}"
                        )));
                    }
                }
                let unpacked = scratch.join(kind);
                std::fs::create_dir_all(&unpacked).map_err(io)?;
                unpack_tar_gz(&bytes, &unpacked)
                    .map_err(|e| HostError::bad_request(format!("{kind} artifact: {e}")))?;
                match *kind {
                    "manifest" => {
                        let mut found = Vec::new();
                        find_files(&unpacked, "json", &mut found);
                        let manifest = found
                            .iter()
                            .find(|p| p.file_name().is_some_and(|n| n == "plugin.json"))
                            .ok_or_else(|| HostError::bad_request("manifest artifact has no plugin.json"))?;
                        std::fs::copy(manifest, assembled.join("plugin.json")).map_err(io)?;
                    }
                    "backend" => {
                        let mut wasm = Vec::new();
                        find_files(&unpacked, "wasm", &mut wasm);
                        let first = wasm
                            .first()
                            .ok_or_else(|| HostError::bad_request("backend artifact has no .wasm file"))?;
                        std::fs::copy(first, assembled.join("backend.wasm")).map_err(io)?;
                    }
                    "migrations" => {
                        let mut sql = Vec::new();
                        find_files(&unpacked, "sql", &mut sql);
                        for file in sql {
                            if let Some(name) = file.file_name() {
                                std::fs::copy(&file, assembled.join("migrations").join(name)).map_err(io)?;
                            }
                        }
                    }
                    other => {
                        std::fs::rename(&unpacked, assembled.join(other)).map_err(io)?;
                    }
                }
            }
            let staged = self.stage_directory(&assembled, vec![scratch.clone()])?;
            if staged.name != entry.name {
                staged.cleanup();
                return Err(HostError::bad_request(format!(
                    "manifest id {:?} does not match catalog name {:?}",
                    staged.name, entry.name
                )));
            }
            let version = staged.manifest.get("version").and_then(Value::as_str).unwrap_or_default();
            if version != entry.version {
                staged.cleanup();
                return Err(HostError::bad_request(format!(
                    "manifest version {version:?} does not match catalog version {:?}",
                    entry.version
                )));
            }
            Ok(staged)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        result
    }

    /// The catalog at `PLUGINS_MARKETPLACE_CATALOG_URL`.
    pub async fn catalog(&self) -> HostResult<Catalog> {
        let url = self.cfg.catalog_url.clone().ok_or_else(|| {
            HostError::bad_request(
                "no marketplace catalog is configured (PLUGINS_MARKETPLACE_CATALOG_URL)",
            )
        })?;
        let bytes = self
            .fetcher
            .download(&url, 10 << 20, self.cfg.marketplace_timeout)
            .await
            .map_err(|e| HostError::bad_request(format!("fetching the catalog: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| HostError::bad_request(format!("the catalog is not valid: {e}")))
    }

    async fn catalog_entry(&self, name: &str) -> HostResult<CatalogEntry> {
        self.catalog()
            .await?
            .plugins
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                HostError::new(
                    ErrorCode::PLUGIN_NOT_FOUND,
                    format!("{name} is not in the catalog"),
                )
            })
    }

    /// Installs from a directory or a `.tar.gz` file.
    pub async fn install_path(
        self: &Arc<Self>,
        path: &Path,
        enabled: bool,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let (staged, source) = if path.is_dir() {
            (self.stage_directory(path, vec![])?, "directory")
        } else {
            let bytes = std::fs::read(path)
                .map_err(|e| HostError::bad_request(format!("reading {}: {e}", path.display())))?;
            (self.stage_tarball(&bytes)?, "tarball")
        };
        self.commit(staged, Mode::Install { enabled }, source, metadata)
            .await
    }

    /// Upgrades an installed plugin from a directory or `.tar.gz` file.
    pub async fn upgrade_path(
        self: &Arc<Self>,
        path: &Path,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let (staged, source) = if path.is_dir() {
            (self.stage_directory(path, vec![])?, "directory")
        } else {
            let bytes = std::fs::read(path)
                .map_err(|e| HostError::bad_request(format!("reading {}: {e}", path.display())))?;
            (self.stage_tarball(&bytes)?, "tarball")
        };
        self.commit(staged, Mode::Upgrade, source, metadata).await
    }

    pub async fn install_catalog(
        self: &Arc<Self>,
        name: &str,
        enabled: bool,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let entry = self.catalog_entry(name).await?;
        let state = self.commands.plugin_state(name).await?.state;
        if state.installed {
            return Err(HostError::new(
                ErrorCode::PLUGIN_NAME_TAKEN,
                format!("plugin {name} is already installed (use upgrade)"),
            ));
        }
        let staged = self.stage_catalog(&entry).await?;
        self.commit(staged, Mode::Install { enabled }, "catalog", metadata)
            .await
    }

    pub async fn upgrade_catalog(
        self: &Arc<Self>,
        name: &str,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let state = self.commands.plugin_state(name).await?.state;
        if !state.installed {
            return Err(HostError::new(
                ErrorCode::PLUGIN_NOT_FOUND,
                "plugin not found",
            ));
        }
        let entry = self.catalog_entry(name).await?;
        // Fail fast on the semver rule before downloading anything.
        state.check_upgrade(&entry.version)?;
        let staged = self.stage_catalog(&entry).await?;
        self.commit(staged, Mode::Upgrade, "catalog", metadata)
            .await
    }

    /// Checks, loads, appends the event, then switches; on any failure
    /// before the event, nothing changes and the old version keeps serving.
    async fn commit(
        self: &Arc<Self>,
        staged: Staged,
        mode: Mode,
        source: &str,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let result = self.commit_inner(&staged, mode, source, metadata).await;
        staged.cleanup();
        result
    }

    async fn commit_inner(
        self: &Arc<Self>,
        staged: &Staged,
        mode: Mode,
        source: &str,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let name = staged.name.clone();
        Manifest::parse(&staged.manifest).map_err(HostError::bad_request)?;
        let version = staged
            .manifest
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let _guard = self.lifecycle.lock().await;
        let state = self.commands.plugin_state(&name).await?.state;
        let (command, enabled_after) = match mode {
            Mode::Install { enabled } => (
                PluginCommand::Install {
                    name: name.clone(),
                    version: version.clone(),
                    manifest: staged.manifest.clone(),
                    enabled,
                    source: source.to_owned(),
                    host_version: self.cfg.host_version.clone(),
                },
                enabled,
            ),
            Mode::Upgrade => (
                PluginCommand::Upgrade {
                    version: version.clone(),
                    manifest: staged.manifest.clone(),
                    source: source.to_owned(),
                    host_version: self.cfg.host_version.clone(),
                },
                state.enabled,
            ),
        };
        // The domain's rules first (name taken, semver, minCoreVersion),
        // before anything touches the database or the runtime.
        state.decide(command.clone())?;
        if matches!(command, PluginCommand::Install { .. }) {
            let schema = schema_name(&name);
            let clash =
                sqlx::query_scalar::<_, String>("SELECT name FROM plugins WHERE name <> $1")
                    .bind(&name)
                    .fetch_all(self.pool())
                    .await?
                    .into_iter()
                    .find(|other| schema_name(other) == schema);
            if let Some(other) = clash {
                return Err(HostError::new(
                    ErrorCode::PLUGIN_NAME_TAKEN,
                    format!("{name} would share the database schema {schema} with {other}"),
                ));
            }
        }
        let candidate = self
            .load_from(&name, &staged.backend, &staged.manifest, None)
            .await
            .map_err(|e| {
                tracing::error!(plugin = %name, error = %e, "plugin failed to load; nothing was changed");
                HostError::bad_request(format!("plugin failed to load: {e}"))
            })?;
        let appended = self.commands.plugin_command(&name, command, metadata).await;
        let (plugin, _) = match appended {
            Ok(done) => done,
            Err(e) => {
                crate::retire(Arc::new(candidate)).await;
                return Err(e.into());
            }
        };
        // Switch the artifacts.
        let mut olds = Vec::new();
        let mut stores = vec![(self.cfg.wasm_dir.clone(), Some(staged.backend.clone()))];
        for store in [
            &self.cfg.frontend_dir,
            &self.cfg.mcp_dir,
            &self.cfg.skills_dir,
        ] {
            let staged_dir = staged
                .bundles
                .iter()
                .find(|(s, _)| s == store)
                .map(|(_, d)| d.clone());
            stores.push((store.clone(), staged_dir));
        }
        for (store, staged_dir) in stores {
            let target = store.join(&name);
            if target.exists() {
                let old = store.join(format!(".old-{}", Uuid::new_v4()));
                std::fs::rename(&target, &old).map_err(io)?;
                olds.push(old);
            }
            if let Some(dir) = staged_dir {
                std::fs::rename(&dir, &target).map_err(io)?;
            }
        }
        for old in olds {
            let _ = std::fs::remove_dir_all(old);
        }
        let mut candidate = candidate;
        candidate.updated_at = sqlx::query_scalar("SELECT updated_at FROM plugins WHERE name = $1")
            .bind(&name)
            .fetch_optional(self.pool())
            .await?;
        if enabled_after && self.is_serving() {
            self.activate(candidate).await;
        } else {
            crate::retire(Arc::new(candidate)).await;
        }
        tracing::info!(plugin = %name, %version, source, "plugin installed");
        Ok(plugin)
    }

    /// Uninstalls: the event, then unload, then the artifacts. The schema
    /// and its data are kept (as Paca does); a reinstall finds them.
    pub async fn uninstall(self: &Arc<Self>, name: &str, metadata: &Metadata) -> HostResult<()> {
        let _guard = self.lifecycle.lock().await;
        self.commands
            .plugin_command(name, PluginCommand::Uninstall, metadata)
            .await?;
        self.unload(name).await;
        for store in [
            &self.cfg.wasm_dir,
            &self.cfg.frontend_dir,
            &self.cfg.mcp_dir,
            &self.cfg.skills_dir,
        ] {
            let _ = std::fs::remove_dir_all(store.join(name));
        }
        sqlx::query("DELETE FROM checkpoints WHERE name = $1")
            .bind(crate::delivery::subscription_name(name))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Any other lifecycle command (manual registration, update, enable,
    /// disable, extension settings), then the loaded set follows.
    pub async fn lifecycle_command(
        self: &Arc<Self>,
        name: &str,
        command: PluginCommand,
        metadata: &Metadata,
    ) -> HostResult<Plugin> {
        let (plugin, _) = {
            let _guard = self.lifecycle.lock().await;
            self.commands
                .plugin_command(name, command, metadata)
                .await?
        };
        if self.is_serving() {
            self.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            self.reconcile().await;
        }
        Ok(plugin)
    }
}
