//! `paca events export` and `paca events import`: the log as JSON lines, the
//! logical backup that restores into any empty database.
//!
//! The file is a header, every event in the log's order (its stored bytes:
//! payload and metadata as PostgreSQL's `jsonb` text, so the import hashes
//! to the same chain), the write-side rows the log cannot rebuild (password
//! and key hashes, encrypted agent credentials, uniqueness reservations,
//! task-number counters, file records), and a trailer with the count and the
//! chain hash over the exported events. Export streams (constant memory);
//! import checks the whole file against its trailer before writing
//! anything.
//!
//! Import keeps every event's global position and the log's order. Events
//! of one exported transaction stay together, and a new transaction starts
//! whenever keeping them in one would change the order (an older
//! transaction that took a higher position), so readers see the original
//! order under the new cluster's transaction ids. That also means a
//! restored log never has transaction ids ahead of its cluster.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use eventstore::EventStore;
use eventstore::seal::{self, GENESIS, Hash, RawEvent};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use sqlx::Row;

const FORMAT: &str = "paca-events/1";

/// Write-side tables that are not projections of the log (DESIGN.md §3:
/// secrets live outside it; reservations and counters are taken in the
/// append transaction). Everything else is rebuilt from the events.
const STATE_TABLES: &[&str] = &[
    "user_credentials",
    "api_key_secrets",
    "agent_credentials",
    "reservations",
    "task_counters",
    "files",
];

pub async fn export(store: &EventStore, since: i64) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let pool = store.pool();
    let mut conn = pool.acquire().await?;
    // One snapshot: the events and the state rows agree.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await?;
    let after = match store.order_key_of(since).await? {
        Some(key) => key,
        None => bail!("no event at position {since}"),
    };
    writeln!(
        out,
        "{}",
        json!({
            "kind": "header",
            "format": FORMAT,
            "paca_version": env!("CARGO_PKG_VERSION"),
            "exported_at": chrono::Utc::now(),
            "since": since,
        })
    )?;
    let mut hash = GENESIS;
    let mut count: u64 = 0;
    {
        let sql = format!(
            "SELECT {}, e.tx_id::text::bigint AS tx FROM events e
             WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
               AND (e.tx_id, e.global_position) > ($1::text::xid8, $2)
             ORDER BY e.tx_id, e.global_position",
            seal::RAW_COLUMNS
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.tx_id.to_string())
            .bind(after.position)
            .fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let event = RawEvent::from_row(&row);
            hash = seal::chain(&hash, &event);
            count += 1;
            let tx: i64 = row.get("tx");
            writeln!(
                out,
                "{}",
                json!({"kind": "event", "tx": tx, "event": event})
            )?;
        }
    }
    if since == 0 {
        for table in STATE_TABLES {
            let sql = format!("SELECT to_jsonb(t) FROM {table} t");
            let mut rows =
                sqlx::query_scalar::<_, Value>(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                writeln!(
                    out,
                    "{}",
                    json!({"kind": "state", "table": table, "row": row})
                )?;
            }
        }
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    writeln!(
        out,
        "{}",
        json!({"kind": "end", "events": count, "hash": hex::encode(hash)})
    )?;
    out.flush()?;
    eprintln!("exported {count} events, chain hash {}", hex::encode(hash));
    Ok(())
}

enum Line {
    Header { since: i64 },
    Event { tx: i64, event: RawEvent },
    State { table: String, row: Value },
    End { events: u64, hash: String },
}

fn parse(number: usize, text: &str) -> Result<Line> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("line {number}: not JSON"))?;
    let field = |name: &str| {
        value
            .get(name)
            .cloned()
            .with_context(|| format!("line {number}: no {name:?}"))
    };
    Ok(match value.get("kind").and_then(Value::as_str) {
        Some("header") => {
            if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
                bail!("line {number}: not a {FORMAT} export");
            }
            Line::Header {
                since: field("since")?.as_i64().unwrap_or(-1),
            }
        }
        Some("event") => Line::Event {
            tx: field("tx")?
                .as_i64()
                .with_context(|| format!("line {number}: tx is not a number"))?,
            event: serde_json::from_value(field("event")?)
                .with_context(|| format!("line {number}: malformed event"))?,
        },
        Some("state") => {
            let table = field("table")?.as_str().unwrap_or_default().to_owned();
            if !STATE_TABLES.contains(&table.as_str()) {
                bail!("line {number}: unknown table {table:?}");
            }
            Line::State {
                table,
                row: field("row")?,
            }
        }
        Some("end") => Line::End {
            events: field("events")?.as_u64().unwrap_or(u64::MAX),
            hash: field("hash")?.as_str().unwrap_or_default().to_owned(),
        },
        _ => bail!("line {number}: unknown kind"),
    })
}

