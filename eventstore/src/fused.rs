//! The fused append: a decided command's whole write in one round trip.
//!
//! The transactional append ([`crate::AppendTx`]) costs a round trip per
//! step: `BEGIN`, the stream lock, the append, one per projector statement,
//! `COMMIT`. When the caller already knows the stream's version (an
//! aggregate cache, or a load) and every inline projector can render its
//! row changes as SQL text, all of it can go to the server as one
//! multi-statement simple query, which PostgreSQL runs as one implicit
//! transaction: it commits if every statement succeeds and rolls back
//! entirely on the first error. So the guarantees are those of the
//! transactional path:
//!
//! - **Version check.** The stream row is updated from exactly `expected`
//!   (or, at 0, inserted: a stream that exists fails its primary key) by
//!   the `claim_stream` function, which raises when no row was updated
//!   (another append got there first, after waiting for it to finish; or
//!   `expected` is ahead, which would leave a gap); the events are then
//!   inserted with versions `expected + 1 ..` under `UNIQUE (stream_id,
//!   version)`. The batch rolls back and the caller gets
//!   [`AppendError::VersionConflict`] to reload and retry.
//! - **Guards.** Other streams the decision read (a task command reads its
//!   project's configuration and members) are checked, in the same call,
//!   to still be at the versions the decision saw, and stay share-locked
//!   until the commit; if one moved, [`AppendError::GuardMoved`].
//! - **Projectors** run in the same transaction; a failing statement fails
//!   the append.
//! - **Timestamps.** The projectors render the events before they exist,
//!   so `recorded_at` is a per-call random sentinel in their statements,
//!   replaced by `now()`, the implicit transaction's start time, which is
//!   also the events' `recorded_at` (the column default): live rows and a
//!   replay agree exactly.
//!
//! Literals are rendered by [`crate::stmt`], in a form that reads the same
//! under either `standard_conforming_strings`.
//!
//! **Prepared statements.** The batch's own statements and those of the
//! projectors that give [`crate::InlineProjector::statements`] are sent as
//! `EXECUTE`s of SQL-level prepared statements
//! ([`crate::stmt::Stmt::render_execute`]): PostgreSQL then reuses each
//! statement's analysis and generic plan instead of parsing, analysing and
//! planning every literal statement anew. A connection that lacks one
//! fails the batch with SQLSTATE 26000 before anything commits; the batch
//! runs again after one `prepare_statements` call on the same connection.
//!
//! **One statement.** When an append's writes are single-row and on
//! different rows (a task `PATCH`, a comment), the whole append is one
//! statement of data-modifying CTEs with bound parameters instead
//! ([`OneStatement`]): PostgreSQL binds values instead of parsing them,
//! which costs it about two thirds of the `EXECUTE` batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::stmt::{Arg, Prepared, Stmt};
use crate::{
    AppendError, AppendResult, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamRef,
};

/// SQLSTATE raised by `claim_stream` (see the migration that defines it)
/// for a guard that moved or a stream not at the expected version; the
/// message names the stream.
const GUARD_SQLSTATE: &str = "PX409";
const VERSION_KEY: &str = "events_stream_id_version_key";
const STREAM_KEY: &str = "streams_pkey";

impl EventStore {
    /// Appends `events` to a stream known to be at `expected` (0: the
    /// stream is created, and must not exist), with every inline
    /// projector's statements, in one round trip. `guards` are
    /// `(stream, version)` pairs that must still hold.
    ///
    /// `Ok(None)`: some projector cannot render these events; nothing was
    /// sent, use the transactional path.
    pub async fn append_fused(
        &self,
        stream: StreamRef<'_>,
        expected: i64,
        events: Vec<NewEvent>,
        guards: &[(Uuid, i64)],
    ) -> Result<Option<AppendResult>, AppendError> {
        let append = FusedAppend::new(stream, expected, events, guards.to_vec());
        Ok(self
            .append_fused_all(vec![append])
            .await?
            .and_then(|mut results| results.pop())
            .map(|(result, _)| result))
    }

    /// One [`FusedAppend`] (with its prelude and read), and the rows of its
    /// read.
    pub async fn append_fused_one(
        &self,
        append: FusedAppend<'_>,
    ) -> Result<Option<(AppendResult, Vec<PgRow>)>, AppendError> {
        Ok(self
            .append_fused_all(vec![append])
            .await?
            .and_then(|mut results| results.pop()))
    }

