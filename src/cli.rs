//! Operator commands: reading the log and managing projections.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use eventstore::{EventKey, EventStore, GlobalPosition, RecordedEvent, seal};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::Row;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// The newest events in global order; --follow keeps printing new ones.
    Tail {
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only this stream.
        #[arg(long)]
        stream: Option<Uuid>,
        /// Only this event type (e.g. project.created).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// How many past events to show first.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: i64,
    },
    /// One event, by global position or event id.
    Show {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Every event of one stream, oldest first.
    Stream {
        stream_id: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// The sealed chain's head (`seq`, position, hash): keep it somewhere
    /// else, and `verify --anchor SEQ:HASH` proves the log since.
    Head {
        #[arg(long)]
        json: bool,
    },
    /// Seal every event visible now (a running server seals continuously).
    Seal,
    /// Recompute the hash chain; name the first changed, missing or moved
    /// event. Exits 1 when the log was tampered with.
    Verify {
        /// `SEQ:HASH` from an earlier `paca events head`.
        #[arg(long)]
        anchor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The log (and the write-side rows it cannot rebuild) as JSON lines on
    /// stdout, with a trailing chain hash. The logical backup.
    Export {
        /// Only events after this global position (such a file cannot seed a
        /// new database).
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
    /// Restore an export into an empty database, rebuild its read models and
    /// check its chain against the export's.
    Import { file: std::path::PathBuf },
    /// After a `pg_dump`/`pg_restore` into a new cluster: rewrite the log's
    /// transaction ids below this cluster's counter, keeping its order.
    /// Run with every server stopped.
    Renumber,
}

#[derive(Subcommand)]
pub enum SubscriptionsCommand {
    /// Every checkpointed consumer with its checkpoint, state and lag.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deliver again everything after a position (0: the whole log), a time
    /// (RFC 3339) or a time ago (`2h`). Consumers are idempotent per event.
    Reset {
        name: String,
        #[arg(long)]
        to: String,
        /// Print what would be delivered again and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop delivering (the checkpoint stays) until `resume`.
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
}

/// `paca audit`: who did what, newest last.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// A user, agent, member, API key or plugin id, a username, or an
    /// agent's `@handle`.
    #[arg(long)]
    actor: Option<String>,
    /// user, agent, plugin or system.
    #[arg(long)]
    actor_kind: Option<String>,
    #[arg(long)]
    project: Option<Uuid>,
    /// An event type or a prefix (`task`, `task.*`).
    #[arg(long = "type")]
    event_type: Option<String>,
    #[arg(long)]
    stream: Option<Uuid>,
    /// rest, graphql, mcp, runner, plugin, cli, system
    #[arg(long)]
    source: Option<String>,
    /// RFC 3339 or a time ago (`2h`, `30m`, `7d`).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// A request (correlation) id: with no other filter, also what the
    /// consumers did because of it.
    #[arg(long)]
    request: Option<String>,
    /// How many of the newest matches.
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Metadata of what an operator does from the command line: the system
/// acting through the CLI, and the OS account that ran it.
pub fn cli_metadata() -> eventstore::Metadata {
    let mut metadata = eventstore::Metadata::system("cli");
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()));
    // Not in the environment (cron, containers): the account of our uid.
    let user = from_env.or_else(|| {
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
    });
    if let Some(user) = user {
        metadata.extra.insert("os_user".into(), user.into());
    }
    metadata
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection and subscription with its checkpoint and lag.
    Status,
    /// Replay the log into fresh tables and switch reads to them.
    Rebuild {
        /// Projection name (default: all; currently `read_models`).
        name: Option<String>,
    },
    /// Rebuild into scratch tables and compare with the live ones.
    Verify { name: Option<String> },
}

fn print_event(event: &RecordedEvent, json: bool) {
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
        return;
    }
    let actor = event
        .metadata
        .pointer("/actor/user_id")
        .and_then(|v| v.as_str())
        .map(|id| format!("user:{id}"))
        .or_else(|| {
            event
                .metadata
                .pointer("/actor/kind")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "#{:<8} {}  {}/{}@{}  {:<28} by {}  {}",
        event.global_position,
        event.recorded_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        event.stream_type,
        event.stream_id,
        event.version,
        event.event_type,
        actor,
        event.payload
    );
}

fn matches(event: &RecordedEvent, stream: Option<Uuid>, event_type: Option<&str>) -> bool {
    stream.is_none_or(|s| s == event.stream_id) && event_type.is_none_or(|t| t == event.event_type)
}

pub async fn events(store: &EventStore, command: EventsCommand) -> Result<()> {
    match command {
        EventsCommand::Tail {
            follow,
            json,
            stream,
            event_type,
            limit,
        } => {
            // The newest `limit` matching events. With --follow, only those
            // every reader can see (below the gap-safe horizon), since a
            // gap-safe subscription continues from the last one; without,
            // everything committed: the horizon is cluster-wide, and a long
            // transaction elsewhere on the server must not hide a commit an
            // operator just made.
            let rows = sqlx::query(
                "SELECT global_position FROM events
                 WHERE (NOT $4 OR tx_id < pg_snapshot_xmin(pg_current_snapshot()))
                   AND ($1::uuid IS NULL OR stream_id = $1)
                   AND ($2::text IS NULL OR event_type = $2)
                 ORDER BY tx_id DESC, global_position DESC LIMIT $3",
            )
            .bind(stream)
            .bind(event_type.as_deref())
            .bind(limit.max(0))
            .bind(follow)
            .fetch_all(store.pool())
            .await?;
            let mut shown = Vec::with_capacity(rows.len());
            for row in rows.iter().rev() {
                if let Some(event) = store.read_event(EventKey::Position(row.get(0))).await? {
                    shown.push(event);
                }
            }
            for event in &shown {
                print_event(event, json);
            }
            if !follow {
                return Ok(());
            }
            let mut after = match shown.last() {
                Some(event) => GlobalPosition::of(event),
                None => store.head().await?.0,
            };
            let mut commits = store.commits();
            loop {
                let batch = store.read_all(after, 500).await?;
                for event in &batch {
                    after = GlobalPosition::of(event);
                    if matches(event, stream, event_type.as_deref()) {
                        print_event(event, json);
                    }
                }
                if batch.is_empty() {
                    tokio::select! {
                        _ = commits.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = tokio::signal::ctrl_c() => return Ok(()),
                    }
                }
            }
        }
        EventsCommand::Show { key, json } => {
            let key = match (key.parse::<i64>(), key.parse::<Uuid>()) {
                (Ok(position), _) => EventKey::Position(position),
                (_, Ok(id)) => EventKey::Id(id),
                _ => bail!("{key:?} is neither a global position nor an event id"),
            };
            match store.read_event(key).await? {
                Some(event) if json => print_event(&event, true),
                Some(event) => println!("{}", serde_json::to_string_pretty(&event)?),
                None => bail!("no such event"),
            }
            Ok(())
        }
        EventsCommand::Head { json } => {
            seal_now(store).await?;
            match seal::head(store.pool()).await? {
                Some(head) if json => println!("{}", serde_json::to_string(&head)?),
                Some(head) => println!(
                    "seq {} position {} hash {}",
                    head.seq,
                    head.position,
                    hex::encode(head.hash)
                ),
                None => println!("seq 0 position 0 hash {}", hex::encode(seal::GENESIS)),
            }
            Ok(())
        }
        EventsCommand::Seal => {
            let sealed = seal_now(store).await?;
            println!("sealed {sealed} event(s)");
            Ok(())
        }
        EventsCommand::Verify { anchor, json } => {
            let anchor = anchor.map(|a| parse_anchor(&a)).transpose()?;
            let verdict = seal::verify(store.pool(), anchor).await?;
            if json {
                println!("{}", serde_json::to_string(&verdict)?);
            }
            match verdict {
                seal::Verdict::Intact {
                    sealed,
                    unsealed,
                    head,
                } => {
                    if !json {
                        println!(
                            "ok: {sealed} events sealed, chain intact, head {}{}",
                            head.map_or_else(
                                || hex::encode(seal::GENESIS),
                                |h| hex::encode(h.hash)
                            ),
                            if unsealed > 0 {
                                format!(" ({unsealed} newer events not sealed yet)")
                            } else {
                                String::new()
                            }
                        );
                    }
                    Ok(())
                }
                seal::Verdict::Broken { position, problem } => {
                    if !json {
                        println!("TAMPERED at #{position}: {problem}");
                    }
                    std::process::exit(1);
                }
            }
        }
        EventsCommand::Export { since } => crate::backup::export(store, since).await,
        EventsCommand::Import { file } => crate::backup::import(store, &file).await,
        EventsCommand::Renumber => crate::backup::renumber(store).await,
        EventsCommand::Stream { stream_id, json } => {
            let events = store.read_stream(stream_id, 0).await?;
            if events.is_empty() {
                bail!("stream {stream_id} has no events");
            }
            for event in &events {
                print_event(event, json);
            }
            Ok(())
        }
    }
}

fn check_name(name: &Option<String>) -> Result<()> {
    match name.as_deref() {
        None | Some(projections::projector::NAME) => Ok(()),
        Some(other) => bail!(
            "unknown projection {other:?}; known: {}",
            projections::projector::NAME
        ),
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub async fn projections(store: &EventStore, command: ProjectionsCommand) -> Result<()> {
    match command {
        ProjectionsCommand::Status => {
            let (head, total) = store.head().await?;
            println!(
                "log: {total} events, head position {} (tx {})",
                head.position, head.tx_id
            );
            println!(
                "{:<24} {:<8} {:<10} {:>12} {:>8}  detail",
                "name", "kind", "state", "checkpoint", "lag"
            );
            for p in projections::rebuild::state(store).await? {
                let stale = !p.current;
                println!(
                    "{:<24} {:<8} {:<10} {:>12} {:>8}  version {} (code {}), schema {}, rebuilt {}",
                    p.name,
                    "inline",
                    if stale { "stale" } else { "live" },
                    "in-tx",
                    0,
                    p.version,
                    p.code_version,
                    p.schema,
                    p.rebuilt_at.map_or("never".into(), |t| t.to_rfc3339())
                );
            }
            for s in store.subscription_status().await? {
                println!(
                    "{:<24} {:<8} {:<10} {:>12} {:>8}  failures {}{}",
                    s.name,
                    "subscr",
                    s.status,
                    s.checkpoint.position,
                    s.lag,
                    s.failures,
                    s.last_error
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name } => {
            check_name(&name)?;
            let bar = progress_bar();
            let report = projections::rebuild(store, &|done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await
            .map_err(|e| anyhow::anyhow!("rebuild failed: {e}"))?;
            bar.finish_and_clear();
            println!(
                "rebuilt {} (version {}): {} events in {:.2}s ({:.0} events/s); reads switched to the new tables",
                projections::projector::NAME,
                report.version,
                report.events,
                report.seconds,
                report.events_per_second
            );
            Ok(())
        }
        ProjectionsCommand::Verify { name } => {
            check_name(&name)?;
            let bar = progress_bar();
            let diffs = projections::verify(store, &|done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await
            .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
            bar.finish_and_clear();
            if diffs.is_empty() {
                println!(
                    "{}: live tables equal a fresh replay of the log ({} tables)",
                    projections::projector::NAME,
                    projections::rebuild::TABLES.len()
                );
                return Ok(());
            }
            for diff in &diffs {
                println!("table {}:", diff.table);
                for row in &diff.only_live {
                    println!("  - live only:    {row}");
                }
                for row in &diff.only_rebuilt {
                    println!("  + replay only:  {row}");
                }
            }
            bail!("{} table(s) differ from a replay of the log", diffs.len())
        }
    }
}

fn parse_anchor(text: &str) -> Result<(i64, seal::Hash)> {
    let parsed = text.split_once(':').and_then(|(seq, hash)| {
        let seq: i64 = seq.trim().parse().ok()?;
        let hash: seal::Hash = hex::decode(hash.trim()).ok()?.try_into().ok()?;
        Some((seq, hash))
    });
    parsed
        .ok_or_else(|| anyhow::anyhow!("--anchor takes SEQ:HASH as `paca events head` prints them"))
}

/// Seals what is visible now. While a server runs, its sealer holds the
/// subscription: wait (up to 30 s) for it to reach the current head.
async fn seal_now(store: &EventStore) -> Result<usize> {
    let sealer = seal::subscription(store.clone());
    match sealer.drain().await {
        Ok(n) => Ok(n),
        Err(error) if error.is_busy() => {
            let (_, visible) = store.head().await?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let sealed = seal::head(store.pool()).await?.map_or(0, |h| h.seq);
                if sealed >= visible {
                    return Ok(0);
                }
                if std::time::Instant::now() > deadline {
                    bail!("the server's sealer has sealed {sealed} of {visible} events after 30 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn subscriptions(store: &EventStore, command: SubscriptionsCommand) -> Result<()> {
    let known = |name: &str| {
        let name = name.to_owned();
        async move {
            let all = store.subscription_status().await?;
            if all.iter().any(|s| s.name == name) {
                Ok(())
            } else {
                let names: Vec<String> = all.into_iter().map(|s| s.name).collect();
                bail!("no subscription {name:?}; known: {}", names.join(", "))
            }
        }
    };
    match command {
        SubscriptionsCommand::List { json } => {
            let all = store.subscription_status().await?;
            if json {
                for s in &all {
                    println!("{}", serde_json::to_string(s)?);
                }
                return Ok(());
            }
            println!(
                "{:<32} {:<9} {:>12} {:>8} {:>8}  updated",
                "name", "state", "checkpoint", "lag", "failures"
            );
            for s in all {
                println!(
                    "{:<32} {:<9} {:>12} {:>8} {:>8}  {}{}",
                    s.name,
                    if s.paused {
                        "paused"
                    } else {
                        s.status.as_str()
                    },
                    s.checkpoint.position,
                    s.lag,
                    s.failures,
                    s.updated_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    s.last_error
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        SubscriptionsCommand::Reset { name, to, dry_run } => {
            known(&name).await?;
            if name == seal::SEALER {
                bail!("{name} is the log's seal, not a consumer: it cannot be replayed");
            }
            let target = match to.trim().parse::<i64>() {
                Ok(position) if position >= 0 => store
                    .order_key_of(position)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no event at position {position}"))?,
                Ok(_) => bail!("--to takes a position ≥ 0, a time or a time ago"),
                Err(_) => {
                    let at = projections::audit::parse_time(&to, chrono::Utc::now()).ok_or_else(
                        || {
                            anyhow::anyhow!(
                                "--to {to:?} is neither a position nor a time (RFC 3339 or `2h`)"
                            )
                        },
                    )?;
                    store.order_key_before(at).await?
                }
            };
            let types = store.types_after(target).await?;
            let total: i64 = types.iter().map(|(_, n)| n).sum();
            println!(
                "{name}: {} {total} event(s) after position {} (before its own stream filter):",
                if dry_run {
                    "would deliver again"
                } else {
                    "delivers again"
                },
                target.position,
            );
            for (event_type, n) in &types {
                println!("  {n:>8}  {event_type}");
            }
            if !dry_run {
                store.reset_subscription(&name, target).await?;
                println!("{name}: checkpoint reset to position {}", target.position);
            }
            Ok(())
        }
        SubscriptionsCommand::Pause { name } => {
            known(&name).await?;
            store.pause_subscription(&name, true).await?;
            println!("{name}: paused");
            Ok(())
        }
        SubscriptionsCommand::Resume { name } => {
            known(&name).await?;
            store.pause_subscription(&name, false).await?;
            println!("{name}: resumed");
            Ok(())
        }
    }
}

pub async fn audit(store: &EventStore, args: AuditArgs) -> Result<()> {
    use projections::audit::{self, AuditFilter};
    let now = chrono::Utc::now();
    let time =
        |flag: &str, text: Option<String>| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
            text.map(|t| {
                audit::parse_time(&t, now).ok_or_else(|| {
                    anyhow::anyhow!("--{flag} {t:?}: not RFC 3339 nor a time ago like 2h")
                })
            })
            .transpose()
        };
    let actor_id = match args.actor.as_deref() {
        None => None,
        Some(actor) => Some(resolve_actor(store, actor).await?),
    };
    let filter = AuditFilter {
        actor_id,
        actor_kind: args.actor_kind,
        project_id: args.project,
        event_type: args.event_type,
        stream_id: args.stream,
        source: args.source,
        since: time("since", args.since)?,
        until: time("until", args.until)?,
        request_id: None,
    };
    let limit = args.limit.clamp(1, 10_000);
    let mut items = match args.request {
        // A request alone: everything it caused, consumers' work included.
        Some(request) if filter_is_empty(&filter) => {
            let mut items = audit::request(store.pool(), &request, limit).await?;
            items.reverse();
            items
        }
        request => {
            let filter = AuditFilter {
                request_id: request,
                ..filter
            };
            audit::page(store.pool(), &filter, None, limit).await?.items
        }
    };
    items.reverse();
    if args.json {
        for item in &items {
            println!("{}", serde_json::to_string(item)?);
        }
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<8} {:<56} object",
        "when", "who", "source", "what"
    );
    for item in &items {
        let what = format!("{} {}", item.event_type, item.summary);
        let object = format!(
            "{} {}",
            item.object.kind,
            item.object
                .label
                .clone()
                .unwrap_or_else(|| item.object.id.to_string())
        );
        println!(
            "{:<24} {:<22} {:<8} {:<56} {}",
            item.recorded_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            clip(item.actor.name.as_deref().unwrap_or("-"), 22),
            item.source,
            clip(&what, 56),
            object
        );
    }
    Ok(())
}

fn filter_is_empty(f: &projections::audit::AuditFilter) -> bool {
    f.actor_id.is_none()
        && f.actor_kind.is_none()
        && f.project_id.is_none()
        && f.event_type.is_none()
        && f.stream_id.is_none()
        && f.source.is_none()
        && f.since.is_none()
        && f.until.is_none()
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// An actor given as an id, a username or an agent's `@handle`.
async fn resolve_actor(store: &EventStore, actor: &str) -> Result<Uuid> {
    if let Ok(id) = actor.parse() {
        return Ok(id);
    }
    let found: Option<Uuid> = match actor.strip_prefix('@') {
        Some(handle) => {
            let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM agents WHERE handle = $1")
                .bind(handle)
                .fetch_all(store.pool())
                .await?;
            if ids.len() > 1 {
                bail!(
                    "@{handle} names agents in {} projects; give the agent's id",
                    ids.len()
                );
            }
            ids.into_iter().next()
        }
        None => {
            sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = lower($1)")
                .bind(actor)
                .fetch_optional(store.pool())
                .await?
        }
    };
    found.ok_or_else(|| anyhow::anyhow!("no user or agent {actor:?}"))
}
