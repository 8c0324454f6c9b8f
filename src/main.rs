//! `paca`: the Paca-RS server and its operator CLI.

mod agents;
mod backup;
mod cli;
mod config;
mod embedded;
mod memory;
mod notifications;
mod plugins;

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use commands::{AuthConfig, Commands};
use eventstore::EventStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::Config;
use crate::embedded::Embedded;

#[derive(Parser)]
#[command(
    name = "paca",
    version,
    about = "Paca-RS: an event-sourced, AI-native project-management backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (embedded PostgreSQL when DATABASE_URL is unset).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Read the event log.
    Events {
        #[command(subcommand)]
        command: cli::EventsCommand,
    },
    /// Who did what: the log as an audit trail, filtered.
    Audit(cli::AuditArgs),
    /// Checkpointed consumers of the log: list, replay from a position,
    /// pause and resume.
    Subscriptions {
        #[command(subcommand)]
        command: cli::SubscriptionsCommand,
    },
    /// Inspect, rebuild and verify projections.
    Projections {
        #[command(subcommand)]
        command: cli::ProjectionsCommand,
    },
    /// MCP server over stdio for Claude Desktop, VS Code and other MCP
    /// clients: Paca's tools as a client of a Paca API (PACA_API_KEY,
    /// PACA_API_URL, PACA_GATEWAY_URL, PACA_AGENT_ID, PACA_PROJECT_ID).
    Mcp,
    /// Run AI agent conversations in Docker sandboxes (Valkey triggers,
    /// DOCKER_HOST or DOCKER_SOCKET, AGENT_SERVER_IMAGE; docs/agents.md).
    AgentRunner,
    /// Install, upgrade, uninstall and list WASM plugins.
    Plugins {
        #[command(subcommand)]
        command: plugins::PluginsCommand,
    },
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database every subcommand works on, and the embedded cluster behind
/// it when there is one (stopped on drop if this process started it).
pub struct Database {
    pub pool: PgPool,
    _embedded: Option<Embedded>,
}