    /// Several fused appends (to different streams) in one round trip and
    /// one implicit transaction: all commit or none does. The results are
    /// in the order of `appends`, each with the rows its
    /// [`FusedAppend::read`] returned. A failure is classified against the
    /// first append; with several, the caller cannot tell which one failed
    /// and retries them one by one. `Ok(None)`: some projector cannot
    /// render one of them; nothing was sent.
    pub async fn append_fused_all(
        &self,
        appends: Vec<FusedAppend<'_>>,
    ) -> Result<Option<Vec<(AppendResult, Vec<PgRow>)>>, AppendError> {
        let Some(first) = appends.first() else {
            return Ok(Some(Vec::new()));
        };
        if let [append] = appends.as_slice()
            && let Some(one) = self.one_statement(append)?
        {
            return Ok(Some(vec![self.run_one_statement(append, one).await?]));
        }
        let mut sql = String::new();
        let mut used = Some(Vec::new());
        let mut rendered = Vec::with_capacity(appends.len());
        for (i, append) in appends.iter().enumerate() {
            match self.render_fused(append, i, &mut used, &mut sql)? {
                Some(provisional) => rendered.push((append.expected, provisional)),
                None => {
                    self.declined();
                    return Ok(None);
                }
            }
        }

        let used = used.unwrap_or_default();
        let mut conn = self.pool().acquire().await?;
        let mut result = run_batch(&mut conn, &sql).await;
        if let Err(error) = &result
            && let Some(replace) = missing_prepared(error)
            && !used.is_empty()
        {
            // Nothing ran (the batch is one implicit transaction): give
            // this connection the statements and run it again.
            let prepared = prepare(&mut conn, &used, replace).await;
            if prepared.is_ok() {
                result = run_batch(&mut conn, &sql).await;
            }
            let missing = result.as_ref().err().and_then(missing_prepared).is_some();
            if prepared.is_err() || missing {
                // Still missing, or not preparable: the statements went to
                // another session than the batch (a pooler between us and
                // PostgreSQL that hands out server connections per
                // transaction), say. The same batch with literals needs no
                // session state.
                let mut literal = String::new();
                let mut complete = true;
                for (i, append) in appends.iter().enumerate() {
                    complete &= self
                        .render_fused(append, i, &mut None, &mut literal)?
                        .is_some();
                }
                if complete {
                    result = run_batch(&mut conn, &literal).await;
                }
            }
        }
        drop(conn);
        let statements = match result {
            Ok(statements) => statements,
            Err(error) => {
                return Err(classify(error, first.stream, first.expected, &first.guards));
            }
        };
        let mut reads: Vec<Vec<PgRow>> = rendered.iter().map(|_| Vec::new()).collect();
        let mut rows = Vec::new();
        let mut statements = statements.into_iter();
        while let Some(group) = statements.next() {
            let marker = group
                .first()
                .and_then(|row| row.try_get::<i32, _>(READ_MARKER).ok());
            match marker {
                Some(i) => {
                    if let (Some(read), Some(group)) =
                        (reads.get_mut(i as usize), statements.next())
                    {
                        *read = group;
                    }
                }
                None => rows.extend(group),
            }
        }

        let mut stored = rows
            .iter()
            .filter(|row| row.try_column("global_position").is_ok())
            .map(|row| {
                (
                    row.get::<Uuid, _>("event_id"),
                    (
                        row.get::<i64, _>("global_position"),
                        row.get::<i64, _>("tx_id"),
                        row.get::<DateTime<Utc>, _>("recorded_at"),
                    ),
                )
            })
            .collect::<Stored>();
        let mut results = Vec::with_capacity(rendered.len());
        for ((expected, recorded), read) in rendered.into_iter().zip(reads) {
            results.push((self.committed(expected, recorded, &mut stored), read));
        }
        Ok(Some(results))
    }

