//! WASM plugins on wasmer (seed pages 07, 13, 14, 20; PLUGIN-ABI.md).
//!
//! - [`runtime`]: compiling modules with CPU metering and a memory cap,
//!   instances serialised per call, a fixed number per plugin.
//! - [`host`]: the `paca` host functions and a minimal WASI.
//! - [`db`]: a PostgreSQL role and schema per plugin; every plugin
//!   statement runs as that role.
//! - [`fetch`]: outbound HTTPS with SSRF checks at connect time.
//! - [`manifest`], [`router`]: `plugin.json` and route matching.
//! - [`install`]: directory, tarball and catalog installs, staged and
//!   switched only when everything worked.
//! - [`PluginHost`]: the registry of loaded plugins, request dispatch,
//!   lifecycle (as events on the plugin streams) and `HandleEvent`
//!   delivery through one checkpointed subscription per enabled plugin.

pub mod archive;
pub mod cache;
pub mod core;
pub mod db;
pub mod delivery;
pub mod fetch;
pub mod host;
pub mod install;
pub mod manifest;
pub mod orchestrate;
pub mod router;
pub mod runtime;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use commands::{CommandError, Commands};
use domain::{DomainError, DomainEvent, ErrorCode};
use eventstore::{EventStore, ExpectedVersion, NewEvent, StreamRef};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cache::{Cache, MemoryCache, RedisCache};
pub use crate::core::Caller;
use crate::fetch::{FetchPolicy, Fetcher};
use crate::host::{CallContext, PluginServices, RequestInfo};
use crate::manifest::Manifest;
pub use crate::orchestrate::{CoreApi, Failure, Op, Target};
use crate::router::{Matched, Router};
pub use crate::runtime::{CallError, Limits};
use crate::runtime::{CompiledModule, Instances};

/// Where plugin artifacts live and how plugins are limited.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// `{dir}/{name}/backend.wasm`, `plugin.json`, `migrations/*.sql`.
    pub wasm_dir: PathBuf,
    /// Frontend bundles, served at `/plugins/<name>/…`.
    pub frontend_dir: PathBuf,
    /// MCP bundles, served at `/plugins-mcp/<name>/…`.
    pub mcp_dir: PathBuf,
    /// Skills bundles, served at `/plugins-skills/<name>/…`.
    pub skills_dir: PathBuf,
    pub limits: Limits,
    pub fetch: FetchPolicy,
    /// `PLUGINS_MARKETPLACE_CATALOG_URL` (alias `PLUGIN_CATALOG_URL`).
    pub catalog_url: Option<String>,
    pub marketplace_timeout: Duration,
    /// This server's version, compared with manifests' `minCoreVersion`.
    pub host_version: String,
    /// Secret the plugin roles' database passwords are derived from.
    pub db_secret: Vec<u8>,
    /// What `config_get` can return (for keys a manifest allows).
    pub config_values: BTreeMap<String, String>,
    pub redis_url: Option<String>,
}

impl HostConfig {
    pub fn new(root: PathBuf) -> Self {
        Self {
            wasm_dir: root.join("backend"),
            frontend_dir: root.join("frontend"),
            mcp_dir: root.join("mcp"),
            skills_dir: root.join("skills"),
            limits: Limits::default(),
            fetch: FetchPolicy::standard(),
            catalog_url: None,
            marketplace_timeout: Duration::from_secs(20),
            host_version: env!("CARGO_PKG_VERSION").to_owned(),
            db_secret: Vec::new(),
            config_values: BTreeMap::new(),
            redis_url: None,
        }
    }
}

/// A host-level failure: a client-visible domain error or an internal one.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    Internal(String),
}

impl HostError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Domain(DomainError::new(code, message))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BAD_REQUEST, message)
    }
}

impl From<CommandError> for HostError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Domain(e) => Self::Domain(e),
            CommandError::Conflict(id) => Self::new(
                ErrorCode::CONFLICT,
                format!("plugin {id} was modified concurrently; retry"),
            ),
            stale @ CommandError::Stale { .. } => Self::new(ErrorCode::CONFLICT, stale.to_string()),
            CommandError::Infra(e) => Self::Internal(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for HostError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.to_string())
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// A loaded plugin version.
pub struct LoadedPlugin {
    pub name: String,
    pub id: Uuid,
    pub version: String,
    pub manifest: Manifest,
    pub router: Router,
    /// `None` for plugins without a backend (frontend/MCP only).
    pub instances: Option<Instances>,
    pub services: Option<Arc<PluginServices>>,
    /// `plugins.updated_at` of the read-model row this load corresponds to.
    pub updated_at: Option<DateTime<Utc>>,
}