impl Database {
    pub async fn open(config: &Config) -> Result<Self> {
        let (options, embedded) = match &config.database_url {
            Some(url) => (
                PgConnectOptions::from_str(url)
                    .context("DATABASE_URL is not a valid PostgreSQL URL")?,
                None,
            ),
            None => {
                let mut embedded = Embedded::new(&config.data_dir)?;
                embedded.start()?;
                let options = PgConnectOptions::new()
                    .socket(embedded.socket_dir())
                    .username("postgres");
                create_database(options.clone().database("postgres"), "paca").await?;
                (options.database("paca"), Some(embedded))
            }
        };
        // Migrations create the log and write-side tables; they must land in
        // `public` whatever exists already (with `rm` first on the path,
        // `CREATE TABLE IF NOT EXISTS` would create them a second time there).
        {
            use sqlx::Connection;
            let migrate = options.clone().options([("search_path", "public")]);
            let mut conn = sqlx::PgConnection::connect_with(&migrate)
                .await
                .context("connecting to PostgreSQL")?;
            MIGRATOR
                .run(&mut conn)
                .await
                .context("running migrations")?;
            // The read models are updated in place all day long; without
            // autovacuum their dead rows pile up and their statistics go
            // stale, and the planner then scans where it should look up
            // (docs/operations.md, "PostgreSQL settings").
            let autovacuum: Option<String> =
                sqlx::query_scalar("SELECT current_setting('autovacuum')")
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap_or_default();
            if autovacuum.as_deref() == Some("off") {
                tracing::warn!(
                    "PostgreSQL runs with autovacuum = off: read-model tables will bloat and \
                     lose their planner statistics; turn it on, or run VACUUM (ANALYZE) regularly"
                );
            }
            conn.close().await?;
        }
        // Read models live in schema `rm` (see projections::rebuild), the log
        // and write-side tables in `public`.
        // Statements carry user data (a replay batch renders titles and
        // descriptions into its SQL): never log them at the default level.
        let options = options
            .options([("search_path", "rm,public")])
            .application_name("paca")
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            // Fail fast when PostgreSQL is down or every connection is
            // busy for this long: the request answers 503
            // DATABASE_UNAVAILABLE instead of hanging.
            .acquire_timeout(std::time::Duration::from_secs(5))
            // No ping before handing out a connection: it was a round trip
            // on every acquire (a third of a task write's). A connection
            // that died meanwhile (PostgreSQL restarted) fails its first
            // statement and is discarded; that request answers an error and
            // the next one gets a fresh connection. Idle connections are
            // closed after five minutes, which bounds how many can be stale.
            // (So acquires cost no round trip and GET /metrics counts none.)
            .test_before_acquire(false)
            .idle_timeout(std::time::Duration::from_secs(300))
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Self {
            pool,
            _embedded: embedded,
        })
    }

    pub fn store(&self) -> EventStore {
        EventStore::builder(self.pool.clone())
            .upcasters(commands::upcasters())
            .projector(Arc::new(commands::write_index::WriteIndex))
            .projector(Arc::new(projections::ReadModelProjector))
            .build()
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

async fn create_database(admin: PgConnectOptions, name: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&admin)
        .await
        .context("connecting to the embedded PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

/// The log on stderr, filtered by `RUST_LOG`; for `serve`, also the layer
/// that counts PostgreSQL round trips for `GET /metrics`, with its own
/// filter (so the log filter is per-layer rather than global: a global one
/// would silence sqlx's statement events for both).
fn init_tracing(count_db_round_trips: bool) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let counter = count_db_round_trips.then(gateways::metrics::db_round_trips);
    tracing_subscriber::registry()
        .with(log)
        .with(counter)
        .init();
}

#[global_allocator]
static ALLOCATOR: memory::Allocator = memory::Allocator;

fn main() {
    // Before the runtime starts its threads (they allocate).
    memory::configure();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    runtime.block_on(async_main());
}

async fn async_main() {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve));
    gateways::install_tls_provider();
    if let Err(error) = run(cli).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Mcp = cli.command {
        // A REST client: it needs none of the server's configuration, and
        // stdout belongs to the protocol (logs go to stderr).
        let config = gateways::mcp::stdio::StdioConfig::from_env().map_err(anyhow::Error::msg)?;
        return gateways::mcp::stdio::run(config)
            .await
            .map_err(anyhow::Error::msg);
    }
    let config = Config::from_env()?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = Database::open(&config).await?;
            let store = db.store();
            projections::ensure_ready(&store)
                .await
                .map_err(|e| anyhow::anyhow!("preparing read models: {e}"))?;
            println!("migrations applied");
            db.close().await;
            Ok(())
        }
        Command::Events { command } => {
            let db = Database::open(&config).await?;
            let result = cli::events(&db.store(), command).await;
            db.close().await;
            result
        }
        Command::Audit(args) => {
            let db = Database::open(&config).await?;
            let result = cli::audit(&db.store(), args).await;
            db.close().await;
            result
        }
        Command::Subscriptions { command } => {
            let db = Database::open(&config).await?;
            let result = cli::subscriptions(&db.store(), command).await;
            db.close().await;
            result
        }
        Command::Projections { command } => {
            let db = Database::open(&config).await?;
            let result = cli::projections(&db.store(), command).await;
            db.close().await;
            result
        }
        Command::Mcp => unreachable!("handled above"),
        Command::AgentRunner => {
            let (jwt_secret, _) =
                config::secret(config::JWT_SECRET, &config.data_dir, "jwt_secret", || {
                    config::random_hex(32)
                })?;
            let db = Database::open(&config).await?;
            let store = db.store();
            projections::ensure_ready(&store)
                .await
                .map_err(|e| anyhow::anyhow!("preparing read models: {e}"))?;
            let commands = Commands::new(store.clone(), auth_config(&config, jwt_secret))
                .await
                .map_err(|e| anyhow::anyhow!("loading the directory from the log: {e}"))?;
            let commands = match agents::secret_box(&config)? {
                Some(secrets) => commands.with_secrets(secrets),
                None => commands,
            };
            let result = agents::run_standalone(&config, &store, commands).await;
            db.close().await;
            result
        }
        Command::Plugins { command } => {
            let (jwt_secret, _) =
                config::secret(config::JWT_SECRET, &config.data_dir, "jwt_secret", || {
                    config::random_hex(32)
                })?;
            let db = Database::open(&config).await?;
            let store = db.store();
            projections::ensure_ready(&store)
                .await
                .map_err(|e| anyhow::anyhow!("preparing read models: {e}"))?;
            let commands = Commands::new(store, auth_config(&config, jwt_secret.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("loading the directory from the log: {e}"))?;
            let host = plugins::host(&config, &jwt_secret, commands).await?;
            let result = plugins::run(&host, command).await;
            db.close().await;
            result
        }
    }
}

fn auth_config(config: &Config, jwt_secret: String) -> AuthConfig {
    AuthConfig {
        jwt_secret,
        access_ttl: config.access_ttl,
        refresh_ttl: config.refresh_ttl,
        refresh_session_ttl: config.refresh_session_ttl,
        cookie_secure: config.cookie_secure,
        agent_api_key: config.agent_api_key.clone(),
    }
}