    /// The result of an append that committed: its events with the
    /// positions, transaction and time the database gave them.
    fn committed(
        &self,
        expected: i64,
        mut recorded: Vec<RecordedEvent>,
        stored: &mut Stored,
    ) -> AppendResult {
        for event in &mut recorded {
            if let Some((position, tx_id, at)) = stored.remove(&event.event_id) {
                event.global_position = position;
                event.tx_id = tx_id;
                event.recorded_at = at;
            }
        }
        self.stats().fused.fetch_add(1, Ordering::Relaxed);
        self.after_commit(&recorded);
        AppendResult {
            stream_version: expected + recorded.len() as i64,
            events: recorded,
            idempotent: false,
        }
    }

    /// The events as they will be stored, their positions and times still
    /// to come (`recorded_at` is `sentinel`).
    fn provisional(append: &FusedAppend<'_>, sentinel: DateTime<Utc>) -> Vec<RecordedEvent> {
        let stream = append.stream;
        append
            .events
            .iter()
            .zip(1..)
            .map(|(event, i)| RecordedEvent {
                global_position: 0,
                tx_id: 0,
                stream_type: stream.stream_type.to_owned(),
                stream_id: stream.stream_id,
                version: append.expected + i,
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                project_id: stream.project_id,
                payload: event.payload.clone(),
                metadata: serde_json::to_value(&event.metadata).unwrap_or_default(),
                recorded_at: sentinel,
            })
            .collect()
    }

    /// `append` as one statement of data-modifying CTEs, when its shape
    /// allows (see [`OneStatement`]); `None` sends it as a batch.
    fn one_statement(&self, append: &FusedAppend<'_>) -> Result<Option<OneStatement>, AppendError> {
        let FusedAppend {
            stream,
            expected,
            events,
            guards,
            prelude,
            read,
        } = append;
        let read = match read {
            Some(read) => match simple_read(read) {
                Some(read) => Some(read),
                None => return Ok(None),
            },
            None => None,
        };
        if events.is_empty() || *expected < 0 || !prelude.is_empty() {
            return Ok(None);
        }
        let sentinel = sentinel();
        let provisional = Self::provisional(append, sentinel);
        let mut writes = Vec::new();
        for projector in self.projectors() {
            match projector.statements(&provisional) {
                Some(Ok(stmts)) => writes.extend(stmts),
                Some(Err(source)) => {
                    return Err(AppendError::Projector {
                        projector: projector.name().to_owned(),
                        source,
                    });
                }
                None => return Ok(None),
            }
        }
        // Every write one row, no two on the same row, none reading
        // another row: then running them side by side (a statement's CTEs
        // see none of each other's changes) is running them in order.
        let mut targets = Vec::with_capacity(writes.len());
        let mut keys = std::collections::HashSet::new();
        for write in &writes {
            let Some(target) = write.single_row_write() else {
                return Ok(None);
            };
            if write.keys.is_empty() || !write.keys.iter().all(|key| keys.insert(key.as_str())) {
                return Ok(None);
            }
            targets.push(target);
        }
        // The sentinel inside a value (a time formatted into JSON, say)
        // cannot become `now()`.
        let day = sentinel.format("1001-%m-%d").to_string();
        let holds_sentinel = |arg: &Arg| match arg {
            Arg::Text(Some(text)) => text.contains(&day),
            Arg::Json(Some(json)) => json.to_string().contains(&day),
            _ => false,
        };
        if writes.iter().flat_map(|w| &w.args).any(holds_sentinel) {
            return Ok(None);
        }
        // The read sees the row as this statement leaves it only through
        // the `RETURNING` of the write that updates or inserts it; a table
        // written any other way, or joined, would be read as it was.
        let mut returning = None;
        if let Some(read) = &read {
            if targets.iter().any(|(table, _)| read.joined.contains(table)) {
                return Ok(None);
            }
            let mut writing = (0..writes.len()).filter(|&i| targets[i].0 == read.table);
            match (writing.next(), writing.next()) {
                (None, _) => {}
                (Some(i), None)
                    if targets[i].1
                        && matches!(writes[i].args.first(), Some(Arg::Uuid(Some(id))) if *id == read.id) =>
                {
                    returning = Some(i)
                }
                _ => return Ok(None),
            }
        }

        let mut sql = String::from("WITH paca_claim AS (");
        let mut params = Vec::new();
        let count = events.len() as i64;
        let mut fits = claim(Some(*stream), *expected, count, guards).renumber_into(
            &mut params,
            sentinel,
            &mut sql,
        );
        // The insert reads the claim's CTE, so the claim (the stream's row
        // lock, then the guards' share locks) runs first, as in a batch.
        sql.push_str("), paca_events AS (INSERT INTO events (");
        sql.push_str(EVENT_COLUMNS);
        sql.push_str(") SELECT v.* FROM (VALUES ");
        fits &= event_values(*stream, events, &provisional).renumber_into(
            &mut params,
            sentinel,
            &mut sql,
        );
        sql.push_str(
            ") AS v CROSS JOIN paca_claim RETURNING global_position, \
             tx_id::text::bigint AS tx_id, event_id, recorded_at)",
        );
        for (i, write) in writes.iter().enumerate() {
            sql.push_str(&format!(", paca_write_{i} AS ("));
            fits &= write.renumber_into(&mut params, sentinel, &mut sql);
            if returning == Some(i) {
                sql.push_str(" RETURNING *");
            }
            sql.push(')');
        }
        // One row: the events' positions (aggregated, so it exists whatever
        // the read finds), then the read's row if there is one. The read is
        // lateral to the events so it runs after the insert: the row locks
        // are taken in the batch's order (stream first), never the reverse.
        sql.push_str(
            " SELECT e.*, r.* FROM (SELECT array_agg(event_id) AS paca_event_ids, \
             array_agg(global_position) AS paca_positions, array_agg(tx_id) AS paca_tx_ids, \
             array_agg(recorded_at) AS paca_recorded_at FROM paca_events) e",
        );
        match &read {
            Some(read) => {
                let source =
                    returning.map_or_else(|| read.table.clone(), |i| format!("paca_write_{i}"));
                params.push(Arg::Uuid(Some(read.id)));
                sql.push_str(&format!(
                    " LEFT JOIN LATERAL (SELECT true AS paca_read, {} FROM {source} AS {}{} \
                     WHERE {}.id = ${} AND e.paca_event_ids IS NOT NULL) r ON true",
                    read.columns,
                    read.alias,
                    read.joins,
                    read.alias,
                    params.len()
                ));
            }
            None => {
                sql.push_str(" LEFT JOIN LATERAL (SELECT NULL::boolean AS paca_read) r ON true")
            }
        }
        Ok(fits.then_some(OneStatement {
            sql,
            params,
            provisional,
        }))
    }