/// An HTTP request for a plugin route, already authorised.
#[derive(Debug, Clone, Default)]
pub struct IncomingRequest {
    pub method: String,
    /// Sub-path after `/api/v1/plugins/<id>/`, without a leading slash.
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Canonical header names (`Content-Type`), first value each.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub caller: Caller,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Response headers a plugin may not set: transport-level ones, and
/// cookies (a plugin must not be able to replace the host's session).
const BLOCKED_RESPONSE_HEADERS: &[&str] = &[
    "set-cookie",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "trailer",
];

impl PluginResponse {
    /// Paca's response envelope `{status, headers, body: base64}`; bytes
    /// that are not such JSON are returned raw with 200.
    pub fn parse(bytes: Vec<u8>) -> Self {
        let envelope = match serde_json::from_slice::<Value>(&bytes) {
            // Only an object with envelope keys is an envelope; other JSON
            // is the body itself.
            Ok(Value::Object(map))
                if ["status", "headers", "body"]
                    .iter()
                    .any(|k| map.contains_key(*k)) =>
            {
                Some(map)
            }
            _ => None,
        };
        let Some(envelope) = envelope else {
            return Self {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: bytes,
            };
        };
        let status = match envelope.get("status").and_then(Value::as_u64) {
            None | Some(0) => 200,
            Some(s) if (100..=599).contains(&s) => s as u16,
            Some(_) => 500,
        };
        let mut headers: Vec<(String, String)> = envelope
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter(|(k, _)| {
                        !BLOCKED_RESPONSE_HEADERS.contains(&k.to_ascii_lowercase().as_str())
                    })
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let body = match envelope.get("body") {
            Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_else(|_| s.as_bytes().to_vec()),
            Some(Value::Null) | None => Vec::new(),
            Some(other) => other.to_string().into_bytes(),
        };
        Self {
            status,
            headers,
            body,
        }
    }
}

pub struct PluginHost {
    pub cfg: HostConfig,
    pub commands: Commands,
    pub(crate) core: crate::core::Core,
    cache: Arc<dyn Cache>,
    pub(crate) fetcher: Arc<Fetcher>,
    loaded: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    deliveries: std::sync::Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Serialises loads, installs and switches in this process.
    lifecycle: tokio::sync::Mutex<()>,
    /// `(name, updated_at)` loads that failed, not retried until changed.
    failed: std::sync::Mutex<HashMap<String, Option<DateTime<Utc>>>>,
    shutdown: watch::Sender<bool>,
    /// Set by [`PluginHost::start`]: a CLI install only records and stages.
    serving: std::sync::atomic::AtomicBool,
}

impl PluginHost {
    pub async fn new(cfg: HostConfig, commands: Commands) -> Result<Arc<Self>, String> {
        for dir in [
            &cfg.wasm_dir,
            &cfg.frontend_dir,
            &cfg.mcp_dir,
            &cfg.skills_dir,
        ] {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let cache: Arc<dyn Cache> = match &cfg.redis_url {
            Some(url) => Arc::new(RedisCache::connect(url).await?),
            None => Arc::new(MemoryCache::default()),
        };
        let fetcher = Fetcher::new(cfg.fetch.clone())?;
        let store = commands.store.clone();
        Ok(Arc::new(Self {
            core: crate::core::Core {
                pool: store.pool().clone(),
                store,
                commands: Some(commands.clone()),
                api: Default::default(),
            },
            cfg,
            commands,
            cache,
            fetcher,
            loaded: RwLock::new(HashMap::new()),
            deliveries: Default::default(),
            lifecycle: tokio::sync::Mutex::new(()),
            failed: Default::default(),
            shutdown: watch::Sender::new(false),
            serving: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The gateway's task and document operations for the orchestration
    /// host functions (first call wins: every worker's app passes the same).
    pub fn set_core_api(&self, api: Arc<dyn CoreApi>) {
        let _ = self.core.api.set(api);
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn pool(&self) -> &PgPool {
        self.commands.store.pool()
    }

    pub fn store(&self) -> &EventStore {
        &self.commands.store
    }

    /// Loads every enabled plugin, then keeps the loaded set in step with
    /// the read model (installs by `paca plugins install` or another
    /// server, enable/disable) every two seconds.
    pub async fn start(self: &Arc<Self>) {
        self.serving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.reconcile().await;
        let host = Arc::downgrade(self);
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.changed() => return,
                }
                let Some(host) = host.upgrade() else { return };
                host.reconcile().await;
            }
        });
        // Wakeups: due ones (including those that came due while no server
        // ran) fire within a second; every node polls, the stream decides.
        let host = Arc::downgrade(self);
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
                let Some(host) = host.upgrade() else { return };
                host.fire_due_wakeups().await;
            }
        });
    }

