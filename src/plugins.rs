//! Plugin host configuration from the environment (seed page 19's
//! `PLUGINS_*` variables plus this host's limits) and `paca plugins …`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use commands::Commands;
use plugin_host::{HostConfig, HostError, PluginHost};

use crate::config::{Config, parse_duration};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}")),
    }
}

fn duration(name: &str, default: Duration) -> Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).with_context(|| format!("{name} is not valid")),
    }
}

fn dir(name: &str, default: PathBuf) -> PathBuf {
    var(name).map(PathBuf::from).unwrap_or(default)
}

/// `config_get` values: `ENCRYPTION_KEY`, `PUBLIC_URL`, and every
/// `PACA_PLUGIN_CONFIG_<KEY>` as `<KEY>` (never arbitrary environment
/// variables: a manifest allowing `DATABASE_URL` must not get it).
/// `ENCRYPTION_KEY` is the server's own (the environment's, else the one
/// generated in the data directory), so a zero-configuration server gives
/// plugins such as GitHub a stable key too.
fn config_values(config: &Config) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    match crate::config::secret(
        crate::config::ENCRYPTION_KEY,
        &config.data_dir,
        "encryption_key",
        || crate::config::random_hex(32),
    ) {
        Ok((key, _)) => {
            values.insert(crate::config::ENCRYPTION_KEY.to_owned(), key);
        }
        Err(error) => tracing::warn!(%error, "no ENCRYPTION_KEY for plugins"),
    }
    if let Some(v) = var("PUBLIC_URL") {
        values.insert("PUBLIC_URL".to_owned(), v);
    }
    for (key, value) in std::env::vars() {
        if let Some(name) = key.strip_prefix("PACA_PLUGIN_CONFIG_")
            && !name.is_empty()
        {
            values.insert(name.to_owned(), value);
        }
    }
    values
}

pub fn host_config(config: &Config, db_secret: &str) -> Result<HostConfig> {
    let root = config.data_dir.join("plugins");
    let mut cfg = HostConfig::new(root.clone());
    cfg.wasm_dir = dir("PLUGINS_WASM_DIR", root.join("backend"));
    cfg.frontend_dir = dir("PLUGINS_FRONTEND_DIR", root.join("frontend"));
    cfg.mcp_dir = dir("PLUGINS_MCP_DIR", root.join("mcp"));
    cfg.skills_dir = dir("PLUGINS_SKILLS_DIR", root.join("skills"));
    cfg.catalog_url = var("PLUGINS_MARKETPLACE_CATALOG_URL").or_else(|| var("PLUGIN_CATALOG_URL"));
    cfg.marketplace_timeout = duration("PLUGINS_MARKETPLACE_TIMEOUT", Duration::from_secs(20))?;
    cfg.limits.instances = number("PLUGINS_INSTANCES", cfg.limits.instances)?.max(1);
    cfg.limits.memory_pages = number("PLUGINS_MEMORY_PAGES", cfg.limits.memory_pages)?;
    cfg.limits.call_timeout = duration("PLUGINS_CALL_TIMEOUT", cfg.limits.call_timeout)?;
    cfg.limits.cpu_budget = number("PLUGINS_CPU_BUDGET", cfg.limits.cpu_budget)?;
    cfg.limits.max_request_bytes = number("PLUGINS_MAX_REQUEST_BYTES", 10usize << 20)?;
    cfg.limits.max_response_bytes =
        number("PLUGINS_MAX_RESPONSE_BYTES", cfg.limits.max_response_bytes)?;
    cfg.db_secret = db_secret.as_bytes().to_vec();
    cfg.config_values = config_values(config);
    cfg.redis_url = var("REDIS_URL");
    // Test-only: let plugins and the marketplace reach a loopback TLS
    // stand-in. Never set in production.
    if matches!(
        var("PACA_TEST_FETCH_ALLOW_LOOPBACK").as_deref(),
        Some("1" | "true")
    ) {
        cfg.fetch.allow_loopback_for_tests = true;
    }
    if let Some(path) = var("PACA_TEST_FETCH_CA_FILE") {
        cfg.fetch.extra_root_pem = Some(
            std::fs::read(&path)
                .with_context(|| format!("reading PACA_TEST_FETCH_CA_FILE {path}"))?,
        );
    }
    Ok(cfg)
}

pub async fn host(config: &Config, db_secret: &str, commands: Commands) -> Result<Arc<PluginHost>> {
    let cfg = host_config(config, db_secret)?;
    PluginHost::new(cfg, commands)
        .await
        .map_err(|e| anyhow::anyhow!("starting the plugin host: {e}"))
}

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Install a plugin from a directory or a .tar.gz (no network needed).
    /// A running server loads it within a few seconds.
    Install {
        path: PathBuf,
        /// Install without enabling it.
        #[arg(long)]
        disabled: bool,
    },
    /// Upgrade an installed plugin from a directory or a .tar.gz.
    Upgrade { path: PathBuf },
    /// Uninstall a plugin (its database schema and data are kept).
    Uninstall { name: String },
    /// Installed plugins.
    List,
}

fn host_error(e: HostError) -> anyhow::Error {
    match e {
        HostError::Domain(d) => anyhow::anyhow!("{}: {}", d.code, d.message),
        HostError::Internal(m) => anyhow::anyhow!(m),
    }
}

pub async fn run(host: &Arc<PluginHost>, command: PluginsCommand) -> Result<()> {
    let metadata = crate::cli::cli_metadata();
    match command {
        PluginsCommand::Install { path, disabled } => {
            let plugin = host
                .install_path(&path, !disabled, &metadata)
                .await
                .map_err(host_error)?;
            println!(
                "installed {} {} ({})",
                plugin.name,
                plugin.version,
                if plugin.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            );
        }
        PluginsCommand::Upgrade { path } => {
            let plugin = host
                .upgrade_path(&path, &metadata)
                .await
                .map_err(host_error)?;
            println!("upgraded {} to {}", plugin.name, plugin.version);
        }
        PluginsCommand::Uninstall { name } => {
            host.uninstall(&name, &metadata).await.map_err(host_error)?;
            println!("uninstalled {name}");
        }
        PluginsCommand::List => {
            for p in projections::queries_plugins::plugins(host.pool()).await? {
                println!(
                    "{:<40} {:<10} {}",
                    p.name,
                    p.version,
                    if p.enabled { "enabled" } else { "disabled" }
                );
            }
        }
    }
    Ok(())
}