    async fn run_one_statement(
        &self,
        append: &FusedAppend<'_>,
        one: OneStatement,
    ) -> Result<(AppendResult, Vec<PgRow>), AppendError> {
        let OneStatement {
            sql,
            params,
            provisional,
        } = one;
        let query = params
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), crate::stmt::bind);
        let row = query
            .fetch_one(self.pool())
            .await
            .map_err(|error| classify(error, append.stream, append.expected, &append.guards))?;
        let ids: Vec<Uuid> = row.try_get("paca_event_ids")?;
        let positions: Vec<i64> = row.try_get("paca_positions")?;
        let tx_ids: Vec<i64> = row.try_get("paca_tx_ids")?;
        let times: Vec<DateTime<Utc>> = row.try_get("paca_recorded_at")?;
        let mut stored: Stored = ids
            .into_iter()
            .zip(positions.into_iter().zip(tx_ids).zip(times))
            .map(|(id, ((position, tx_id), at))| (id, (position, tx_id, at)))
            .collect();
        let read = row
            .try_get::<Option<bool>, _>("paca_read")?
            .unwrap_or(false);
        self.stats()
            .fused_one_statement
            .fetch_add(1, Ordering::Relaxed);
        let result = self.committed(append.expected, provisional, &mut stored);
        Ok((result, if read { vec![row] } else { Vec::new() }))
    }

    /// Appends one fused append's statements to `sql` and returns its
    /// events as they will be stored (positions and times still to come);
    /// `None` when a projector cannot render them.
    fn render_fused(
        &self,
        append: &FusedAppend<'_>,
        index: usize,
        used: &mut Option<Vec<Arc<Prepared>>>,
        sql: &mut String,
    ) -> Result<Option<Vec<RecordedEvent>>, AppendError> {
        let FusedAppend {
            stream,
            expected,
            events,
            guards,
            prelude,
            read,
        } = append;
        let (stream, expected) = (*stream, *expected);
        if events.is_empty() || expected < 0 {
            return Ok(None);
        }
        // A random instant in year 1001 stands for `now()` in the rendered
        // statements; nothing a client sends can predict it.
        let sentinel = sentinel();
        let provisional = Self::provisional(append, sentinel);
        let mut projected = String::new();
        for projector in self.projectors() {
            let failed = |source| AppendError::Projector {
                projector: projector.name().to_owned(),
                source,
            };
            match projector.statements(&provisional) {
                Some(Ok(stmts)) => stmts
                    .iter()
                    .for_each(|stmt| stmt.render_execute(used.as_mut(), &mut projected)),
                Some(Err(source)) => return Err(failed(source)),
                None => match projector.render(&provisional) {
                    None => return Ok(None),
                    Some(Ok(sql)) => projected.push_str(&sql),
                    Some(Err(source)) => return Err(failed(source)),
                },
            }
        }
        let mut stamp = String::new();
        Stmt::new("$1").arg(sentinel).render(&mut stamp);
        let stamp = stamp.trim_end_matches(";\n");
        let projected = projected.replace(stamp, "now()");
        if projected.contains(&sentinel.format("1001-%m-%d").to_string()) {
            // The sentinel ended up inside a value (a timestamp formatted
            // into JSON, say), where it cannot be replaced.
            return Ok(None);
        }

        let count = events.len() as i64;
        // Guards first, then the caller's prelude, then the stream itself:
        // the order the locks are taken in stays the one the transactional
        // path takes them in.
        if prelude.is_empty() {
            render_claim(sql, used, Some(stream), expected, count, guards);
        } else {
            if !guards.is_empty() {
                render_claim(sql, used, None, 0, 0, guards);
            }
            sql.push_str(prelude);
            render_claim(sql, used, Some(stream), expected, count, &[]);
        }
        let mut insert = event_values(stream, events, &provisional);
        insert.sql = format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES {} RETURNING global_position, \
             tx_id::text::bigint AS tx_id, version, event_id, recorded_at",
            insert.sql
        );
        insert.render_execute(used.as_mut(), sql);
        sql.push_str(&projected);
        if let Some(read) = read {
            sql.push_str(&format!("SELECT {index} AS {READ_MARKER};\n"));
            read.render_execute(used.as_mut(), sql);
        }
        Ok(Some(provisional))
    }
}