fn lines(path: &Path) -> Result<impl Iterator<Item = Result<Line>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(i, line)| parse(i + 1, &line.context("reading the export")?)))
}

/// Pass one: the file is whole, in order, from the start of a log, and its
/// events hash to its trailer. Nothing is written until this passes.
fn check(path: &Path) -> Result<(u64, Hash)> {
    let mut hash = GENESIS;
    let mut count = 0u64;
    let mut header = false;
    let mut last_position = 0i64;
    let mut end = None;
    for line in lines(path)? {
        if end.is_some() {
            bail!("content after the trailer");
        }
        match line? {
            Line::Header { since } => {
                if header {
                    bail!("two headers");
                }
                if since != 0 {
                    bail!(
                        "this export starts after position {since}; only a whole log \
                         (exported without --since) can be imported"
                    );
                }
                header = true;
            }
            _ if !header => bail!("the file does not start with an export header"),
            Line::Event { event, .. } => {
                if event.position <= 0 {
                    bail!("event {} has an invalid position", event.event_id);
                }
                last_position = last_position.max(event.position);
                hash = seal::chain(&hash, &event);
                count += 1;
            }
            Line::State { .. } => {}
            Line::End { events, hash: h } => end = Some((events, h)),
        }
    }
    let Some((events, trailer)) = end else {
        bail!("the export has no trailer: it is truncated");
    };
    if events != count || trailer != hex::encode(hash) {
        bail!(
            "the export does not match its trailer ({count} events hashing to {}, the trailer \
             says {events} events, {trailer}): it was modified or is damaged",
            hex::encode(hash)
        );
    }
    Ok((count, hash))
}

struct Batch {
    positions: Vec<i64>,
    stream_types: Vec<String>,
    stream_ids: Vec<uuid::Uuid>,
    versions: Vec<i64>,
    event_ids: Vec<uuid::Uuid>,
    event_types: Vec<String>,
    schema_versions: Vec<i16>,
    project_ids: Vec<Option<uuid::Uuid>>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Batch {
    fn new() -> Self {
        Self {
            positions: vec![],
            stream_types: vec![],
            stream_ids: vec![],
            versions: vec![],
            event_ids: vec![],
            event_types: vec![],
            schema_versions: vec![],
            project_ids: vec![],
            payloads: vec![],
            metadata: vec![],
            recorded_at: vec![],
        }
    }

    fn push(&mut self, e: RawEvent) {
        self.positions.push(e.position);
        self.stream_types.push(e.stream_type);
        self.stream_ids.push(e.stream_id);
        self.versions.push(e.version);
        self.event_ids.push(e.event_id);
        self.event_types.push(e.event_type);
        self.schema_versions.push(e.schema_version);
        self.project_ids.push(e.project_id);
        self.payloads.push(e.payload);
        self.metadata.push(e.metadata);
        self.recorded_at.push(e.recorded_at);
    }

    async fn insert(&mut self, tx: &mut sqlx::PgConnection) -> Result<()> {
        if self.positions.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (global_position, stream_type, stream_id, version, event_id,
                                 event_type, schema_version, project_id, payload, metadata,
                                 recorded_at)
             OVERRIDING SYSTEM VALUE
             SELECT p, st, sid, v, eid, et, sv, pid, pl::jsonb, md::jsonb, ra
             FROM unnest($1::bigint[], $2::text[], $3::uuid[], $4::bigint[], $5::uuid[],
                         $6::text[], $7::int2[], $8::uuid[], $9::text[], $10::text[],
                         $11::timestamptz[])
                  AS t(p, st, sid, v, eid, et, sv, pid, pl, md, ra)",
        )
        .bind(&self.positions)
        .bind(&self.stream_types)
        .bind(&self.stream_ids)
        .bind(&self.versions)
        .bind(&self.event_ids)
        .bind(&self.event_types)
        .bind(&self.schema_versions)
        .bind(&self.project_ids)
        .bind(&self.payloads)
        .bind(&self.metadata)
        .bind(&self.recorded_at)
        .execute(&mut *tx)
        .await?;
        *self = Self::new();
        Ok(())
    }
}