async fn serve(config: Config) -> Result<()> {
    let (jwt_secret, _) =
        config::secret(config::JWT_SECRET, &config.data_dir, "jwt_secret", || {
            config::random_hex(32)
        })?;
    let storage = gateways::storage::Storage::from_env(&config.data_dir, &jwt_secret)
        .await
        .context("configuring file storage (STORAGE_*)")?;
    tracing::info!(storage = %storage.describe(), "attachment storage");
    let (admin_password, generated) = config::secret(
        config::ADMIN_PASSWORD,
        &config.data_dir,
        "admin_password",
        || config::random_hex(12),
    )?;

    gateways::metrics::install();
    let db = Database::open(&config).await?;
    let store = db.store();
    store.observe_commits(Arc::new(gateways::metrics::AppendMetrics));
    store
        .check_xid_horizon()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(report) = projections::ensure_ready(&store)
        .await
        .map_err(|e| anyhow::anyhow!("preparing read models: {e}"))?
    {
        tracing::info!(
            events = report.events,
            seconds = report.seconds,
            "read models rebuilt"
        );
    }

    let secrets = agents::secret_box(&config)?;
    let commands = Commands::new(store.clone(), auth_config(&config, jwt_secret.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("loading the directory from the log: {e}"))?;
    let commands = match secrets {
        Some(secrets) => commands.with_secrets(secrets),
        None => commands,
    }
    .with_fused_writes(config.fused_writes);
    let (stop_directory, directory_shutdown) = tokio::sync::watch::channel(false);
    let follower = commands.directory.follow(directory_shutdown);
    commands
        .seed_global_roles()
        .await
        .map_err(|e| anyhow::anyhow!("seeding global roles: {e}"))?;
    let created = commands
        .seed_admin(&config.admin_username, &admin_password)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the admin user: {e}"))?;
    if created && generated {
        // Printed once: on the start that generated it.
        println!(
            "Created admin user {:?} with generated password: {admin_password}\n(stored in {})",
            config.admin_username,
            config.data_dir.join("admin_password").display()
        );
    } else if created {
        tracing::info!(username = %config.admin_username, "created admin user from ADMIN_PASSWORD");
    }

    let background = agents::start(&config, &store, &commands).await?;
    let plugin_host = plugins::host(&config, &jwt_secret, commands.clone()).await?;
    plugin_host.start().await;
    let notifications = notifications::start(&store, &commands).await?;
    // The tamper-evident chain, sealed behind the writers (eventstore::seal).
    let (stop_sealer, sealer_shutdown) = tokio::sync::watch::channel(false);
    let sealer = {
        let subscription = eventstore::seal::subscription(store.clone());
        tokio::spawn(async move {
            if let Err(error) = subscription.run(sealer_shutdown).await {
                tracing::error!(%error, "log sealer stopped");
            }
        })
    };
    let state = gateways::AppState::new(commands, config.login_max_failures)
        .with_cors(&config.cors_origins)
        .with_login_ip_ceiling(config.login_max_failures_per_ip)
        .with_plugins(plugin_host.clone())
        .with_storage(storage)
        .with_metrics_token(config.metrics_token.clone())
        .with_trusted_proxies(config.trusted_proxies.clone());
    let state = match &config.redis_url {
        Some(url) => state.with_shared_login_limits(
            gateways::realtime::bus::connect(url, 16)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to Valkey for login limits: {e}"))?,
        ),
        None => state,
    };
    let hub = state.realtime.clone();
    let realtime = gateways::realtime::Realtime::start(
        &store,
        &state.commands,
        state.realtime.clone(),
        config.redis_url.as_deref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting realtime delivery: {e}"))?;
    let (stop_realtime_listener, realtime_listener) = match config.realtime_port {
        None => (None, None),
        Some(port) => {
            let listener = tokio::net::TcpListener::bind((config.bind.as_str(), port))
                .await
                .with_context(|| {
                    format!("binding {}:{port} ({})", config.bind, config::REALTIME_PORT)
                })?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let io = state.realtime.io.clone();
            let task = tokio::spawn(gateways::realtime::listener::serve(
                listener,
                state.realtime.svc.clone(),
                state.cors.clone(),
                move || io.of("/").map_or(0, |ns| ns.sockets().len()),
                stopped,
            ));
            println!(
                "paca realtime (Socket.IO) listening on http://{}:{port}",
                config.bind
            );
            (Some(stop), Some(task))
        }
    };
    let (server, handle) =
        gateways::server(state, (config.bind.as_str(), config.port), config.workers)
            .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
    println!("paca listening on http://{}:{}", config.bind, config.port);

    let server = tokio::spawn(server);
    memory::start_trimmer();
    shutdown_signal().await;
    tracing::info!("shutting down");
    hub.close().await;
    if let (Some(stop), Some(task)) = (stop_realtime_listener, realtime_listener) {
        let _ = stop.send(true);
        let _ = task.await;
    }
    handle.stop(true).await;
    let _ = server.await;
    plugin_host.stop().await;
    background.stop().await;
    notifications.stop().await;
    let _ = stop_sealer.send(true);
    let _ = sealer.await;
    realtime.stop().await;
    let _ = stop_directory.send(true);
    let _ = follower.await;
    db.close().await;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