/// `SELECT claim_stream(..)` (see its migration): the guards checked in
/// order, then `stream` moved from `expected` to `expected + count`, or a
/// PX409 naming whichever did not hold.
fn render_claim(
    sql: &mut String,
    used: &mut Option<Vec<Arc<Prepared>>>,
    stream: Option<StreamRef<'_>>,
    expected: i64,
    count: i64,
    guards: &[(Uuid, i64)],
) {
    claim(stream, expected, count, guards).render_execute(used.as_mut(), sql);
}

fn claim(stream: Option<StreamRef<'_>>, expected: i64, count: i64, guards: &[(Uuid, i64)]) -> Stmt {
    let placeholders = |first: usize| {
        (0..guards.len())
            .map(|i| format!("${}", first + 2 * i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let template = format!(
        "SELECT claim_stream($1, $2, $3, $4, ARRAY[{}]::uuid[], ARRAY[{}]::bigint[])",
        placeholders(5),
        placeholders(6)
    );
    let mut stmt = Stmt::new(template)
        .arg(stream.map(|s| s.stream_id))
        .arg(stream.map(|s| s.stream_type.to_owned()))
        .arg(expected)
        .arg(count);
    for (stream_id, version) in guards {
        stmt = stmt.arg(*stream_id).arg(*version);
    }
    stmt
}

const EVENT_COLUMNS: &str = "stream_type, stream_id, project_id, version, event_id, event_type, \
                             schema_version, payload, metadata";

/// The events' rows for [`EVENT_COLUMNS`]: `($1, …, $9), ($10, …)`.
fn event_values(stream: StreamRef<'_>, events: &[NewEvent], provisional: &[RecordedEvent]) -> Stmt {
    let mut tuples = String::new();
    for i in 0..events.len() {
        if i > 0 {
            tuples.push_str(", ");
        }
        tuples.push('(');
        for column in 1..=9 {
            if column > 1 {
                tuples.push_str(", ");
            }
            tuples.push_str(&format!("${}", 9 * i + column));
        }
        tuples.push(')');
    }
    let mut values = Stmt::new(tuples);
    for (event, recorded) in events.iter().zip(provisional) {
        values = values
            .arg(stream.stream_type.to_owned())
            .arg(stream.stream_id)
            .arg(stream.project_id)
            .arg(recorded.version)
            .arg(event.event_id)
            .arg(event.event_type.clone())
            .arg(Arg::Int(Some(i64::from(event.schema_version))))
            .arg(event.payload.clone())
            .arg(recorded.metadata.clone());
    }
    values
}

/// Events' stored positions, transaction ids and times, by event id.
type Stored = std::collections::HashMap<Uuid, (i64, i64, DateTime<Utc>)>;

/// An append sent as one statement of data-modifying CTEs, with bound
/// parameters: the claim, the events' insert, each projector write, and
/// the response read from the write's `RETURNING`. PostgreSQL parses and
/// plans it once per connection (sqlx keeps it prepared) and each append
/// only binds values, where the batch's `EXECUTE`s still parse their
/// arguments as SQL: 209 against 330 µs of PostgreSQL CPU per `PATCH`
/// (bench/pgbench/fused-protocol.sh, docs/performance.md). It is taken
/// only when that is the same as the batch: one append without prelude,
/// projectors that give [`crate::InlineProjector::statements`], each one
/// a single-row write reading no other row, no two on the same row, and a
/// read (if any) of one row by id from a table written at most by one
/// `UPDATE` of that row.
struct OneStatement {
    sql: String,
    params: Vec<Arg>,
    provisional: Vec<RecordedEvent>,
}

/// A read of one row by its id: `SELECT columns FROM table WHERE id = $1`,
/// or `SELECT columns FROM table [AS] alias LEFT JOIN … WHERE alias.id =
/// $1` (the response of a write with names from other tables, say),
/// nothing else (no subquery, no other parameter, no other filter).
#[derive(Debug, PartialEq)]
struct SimpleRead {
    columns: String,
    table: String,
    /// What the columns call the table (its name when not aliased).
    alias: String,
    /// The `LEFT JOIN …` clauses, each with a leading space.
    joins: String,
    /// The tables the joins read.
    joined: Vec<String>,
    id: Uuid,
}

fn simple_read(read: &Stmt) -> Option<SimpleRead> {
    let [Arg::Uuid(Some(id))] = read.args.as_slice() else {
        return None;
    };
    let sql = crate::stmt::normalized(&read.sql);
    let body = sql.strip_prefix("SELECT ")?;
    let (columns, rest) = body.rsplit_once(" FROM ")?;
    let (from, condition) = rest.rsplit_once(" WHERE ")?;
    let identifier = |name: &str| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    // The statement's own aliases for the events and the read (`e`, `r`)
    // must not be shadowed; a `$` would be a parameter it does not bind.
    let clashes = rest
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word.eq_ignore_ascii_case("e") || word.eq_ignore_ascii_case("r"));
    let parameters = columns.contains('$') || from.contains('$');
    let subquery = body.to_ascii_uppercase().contains("SELECT");
    if clashes || parameters || subquery || sql.contains(';') {
        return None;
    }
    let mut clauses = from.split(" LEFT JOIN ");
    let (table, alias) = match clauses.next()?.split(' ').collect::<Vec<_>>().as_slice() {
        [table] => (*table, *table),
        [table, alias] | [table, "AS" | "as", alias] => (*table, *alias),
        _ => return None,
    };
    let mut joined = Vec::new();
    for clause in clauses {
        let (name, on) = clause.split_once(' ')?;
        if on.to_ascii_uppercase().contains(" JOIN ") || name.eq_ignore_ascii_case("LATERAL") {
            return None;
        }
        joined.push(name.to_owned());
    }
    let by_id =
        condition == format!("{alias}.id = $1") || joined.is_empty() && condition == "id = $1";
    if !by_id || !identifier(table) || !identifier(alias) || !joined.iter().all(|t| identifier(t)) {
        return None;
    }
    Some(SimpleRead {
        columns: columns.to_owned(),
        table: table.to_owned(),
        alias: alias.to_owned(),
        joins: from
            .find(" LEFT JOIN ")
            .map_or_else(String::new, |at| from[at..].to_owned()),
        joined,
        id: *id,
    })
}

/// Runs a fused batch; its rows grouped by statement (a read's rows are
/// the group after its marker's).
async fn run_batch(conn: &mut PgConnection, sql: &str) -> Result<Vec<Vec<PgRow>>, sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_many(conn)
        .try_fold(vec![Vec::new()], |mut groups, step| async move {
            match step {
                sqlx::Either::Left(_) => groups.push(Vec::new()),
                sqlx::Either::Right(row) => groups.last_mut().unwrap_or(&mut Vec::new()).push(row),
            }
            Ok(groups)
        })
        .await
}

/// `Some(replace)` when a batch failed because the connection lacks one
/// of its prepared statements (SQLSTATE 26000: not prepared yet on this
/// connection) or holds one whose tables changed shape since (0A000
/// "cached plan must not change result type": prepare it again; the
/// class holds other errors, which are the batch's own).
fn missing_prepared(error: &sqlx::Error) -> Option<bool> {
    let error = error.as_database_error()?;
    match error.code()?.as_ref() {
        "26000" => Some(false),
        "0A000" if error.message().contains("cached plan") => Some(true),
        _ => None,
    }
}

/// Prepares on `conn` those of `used` it lacks (`replace`: all of them,
/// anew), in one call (`prepare_statements`, see its migration).
async fn prepare(
    conn: &mut PgConnection,
    used: &[Arc<Prepared>],
    replace: bool,
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = used.iter().map(|p| p.name.as_str()).collect();
    let statements: Vec<&str> = used.iter().map(|p| p.statement.as_str()).collect();
    sqlx::query("SELECT prepare_statements($1, $2, $3)")
        .bind(names)
        .bind(statements)
        .bind(replace)
        .execute(conn)
        .await?;
    Ok(())
}

/// One stream's part of [`EventStore::append_fused_all`]: its events at
/// `expected` (0: the stream is created), the `(stream, version)` guards
/// its decision read, and the caller's statements to run first.
pub struct FusedAppend<'a> {
    pub stream: StreamRef<'a>,
    pub expected: i64,
    pub events: Vec<NewEvent>,
    pub guards: Vec<(Uuid, i64)>,
    /// Statements run before the append ([`crate::stmt::Stmt`]-rendered):
    /// write-side state the decision depends on, such as a counter moved
    /// to the value decided from. One that finds its state moved raises
    /// SQLSTATE `PX409`; the append then fails with
    /// [`AppendError::GuardMoved`] and the caller reloads and decides again.
    pub prelude: String,
    /// One statement run after the projectors, in the same transaction,
    /// whose rows come back with the result: the caller's response read
    /// (the projected row) without a second round trip, sent like the
    /// batch's other statements (an `EXECUTE` when it can be prepared).
    /// Its rows are in the text format of the simple-query protocol, or,
    /// when the append goes as one statement of CTEs (see the module),
    /// the one row of that statement (binary, with its own `paca_*`
    /// columns besides the read's): decode them by column name. It is
    /// part of the transaction: a read that fails fails the append, so it
    /// must be a plain `SELECT` the caller owns. In one statement it sees
    /// the row it reads as the append leaves it and every other table as
    /// it was, so it must not call a function that reads what the append
    /// writes.
    pub read: Option<Stmt>,
}

