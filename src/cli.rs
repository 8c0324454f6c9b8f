//! Operator commands: reading the log and managing projections.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use eventstore::{EventKey, EventStore, GlobalPosition, RecordedEvent};
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