pub async fn import(store: &EventStore, path: &Path) -> Result<()> {
    let pool = store.pool();
    let used: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM streams)
             OR EXISTS (SELECT 1 FROM user_credentials)",
    )
    .fetch_one(pool)
    .await?;
    if used {
        bail!("the database is not empty: import only restores into a fresh database");
    }
    let (count, hash) = check(path)?;
    eprintln!(
        "export checked: {count} events, chain hash {}",
        hex::encode(hash)
    );

    // Pass two. One import transaction per run of exported transactions
    // whose positions keep increasing (usually the whole log).
    let mut writer = Writer {
        pool: pool.clone(),
        tx: pool.begin().await?,
        batch: Batch::new(),
        pending: Vec::new(),
        pending_tx: None,
        max_position: 0,
        transactions: 1,
    };
    let mut states = 0u64;
    for line in lines(path)? {
        match line? {
            Line::Event {
                tx: source_tx,
                event,
            } => {
                if writer.pending_tx != Some(source_tx) {
                    // A new exported transaction: the previous one is whole.
                    writer.flush().await?;
                    writer.pending_tx = Some(source_tx);
                }
                writer.pending.push(event);
            }
            Line::State { table, row } => {
                writer.flush().await?;
                let sql = format!(
                    "INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, $1)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(row)
                    .execute(&mut *writer.tx)
                    .await
                    .with_context(|| format!("restoring a {table} row"))?;
                states += 1;
            }
            Line::Header { .. } | Line::End { .. } => {}
        }
    }
    writer.flush().await?;
    let Writer {
        mut tx,
        mut batch,
        transactions,
        ..
    } = writer;
    batch.insert(&mut tx).await?;
    sqlx::query(
        "INSERT INTO streams (stream_id, stream_type, version)
         SELECT stream_id, MIN(stream_type), MAX(version) FROM events GROUP BY stream_id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('events', 'global_position'),
                       GREATEST((SELECT MAX(global_position) FROM events), 1))",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    eprintln!(
        "imported {count} events in {transactions} transaction(s) and {states} write-side rows"
    );

    commands::write_index::ensure(store)
        .await
        .map_err(|e| anyhow::anyhow!("filling the write-side indexes: {e}"))?;
    let report = projections::rebuild(store, &|_: u64, _: u64| {})
        .await
        .map_err(|e| anyhow::anyhow!("rebuilding read models: {e}"))?;
    eprintln!(
        "read models rebuilt: {} events in {:.2}s",
        report.events, report.seconds
    );
    // Seal the imported log here, so the chain can be compared with the
    // export's at once.
    let sealer = seal::subscription(store.clone());
    sealer
        .drain()
        .await
        .map_err(|e| anyhow::anyhow!("sealing the imported log: {e}"))?;
    let head = seal::head(pool).await?;
    let sealed = head.as_ref().map_or(GENESIS, |h| h.hash);
    if sealed != hash {
        bail!(
            "the imported log seals to {}, the export to {}",
            hex::encode(sealed),
            hex::encode(hash)
        );
    }
    println!(
        "imported {count} events; chain head {} matches the export",
        hex::encode(sealed)
    );
    Ok(())
}

/// Import pass two's state: the open import transaction, the rows waiting
/// for one multi-row insert, and the exported transaction being read.
struct Writer {
    pool: sqlx::PgPool,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    batch: Batch,
    /// The events of exported transaction `pending_tx` read so far.
    pending: Vec<RawEvent>,
    pending_tx: Option<i64>,
    max_position: i64,
    transactions: u64,
}