    /// Claims each due wakeup of a loaded plugin by appending
    /// `plugin.wakeup_fired` at version 2 (a cancel or another node's claim
    /// makes that a conflict, so it fires once), then calls `HandleWakeup`
    /// as the user who scheduled it. A claimed wakeup whose call fails is
    /// not retried: at most once, as a timer should be.
    pub async fn fire_due_wakeups(self: &Arc<Self>) {
        let rows = match sqlx::query(
            "SELECT id, plugin, project_id, user_id, due_at, payload FROM plugin_wakeups
             WHERE state = 'scheduled' AND due_at <= now() ORDER BY due_at LIMIT 100",
        )
        .fetch_all(self.pool())
        .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "wakeups: cannot read due wakeups");
                return;
            }
        };
        for row in rows {
            let id: Uuid = row.get("id");
            let name: String = row.get("plugin");
            let project_id: Uuid = row.get("project_id");
            let user_id: Uuid = row.get("user_id");
            let due_at: DateTime<Utc> = row.get("due_at");
            let payload: Value = row.get("payload");
            let Some(plugin) = self.plugin(&name) else {
                continue; // fires when the plugin is loaded again
            };
            let Some(instances) = &plugin.instances else {
                continue;
            };
            let caller = orchestrate::wakeup_caller(&self.commands.directory, user_id, project_id);
            let mut ctx = CallContext {
                deadline: runtime::deadline(instances.limits()),
                request: caller.map(|caller| RequestInfo {
                    caller,
                    ..Default::default()
                }),
                event_id: None,
            };
            let event = domain::plugin::PluginWakeupEvent::Fired {
                plugin: name.clone(),
            };
            let claimed = self
                .store()
                .append(
                    StreamRef {
                        stream_type: domain::plugin::WAKEUP_STREAM_TYPE,
                        stream_id: id,
                        project_id: Some(project_id),
                    },
                    ExpectedVersion::Exact(1),
                    vec![NewEvent::new(
                        event.event_type(),
                        event.to_payload(),
                        crate::core::Core::metadata(&name, plugin.id, &ctx),
                    )],
                )
                .await;
            let fired = match claimed {
                Ok(result) => result.events.first().map(|e| e.event_id),
                Err(eventstore::AppendError::VersionConflict { .. }) => continue,
                Err(error) => {
                    tracing::warn!(plugin = %name, wakeup = %id, %error, "wakeup claim failed");
                    continue;
                }
            };
            ctx.event_id = fired;
            let input = serde_json::to_vec(&json!({
                "id": id,
                "payload": payload,
                "project_id": project_id,
                "user_id": user_id,
                "due_at": due_at,
            }))
            .unwrap_or_default();
            match instances
                .call(move |slot, limits| slot.handle_wakeup(&input, ctx, limits))
                .await
            {
                Ok(true) => tracing::debug!(plugin = %name, wakeup = %id, "wakeup delivered"),
                Ok(false) => {
                    tracing::warn!(plugin = %name, wakeup = %id, "plugin has no HandleWakeup export")
                }
                Err(error) => {
                    tracing::warn!(plugin = %name, wakeup = %id, %error, "HandleWakeup failed")
                }
            }
        }
    }

    /// Unloads everything (calls `Shutdown`) and stops deliveries.
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
        let names: Vec<String> = self.read_loaded().keys().cloned().collect();
        for name in names {
            self.unload(&name).await;
        }
    }

    fn read_loaded(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<LoadedPlugin>>> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn plugin(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.read_loaded().get(name).cloned()
    }

    pub fn loaded_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read_loaded().keys().cloned().collect();
        names.sort();
        names
    }

    /// Brings the loaded set in line with `plugins` in the read model.
    pub async fn reconcile(self: &Arc<Self>) {
        let rows =
            match sqlx::query("SELECT name, version, manifest, enabled, updated_at FROM plugins")
                .fetch_all(self.pool())
                .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "plugin reconcile: cannot read plugins");
                    return;
                }
            };
        let _guard = self.lifecycle.lock().await;
        let mut wanted = HashMap::new();
        for row in &rows {
            let name: String = row.get("name");
            let enabled: bool = row.get("enabled");
            let updated_at: DateTime<Utc> = row.get("updated_at");
            if enabled {
                wanted.insert(name.clone(), updated_at);
                let current = self.plugin(&name).and_then(|p| p.updated_at);
                let failed = self
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&name)
                    .cloned();
                if current == Some(updated_at) || failed == Some(Some(updated_at)) {
                    continue;
                }
                let manifest: Value = row.get("manifest");
                match self
                    .load_installed(&name, &manifest, Some(updated_at))
                    .await
                {
                    Ok(plugin) => {
                        self.failed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&name);
                        self.activate(plugin).await;
                    }
                    Err(error) => {
                        tracing::error!(plugin = %name, %error, "plugin failed to load");
                        self.failed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(name, Some(updated_at));
                    }
                }
            }
        }
        let stale: Vec<String> = self
            .read_loaded()
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in stale {
            self.unload(&name).await;
        }
    }

    /// Builds a [`LoadedPlugin`] from the installed artifacts of `name`
    /// (provisioning its database role and running pending migrations).
    pub(crate) async fn load_installed(
        &self,
        name: &str,
        manifest: &Value,
        updated_at: Option<DateTime<Utc>>,
    ) -> Result<LoadedPlugin, String> {
        let dir = self.cfg.wasm_dir.join(name);
        self.load_from(name, &dir, manifest, updated_at).await
    }

    /// Builds a plugin from an artifact directory (installed or staged).
    pub(crate) async fn load_from(
        &self,
        name: &str,
        dir: &std::path::Path,
        manifest_json: &Value,
        updated_at: Option<DateTime<Utc>>,
    ) -> Result<LoadedPlugin, String> {
        let manifest = Manifest::parse(manifest_json)?;
        if manifest.id != name {
            return Err(format!("manifest id {:?} is not {name:?}", manifest.id));
        }
        let backend = manifest.backend();
        let router = Router::new(&backend.routes)?;
        let id = domain::plugin::plugin_id(name);
        let module = install::read_backend(dir)?;
        let (instances, services) = match module {
            None => (None, None),
            Some(bytes) => {
                let db = db::PluginDb::provision(
                    self.pool(),
                    name,
                    &self.cfg.db_secret,
                    self.cfg.limits.instances as u32 + 1,
                )
                .await?;
                let migrations = install::read_migrations(dir)?;
                let applied = db.migrate(&migrations).await?;
                if !applied.is_empty() {
                    tracing::info!(plugin = %name, ?applied, "plugin migrations applied");
                }
                let mut config = BTreeMap::new();
                for key in &backend.allowed_config_keys {
                    if let Some(value) = self.cfg.config_values.get(key) {
                        config.insert(key.clone(), value.clone());
                    }
                }
                let services = Arc::new(PluginServices {
                    name: name.to_owned(),
                    id,
                    backend: backend.clone(),
                    permissions: manifest.permissions.clone(),
                    db,
                    cache: self.cache.clone(),
                    fetcher: self.fetcher.clone(),
                    core: self.core.clone(),
                    config: Arc::new(config),
                    rt: tokio::runtime::Handle::current(),
                });
                let limits = self.cfg.limits.clone();
                let svc = services.clone();
                let instances = tokio::task::spawn_blocking(move || {
                    // Compiling and the first instance's Init are blocking work.
                    let compiled = CompiledModule::compile(&bytes, &limits)?;
                    Instances::new(compiled, svc, limits)
                })
                .await
                .map_err(|e| format!("loading panicked: {e}"))??;
                (Some(instances), Some(services))
            }
        };
        Ok(LoadedPlugin {
            name: name.to_owned(),
            id,
            version: manifest.version.clone(),
            manifest,
            router,
            instances,
            services,
            updated_at,
        })
    }

    /// Makes `plugin` the serving version (the previous one is shut down)
    /// and (re)starts its event delivery.
    pub(crate) async fn activate(self: &Arc<Self>, plugin: LoadedPlugin) {
        let name = plugin.name.clone();
        let subscribes = plugin
            .manifest
            .backend
            .as_ref()
            .is_some_and(|b| !b.event_subscriptions.is_empty())
            && plugin.instances.is_some();
        let old = self
            .loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), Arc::new(plugin));
        tracing::info!(plugin = %name, "plugin loaded");
        if let Some(old) = old {
            retire(old).await;
        }
        let running = self
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&name);
        if subscribes && !running {
            delivery::start(self, &name).await;
        } else if !subscribes && running {
            self.stop_delivery(&name);
        }
    }

    pub(crate) fn register_delivery(&self, name: &str, stop: watch::Sender<bool>) {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), stop);
    }

    fn stop_delivery(&self, name: &str) {
        if let Some(stop) = self
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
        {
            stop.send_replace(true);
        }
    }

    /// Stops serving `name`: no new calls, `Shutdown` on its instances.
    pub async fn unload(&self, name: &str) {
        self.stop_delivery(name);
        let old = self
            .loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(old) = old {
            tracing::info!(plugin = %name, "plugin unloaded");
            retire(old).await;
        }
    }

    /// Resolves a route of a loaded plugin: `Err(PLUGIN_NOT_FOUND)` when
    /// the plugin is not installed, disabled or failed to load;
    /// `Err(PLUGIN_ROUTE_NOT_FOUND)` when no manifest route matches (the
    /// guest is never entered).
    pub fn route(
        &self,
        name: &str,
        method: &str,
        path: &str,
    ) -> HostResult<(Arc<LoadedPlugin>, Matched)> {
        let plugin = self.plugin(name).ok_or_else(|| {
            HostError::new(ErrorCode::PLUGIN_NOT_FOUND, "plugin not found or disabled")
        })?;
        let matched = plugin.router.find(method, path).ok_or_else(|| {
            HostError::new(
                ErrorCode::PLUGIN_ROUTE_NOT_FOUND,
                format!("plugin {name} has no route {method} /{path}"),
            )
        })?;
        Ok((plugin, matched))
    }

    /// Calls the plugin's `HandleRequest` with Paca's request envelope.
    pub async fn handle_request(
        &self,
        plugin: &LoadedPlugin,
        request: IncomingRequest,
    ) -> Result<PluginResponse, CallError> {
        self.handle_request_raw(plugin, request)
            .await
            .map(PluginResponse::parse)
    }

    /// [`Self::handle_request`] without interpreting the result: the bytes
    /// the guest returned (diagnostics and tests).
    pub async fn handle_request_raw(
        &self,
        plugin: &LoadedPlugin,
        request: IncomingRequest,
    ) -> Result<Vec<u8>, CallError> {
        let Some(instances) = &plugin.instances else {
            return Err(CallError::MissingExport("HandleRequest"));
        };
        let caller = &request.caller;
        let envelope = json!({
            "method": request.method,
            "path": request.path.trim_start_matches('/'),
            "query": request.query,
            "project_id": caller.project_id.map(|p| p.to_string()).unwrap_or_default(),
            "caller_id": caller.member_id.map(|m| m.to_string()).unwrap_or_default(),
            "user_id": caller.user_id.map(|u| u.to_string()).unwrap_or_default(),
            "caller_role": caller.role,
            "headers": request.headers,
            "body": base64::engine::general_purpose::STANDARD.encode(&request.body),
        });
        let input = serde_json::to_vec(&envelope).unwrap_or_default();
        let limits = instances.limits().clone();
        if input.len() > limits.max_request_bytes {
            return Err(CallError::RequestTooLarge(limits.max_request_bytes));
        }
        let ctx = CallContext {
            deadline: runtime::deadline(&limits),
            request: Some(RequestInfo {
                body: request.body,
                headers: request.headers,
                caller: request.caller,
                request_id: request.request_id,
            }),
            event_id: None,
        };
        instances
            .call(move |slot, limits| slot.handle_request(&input, ctx, limits))
            .await
    }
}

pub(crate) async fn retire(old: Arc<LoadedPlugin>) {
    if let Some(instances) = &old.instances {
        instances.shutdown().await;
    }
    if let Some(services) = &old.services {
        services.db.close().await;
    }
}