impl<'a> FusedAppend<'a> {
    pub fn new(
        stream: StreamRef<'a>,
        expected: i64,
        events: Vec<NewEvent>,
        guards: Vec<(Uuid, i64)>,
    ) -> Self {
        FusedAppend {
            stream,
            expected,
            events,
            guards,
            prelude: String::new(),
            read: None,
        }
    }
}

/// The column of the statement that announces a [`FusedAppend::read`]'s
/// rows (its value is the append's index).
const READ_MARKER: &str = "paca_fused_read";

impl EventStore {
    fn declined(&self) {
        self.stats().fused_declined.fetch_add(1, Ordering::Relaxed);
    }
}

fn sentinel() -> DateTime<Utc> {
    let micros = (Uuid::new_v4().as_u128() % (364 * 86_400 * 1_000_000)) as i64;
    Utc.with_ymd_and_hms(1001, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::microseconds(micros)
}

fn classify(
    error: sqlx::Error,
    stream: StreamRef<'_>,
    expected: i64,
    guards: &[(Uuid, i64)],
) -> AppendError {
    if let sqlx::Error::Database(db) = &error {
        if db.constraint() == Some(STREAM_KEY) {
            return AppendError::VersionConflict {
                stream_id: stream.stream_id,
                expected: ExpectedVersion::NoStream,
                actual: None,
            };
        }
        if db.constraint() == Some(VERSION_KEY) {
            return AppendError::VersionConflict {
                stream_id: stream.stream_id,
                expected: ExpectedVersion::Exact(expected),
                actual: None,
            };
        }
        if db.code().as_deref() == Some(GUARD_SQLSTATE) {
            if db.message().contains(&stream.stream_id.to_string()) {
                return AppendError::VersionConflict {
                    stream_id: stream.stream_id,
                    expected: ExpectedVersion::Exact(expected),
                    actual: None,
                };
            }
            let moved = guards
                .iter()
                .map(|(id, _)| *id)
                .find(|id| db.message().contains(&id.to_string()))
                .unwrap_or_default();
            return AppendError::GuardMoved { stream_id: moved };
        }
    }
    AppendError::Database(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> Option<SimpleRead> {
        simple_read(&Stmt::new(sql).arg(Uuid::nil()))
    }

    #[test]
    fn a_read_by_id_names_its_table_alias_and_joins() {
        let plain = read("SELECT a, b FROM t WHERE id = $1").expect("plain");
        assert_eq!(
            (
                plain.columns.as_str(),
                plain.table.as_str(),
                plain.alias.as_str()
            ),
            ("a, b", "t", "t")
        );
        assert!(plain.joins.is_empty() && plain.joined.is_empty());

        let joined = read(
            "SELECT x.a, COALESCE(u.name, '') AS name
               FROM t x
               LEFT JOIN users u ON u.id = x.user_id
               LEFT JOIN members m ON m.project_id = x.project_id AND m.user_id = x.user_id
              WHERE x.id = $1",
        )
        .expect("joined");
        assert_eq!((joined.table.as_str(), joined.alias.as_str()), ("t", "x"));
        assert_eq!(joined.joined, ["users", "members"]);
        assert_eq!(
            joined.joins,
            " LEFT JOIN users u ON u.id = x.user_id LEFT JOIN members m ON \
             m.project_id = x.project_id AND m.user_id = x.user_id"
        );
        assert!(read("SELECT x.a FROM t AS x WHERE x.id = $1").is_some());
        // Unambiguous without joins.
        assert!(read("SELECT x.a FROM t x WHERE id = $1").is_some());
    }

    #[test]
    fn anything_else_is_not_a_simple_read() {
        for sql in [
            "SELECT a FROM t WHERE id = $1 AND b = 2",
            "SELECT a FROM t WHERE id = $2",
            "SELECT x.a FROM t x LEFT JOIN u ON u.id = x.u WHERE id = $1",
            "SELECT x.a FROM t x JOIN u ON u.id = x.u WHERE x.id = $1",
            "SELECT x.a FROM t x LEFT JOIN u ON u.id = x.u JOIN v ON true WHERE x.id = $1",
            "SELECT (SELECT 1 FROM u) FROM t WHERE id = $1",
            "SELECT a FROM t WHERE id = $1; SELECT 1 FROM t WHERE id = $1",
            "SELECT e.a FROM t e WHERE e.id = $1",
            "SELECT x.a FROM t x LEFT JOIN u r ON r.id = x.u WHERE x.id = $1",
            "SELECT x.a FROM t x LEFT JOIN LATERAL f(x.u) g ON true WHERE x.id = $1",
            "SELECT a FROM t x y WHERE x.id = $1",
            "SELECT a FROM \"t\" WHERE id = $1",
        ] {
            assert_eq!(read(sql), None, "{sql}");
        }
        let two = Stmt::new("SELECT a FROM t WHERE id = $1")
            .arg(Uuid::nil())
            .arg(Uuid::nil());
        assert_eq!(simple_read(&two), None);
    }
}