impl Writer {
    /// Appends the pending exported transaction to the current import
    /// transaction, or, when one of its positions is below a position
    /// already imported (it committed after a transaction that numbered
    /// later), commits first, so it gets a later transaction id and keeps
    /// its place in the order.
    async fn flush(&mut self) -> Result<()> {
        let Some(lowest) = self.pending.iter().map(|e| e.position).min() else {
            return Ok(());
        };
        if lowest < self.max_position {
            self.batch.insert(&mut self.tx).await?;
            let done = std::mem::replace(&mut self.tx, self.pool.begin().await?);
            done.commit().await?;
            self.transactions += 1;
        }
        for event in self.pending.drain(..) {
            self.max_position = self.max_position.max(event.position);
            self.batch.push(event);
            if self.batch.positions.len() >= 1000 {
                self.batch.insert(&mut self.tx).await?;
            }
        }
        Ok(())
    }
}

/// `paca events renumber`: after a logical restore (`pg_dump` →
/// `pg_restore`) into a new cluster, the log's `tx_id`s come from the old
/// cluster and may be ahead of this one's transaction counter; new events
/// would sort before old ones and gap-safe readers would wait for ever. This
/// rewrites them, keeping the log's order exactly, to small values below the
/// counter: consecutive events whose positions keep increasing share one
/// value (within one value readers order by position), and a new value
/// starts wherever the order and the positions disagree (a transaction that
/// committed after one that numbered later). Subscription checkpoints are
/// moved with their events. The chain is untouched (it does not cover
/// `tx_id`), so `paca events verify` still holds.
pub async fn renumber(store: &EventStore) -> Result<()> {
    let pool = store.pool();
    let mut tx = pool.begin().await?;
    // Nothing may append meanwhile (the server must be stopped; this makes
    // sure of it).
    sqlx::query("LOCK TABLE events, streams, checkpoints IN EXCLUSIVE MODE NOWAIT")
        .execute(&mut *tx)
        .await
        .context("the log is in use: stop every server on this database first")?;
    // An idle server holds no table lock, but its subscriptions hold their
    // advisory locks as long as it runs.
    let servers: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT l.pid) FROM pg_locks l
         JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND d.datname = current_database()
           AND l.pid <> pg_backend_pid()",
    )
    .fetch_one(&mut *tx)
    .await?;
    if servers > 0 {
        bail!(
            "a server is running on this database ({servers} session(s) hold subscription locks): \
             stop every server on this database first"
        );
    }
    sqlx::query(
        "CREATE TEMP TABLE renumbered ON COMMIT DROP AS
         WITH ordered AS (
             SELECT global_position,
                    global_position < COALESCE(MAX(global_position) OVER (
                        ORDER BY tx_id, global_position
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS breaks,
                    tx_id, row_number() OVER (ORDER BY tx_id, global_position) AS n
             FROM events)
         SELECT global_position,
                SUM(breaks::int) OVER (ORDER BY n) AS run
         FROM ordered",
    )
    .execute(&mut *tx)
    .await?;
    let runs: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(run), -1) + 1 FROM renumbered")
        .fetch_one(&mut *tx)
        .await?;
    if runs == 0 {
        println!("the log is empty: nothing to renumber");
        return Ok(());
    }
    // Values from 3 (the first normal transaction id) up; they must stay
    // below every transaction this cluster will run, ours included.
    let current: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *tx)
        .await?;
    let base = 3i64;
    if base + runs >= current {
        bail!(
            "the log needs {runs} ordered transaction ids but this cluster is only at {current}; \
             advance it first (e.g. `SELECT pg_current_xact_id()` in {} separate transactions) \
             or use `paca events export` / `import`, which needs no renumbering",
            base + runs - current + 1
        );
    }
    let moved = sqlx::query(
        "UPDATE events e SET tx_id = ($1 + r.run)::text::xid8
         FROM renumbered r WHERE r.global_position = e.global_position
           AND e.tx_id <> ($1 + r.run)::text::xid8",
    )
    .bind(base)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE checkpoints c SET last_tx = e.tx_id::text::bigint
         FROM events e WHERE e.global_position = c.last_pos AND c.last_pos > 0",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE projection_state p SET last_tx = e.tx_id::text::bigint
         FROM events e WHERE e.global_position = p.last_pos AND p.last_pos > 0",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    println!(
        "renumbered {moved} event(s) into {runs} ordered transaction id(s) below this cluster's \
         counter ({current}); the log's order is unchanged"
    );
    Ok(())
}
