//! SQL statements produced by the projector, executed two ways:
//!
//! - live (inside an append): one prepared statement per row change, with
//!   bound parameters;
//! - replay (rebuild/verify): a whole batch rendered into one multi-statement
//!   string and sent in a single round trip. Per-event round trips capped a
//!   rebuild at ~9.7k events/s on a 2-core machine; batching removes them;
//! - the fused append (`crate::fused`): a command's events and its
//!   projector statements rendered into one string, one round trip per
//!   write, each statement as an `EXECUTE` of a SQL-level prepared
//!   statement with literal arguments ([`Stmt::render_execute`]).
//!
//! Rendering only ever produces typed literals: uuids, booleans and
//! timestamps from their canonical forms, and strings/JSON as
//! single-quoted literals with quotes doubled, or, when the text holds a
//! backslash, escape strings (`E'…'`) with backslashes doubled too: both
//! read the same under either `standard_conforming_strings`, so no batch
//! depends on a session setting.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Bool(Option<bool>),
    Int(Option<i64>),
    Float(Option<f64>),
    Ts(Option<DateTime<Utc>>),
    Json(Option<Value>),
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Uuid(Some(v))
    }
}
impl From<Option<Uuid>> for Arg {
    fn from(v: Option<Uuid>) -> Self {
        Arg::Uuid(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(Some(v))
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Float(Some(v))
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Ts(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::Ts(v)
    }
}
impl From<Value> for Arg {
    fn from(v: Value) -> Self {
        Arg::Json(Some(v))
    }
}
impl From<Option<Value>> for Arg {
    fn from(v: Option<Value>) -> Self {
        Arg::Json(v)
    }
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Arg>,
    /// The rows (and unique keys) this statement touches, e.g.
    /// `users:<id>`. Replays may reorder statements with disjoint keys; a
    /// statement without keys is a barrier nothing moves across.
    pub keys: Vec<String>,
}

impl Stmt {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
            keys: Vec::new(),
        }
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Adds the row key `table:<$1>` for statements whose first parameter
    /// is the row's primary key (every INSERT, and `… WHERE id = $1`).
    pub fn with_row_key(mut self) -> Self {
        let sql = normalized(&self.sql);
        let table = match shape(&sql) {
            Some(Shape::Insert { head, .. }) => head
                .strip_prefix("INSERT INTO ")
                .and_then(|h| h.split(' ').next())
                .map(str::to_owned),
            Some(Shape::Update { table, .. }) | Some(Shape::Delete { table }) => {
                Some(table.to_owned())
            }
            None => None,
        };
        if let (Some(table), Some(Arg::Uuid(Some(id)))) = (table, self.args.first()) {
            self.keys.push(format!("{table}:{id}"));
        }
        self
    }

    pub fn arg(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the statement with bound parameters.
    pub async fn execute(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let query = sqlx::query(sqlx::AssertSqlSafe(self.sql.clone()));
        self.args.iter().fold(query, bind).execute(conn).await?;
        Ok(())
    }

    /// The table this statement writes one row of, when it is one plain
    /// `INSERT INTO t (…) VALUES (…)`, `UPDATE t SET … WHERE id = $1` or
    /// `DELETE FROM t WHERE id = $1` that reads no other row (no
    /// subquery); with `true` when the row whose `id` is `$1` is there
    /// afterwards and is what the statement's `RETURNING *` gives: the
    /// `UPDATE`, and an `INSERT INTO t (id, …) VALUES ($1, …)`. `None` for
    /// anything else.
    pub(crate) fn single_row_write(&self) -> Option<(String, bool)> {
        let sql = normalized(&self.sql);
        let subquery = sql
            .as_bytes()
            .windows(6)
            .any(|w| w.eq_ignore_ascii_case(b"SELECT"));
        if subquery || sql.contains(';') {
            return None;
        }
        match shape(&sql)? {
            Shape::Insert { head, tuple } => {
                let (table, columns) = head.strip_prefix("INSERT INTO ")?.split_once('(')?;
                fn first(list: &str) -> Option<&str> {
                    list.split([',', ')']).next().map(str::trim)
                }
                let by_id =
                    first(columns) == Some("id") && first(tuple.strip_prefix('(')?) == Some("$1");
                Some((table.trim().to_owned(), by_id))
            }
            Shape::Update { table, .. } => Some((table.to_owned(), true)),
            Shape::Delete { table } => Some((table.to_owned(), false)),
        }
    }

    /// Appends the template to `out` as part of a larger statement whose
    /// parameters are `params`: each `$n` becomes the placeholder of a copy
    /// of `args[n - 1]` pushed there, except that a timestamp equal to
    /// `now` is written as `now()`. `false` (with `out` and `params` to be
    /// discarded) when a placeholder has no argument.
    pub(crate) fn renumber_into(
        &self,
        params: &mut Vec<Arg>,
        now: DateTime<Utc>,
        out: &mut String,
    ) -> bool {
        let mut fits = true;
        let mut placed: Vec<Option<usize>> = vec![None; self.args.len()];
        substitute(&self.sql, out, |n, out| {
            let Some(arg) = n.checked_sub(1).and_then(|i| self.args.get(i)) else {
                fits = false;
                return false;
            };
            if matches!(arg, Arg::Ts(Some(at)) if *at == now) {
                out.push_str("now()");
                return true;
            }
            let at = *placed[n - 1].get_or_insert_with(|| {
                params.push(arg.clone());
                params.len()
            });
            out.push('$');
            out.push_str(&at.to_string());
            true
        });
        fits
    }

    /// Appends the statement to `out` with every `$n` replaced by a literal.
    pub fn render(&self, out: &mut String) {
        render_template(&self.sql, &self.args, out);
        out.push_str(";\n");
    }

    /// Appends the statement to `out` as `EXECUTE name(literals)` of the
    /// SQL-level [`Prepared`] statement for its template and argument
    /// types, and adds that statement to `used` (the connection must have
    /// it). Rendered with literals ([`Stmt::render`]) instead when `used`
    /// is `None`, or when the statement cannot be prepared (several
    /// statements in one template, a placeholder without an argument, or
    /// too many templates already).
    ///
    /// Why: PostgreSQL parses, analyses and plans every literal statement
    /// of a simple-query batch anew, a third of its CPU under a `PATCH`
    /// load; an `EXECUTE` reuses the statement's analysis and generic plan
    /// and only reads its arguments (docs/performance.md).
    pub fn render_execute(&self, used: Option<&mut Vec<Arc<Prepared>>>, out: &mut String) {
        let (Some(used), Some(prepared)) = (used, Prepared::of(self)) else {
            return self.render(out);
        };
        out.push_str("EXECUTE ");
        out.push_str(&prepared.name);
        if !self.args.is_empty() {
            literal_tuple(&self.args, out);
        }
        out.push_str(";\n");
        if !used.iter().any(|u| Arc::ptr_eq(u, &prepared)) {
            used.push(prepared);
        }
    }
}

/// A template prepared (`PREPARE name (types) AS template`) on the
/// connections that run it, for [`Stmt::render_execute`].
///
/// Names are handed out by one registry per process, so a name means the
/// same template on every connection of the process whichever store uses
/// it (connections are never shared between processes). A connection
/// learns a statement the first time a batch needs it: the batch fails
/// with SQLSTATE 26000, and nothing ran, since the batch is one implicit
/// transaction; the caller prepares what the batch used and runs it again
/// (see `eventstore::fused`).
#[derive(Debug)]
pub struct Prepared {
    pub name: String,
    /// The `PREPARE` statement itself.
    pub statement: String,
}

/// At most this many templates are prepared (each costs every connection
/// that runs it a parsed statement and a plan); later ones are rendered as
/// literals. The write paths use a few dozen.
const MAX_PREPARED: usize = 512;

/// The argument types a statement was prepared for, and the statement.
type ByTypes = Vec<(Vec<&'static str>, Arc<Prepared>)>;

/// Template → the statements prepared for it, by argument types. Looked up
/// by the template's text, so a write allocates nothing here.
#[derive(Default)]
struct Registry {
    templates: HashMap<String, ByTypes>,
    count: usize,
}

impl Prepared {
    fn of(stmt: &Stmt) -> Option<Arc<Prepared>> {
        static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
        let same_types = |types: &[&'static str]| {
            types.len() == stmt.args.len()
                && types
                    .iter()
                    .zip(&stmt.args)
                    .all(|(t, a)| *t == a.type_name())
        };
        let mut registry = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(prepared) = registry
            .templates
            .get(stmt.sql.as_str())
            .and_then(|known| known.iter().find(|(types, _)| same_types(types)))
        {
            return Some(prepared.1.clone());
        }
        if registry.count >= MAX_PREPARED || !preparable(&stmt.sql, stmt.args.len()) {
            return None;
        }
        registry.count += 1;
        let name = format!("paca_fused_{}", registry.count);
        let types: Vec<&'static str> = stmt.args.iter().map(Arg::type_name).collect();
        let mut statement = format!("PREPARE {name}");
        if !types.is_empty() {
            statement.push_str(&format!(" ({})", types.join(", ")));
        }
        statement.push_str(" AS ");
        statement.push_str(stmt.sql.trim().trim_end_matches(';'));
        let prepared = Arc::new(Prepared { name, statement });
        registry
            .templates
            .entry(stmt.sql.clone())
            .or_default()
            .push((types, prepared.clone()));
        Some(prepared)
    }
}

/// One statement (no `;` but a trailing one) whose placeholders all have
/// an argument.
fn preparable(template: &str, args: usize) -> bool {
    if template.trim().trim_end_matches(';').contains(';') {
        return false;
    }
    let mut fits = true;
    substitute(template, &mut String::new(), |n, _| {
        fits &= (1..=args).contains(&n);
        true
    });
    fits
}

impl Arg {
    /// The type its literal is cast to (and a prepared statement declares).
    fn type_name(&self) -> &'static str {
        match self {
            Arg::Uuid(_) => "uuid",
            Arg::Text(_) => "text",
            Arg::Bool(_) => "boolean",
            Arg::Int(_) => "bigint",
            Arg::Float(_) => "float8",
            Arg::Ts(_) => "timestamptz",
            Arg::Json(_) => "jsonb",
        }
    }
}

/// `query` with `arg` bound as its next parameter, typed as
/// [`Arg::type_name`] says.
pub(crate) fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    arg: &Arg,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match arg {
        Arg::Uuid(v) => query.bind(*v),
        Arg::Text(v) => query.bind(v.clone()),
        Arg::Bool(v) => query.bind(*v),
        Arg::Int(v) => query.bind(*v),
        Arg::Float(v) => query.bind(*v),
        Arg::Ts(v) => query.bind(*v),
        Arg::Json(v) => query.bind(v.clone()),
    }
}

/// `template` with every `$n` replaced by the literal of `args[n - 1]`.
/// A template with every run of whitespace outside single-quoted literals
/// collapsed to one space (and none at the ends), so templates that differ
/// only in layout group together while a literal such as `'a  b'` keeps
/// its text.
pub(crate) fn normalized(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut space = false;
    for c in sql.trim().chars() {
        if !quoted && c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(c);
    }
    out
}

fn render_template(template: &str, args: &[Arg], out: &mut String) {
    substitute(template, out, |n, out| match args.get(n.wrapping_sub(1)) {
        Some(arg) => {
            literal(arg, out);
            true
        }
        None => false,
    });
}

/// Copies `template` to `out`, letting `f` write each `$n` placeholder
/// (returning false keeps the placeholder as it is).
fn substitute(template: &str, out: &mut String, mut f: impl FnMut(usize, &mut String) -> bool) {
    {
        let bytes = template.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start
                    && let Ok(n) = template[start..end].parse::<usize>()
                    && f(n, out)
                {
                    i = end;
                    continue;
                }
            }
            // Copy one UTF-8 character.
            let ch = template[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
}

/// The shapes of statement a replay can merge into one set-based statement.
enum Shape<'a> {
    /// `INSERT INTO t (cols) VALUES (tuple)`
    Insert { head: &'a str, tuple: &'a str },
    /// `UPDATE t SET sets WHERE id = $1`
    Update { table: &'a str, sets: &'a str },
    /// `DELETE FROM t WHERE id = $1`
    Delete { table: &'a str },
}

fn shape(sql: &str) -> Option<Shape<'_>> {
    if let Some(rest) = sql.strip_prefix("INSERT INTO ") {
        let at = rest.find(" VALUES (")?;
        let tuple = &rest[at + " VALUES ".len()..];
        (tuple.ends_with(')') && !tuple.contains(" ON CONFLICT")).then_some(Shape::Insert {
            head: &sql[..sql.len() - tuple.len() - " VALUES ".len()],
            tuple,
        })
    } else if let Some(rest) = sql.strip_prefix("UPDATE ") {
        let (table, rest) = rest.split_once(" SET ")?;
        let sets = rest.strip_suffix(" WHERE id = $1")?;
        (!table.contains(' ')).then_some(Shape::Update { table, sets })
    } else {
        let table = sql
            .strip_prefix("DELETE FROM ")?
            .strip_suffix(" WHERE id = $1")?;
        (!table.contains(' ')).then_some(Shape::Delete { table })
    }
}

/// Renders a replay batch as few statements as possible, with the same
/// effect as running `stmts` in order.
///
/// Statements are assigned to waves: a statement goes to the wave after the
/// last one that touched any of its keys, so every row sees its changes in
/// log order, while statements on different rows may share a wave. Within a
/// wave, statements of the same SQL text are merged into one multi-row
/// INSERT, one `UPDATE … FROM (VALUES …)`, or one `DELETE … IN (…)`.
/// (Measured on 200k project events: per-statement replay ~11.5k events/s,
/// bound by the server's per-statement cost.)
pub fn render_batch(stmts: Vec<Stmt>) -> String {
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut floor = 0usize;
    let mut waves: Vec<Vec<&Stmt>> = Vec::new();
    for stmt in &stmts {
        let wave = if stmt.keys.is_empty() {
            // A barrier: alone in a wave after everything so far.
            waves.len()
        } else {
            stmt.keys
                .iter()
                .filter_map(|k| last.get(k.as_str()).map(|w| w + 1))
                .max()
                .unwrap_or(0)
                .max(floor)
        };
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(stmt);
        for key in &stmt.keys {
            last.insert(key.as_str(), wave);
        }
        if stmt.keys.is_empty() {
            floor = wave + 1;
        }
    }

    let mut out = String::with_capacity(stmts.len() * 160);
    for wave in waves {
        // Group by normalised SQL text, keeping first-appearance order.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<&Stmt>> = HashMap::new();
        for stmt in wave {
            let sql = normalized(&stmt.sql);
            groups
                .entry(sql.clone())
                .or_insert_with(|| {
                    order.push(sql);
                    Vec::new()
                })
                .push(stmt);
        }
        for sql in order {
            let group = &groups[&sql];
            match (group.len(), shape(&sql)) {
                (1, _) | (_, None) => group.iter().for_each(|s| s.render(&mut out)),
                (_, Some(Shape::Insert { head, tuple })) => {
                    out.push_str(head);
                    out.push_str(" VALUES ");
                    for (i, stmt) in group.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        render_template(tuple, &stmt.args, &mut out);
                    }
                    out.push_str(";\n");
                }
                (_, Some(Shape::Update { table, sets })) => {
                    // No alias: SET expressions may name the table itself.
                    let _ = write!(out, "UPDATE {table} SET ");
                    substitute(sets, &mut out, |n, out| {
                        let _ = write!(out, "v.c{n}");
                        true
                    });
                    out.push_str(" FROM (VALUES ");
                    values_rows(group, &mut out);
                    let arity = group[0].args.len();
                    let columns: Vec<String> = (1..=arity).map(|n| format!("c{n}")).collect();
                    let _ = writeln!(
                        out,
                        ") AS v({}) WHERE {table}.id = v.c1;",
                        columns.join(", ")
                    );
                }
                (_, Some(Shape::Delete { table })) => {
                    let _ = write!(out, "DELETE FROM {table} WHERE id IN (");
                    for (i, stmt) in group.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        if let Some(arg) = stmt.args.first() {
                            literal(arg, &mut out);
                        }
                    }
                    out.push_str(");\n");
                }
            }
        }
    }
    out
}

fn values_rows(group: &[&Stmt], out: &mut String) {
    for (i, stmt) in group.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        literal_tuple(&stmt.args, out);
    }
}

/// `(literal, literal, …)`
fn literal_tuple(args: &[Arg], out: &mut String) {
    out.push('(');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        literal(arg, out);
    }
    out.push(')');
}

/// A string literal that reads the same whatever the session's
/// `standard_conforming_strings`: without a backslash, `'…'` with quotes
/// doubled (the only escape either setting knows there); with one, an
/// escape string `E'…'`, where backslashes are always escapes, so they are
/// doubled too. The batches therefore need no `SET` of their own.
fn quoted(text: &str, out: &mut String) {
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            // Only reached in an escape string (the text holds one).
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn literal(arg: &Arg, out: &mut String) {
    match arg {
        Arg::Uuid(Some(v)) => {
            let _ = write!(out, "'{v}'::uuid");
        }
        Arg::Uuid(None) => out.push_str("NULL::uuid"),
        Arg::Text(Some(v)) => {
            quoted(v, out);
            out.push_str("::text");
        }
        Arg::Text(None) => out.push_str("NULL::text"),
        Arg::Bool(Some(v)) => out.push_str(if *v { "true" } else { "false" }),
        Arg::Bool(None) => out.push_str("NULL::boolean"),
        // Quoted, like every other literal: a bare `-3` after a template's
        // `-$n` would read as a comment (`--3`), and `-9223372036854775808`
        // as the negation of an out-of-range number.
        Arg::Int(Some(v)) => {
            let _ = write!(out, "'{v}'::bigint");
        }
        Arg::Int(None) => out.push_str("NULL::bigint"),
        // `{:?}` keeps full precision; PostgreSQL spells the non-finite
        // values `NaN`, `Infinity`, `-Infinity`, as a bound float8 stores.
        Arg::Float(Some(v)) => {
            let _ = match v {
                v if v.is_nan() => write!(out, "'NaN'::float8"),
                v if v.is_infinite() && *v > 0.0 => write!(out, "'Infinity'::float8"),
                v if v.is_infinite() => write!(out, "'-Infinity'::float8"),
                v => write!(out, "'{v:?}'::float8"),
            };
        }
        Arg::Float(None) => out.push_str("NULL::float8"),
        Arg::Ts(Some(v)) => timestamp(*v, out),
        Arg::Ts(None) => out.push_str("NULL::timestamptz"),
        Arg::Json(Some(v)) => {
            quoted(&v.to_string(), out);
            out.push_str("::jsonb");
        }
        Arg::Json(None) => out.push_str("NULL::jsonb"),
    }
}

/// A timestamp literal equal to what binding it stores: truncated to
/// microseconds (PostgreSQL's resolution; the bound value is truncated, a
/// text literal would be rounded), as text for years 1-9999 and as an
/// offset from the epoch outside them (PostgreSQL reads neither year 0 nor
/// five-digit years in RFC 3339 text).
fn timestamp(v: DateTime<Utc>, out: &mut String) {
    let micros = v.timestamp_micros();
    let year = v.year();
    if (1..=9999).contains(&year) {
        let Some(v) = DateTime::<Utc>::from_timestamp_micros(micros) else {
            return timestamp_offset(micros, out);
        };
        let _ = write!(out, "'{}'::timestamptz", v.to_rfc3339());
    } else {
        timestamp_offset(micros, out);
    }
}

fn timestamp_offset(micros: i64, out: &mut String) {
    let _ = write!(
        out,
        "('epoch'::timestamptz + '{micros} microseconds'::interval)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_names_one_prepared_statement_per_template_and_types() {
        let stmt = |id: Option<Uuid>| {
            Stmt::new("UPDATE it_exec SET note = $2 WHERE id = $1")
                .arg(id)
                .arg("it's".to_owned())
        };
        let (mut used, mut out) = (Vec::new(), String::new());
        stmt(Some(Uuid::nil())).render_execute(Some(&mut used), &mut out);
        stmt(None).render_execute(Some(&mut used), &mut out);
        assert_eq!(used.len(), 1, "one statement for both: {used:?}");
        let name = used[0].name.clone();
        assert_eq!(
            used[0].statement,
            format!("PREPARE {name} (uuid, text) AS UPDATE it_exec SET note = $2 WHERE id = $1")
        );
        assert_eq!(
            out,
            format!(
                "EXECUTE {name}('00000000-0000-0000-0000-000000000000'::uuid, 'it''s'::text);\n\
                 EXECUTE {name}(NULL::uuid, 'it''s'::text);\n"
            )
        );
        // Other argument types are another statement.
        Stmt::new("UPDATE it_exec SET note = $2 WHERE id = $1")
            .arg(Uuid::nil())
            .arg(1_i64)
            .render_execute(Some(&mut used), &mut String::new());
        assert_eq!(used.len(), 2);
        assert_ne!(used[1].name, name);
    }

    #[test]
    fn statements_that_cannot_be_prepared_render_as_literals() {
        let mut used = Vec::new();
        for stmt in [
            Stmt::new("DELETE FROM it_exec WHERE id = $1; SELECT 1").arg(Uuid::nil()),
            Stmt::new("DELETE FROM it_exec WHERE id = $2").arg(Uuid::nil()),
        ] {
            let (mut execute, mut literal) = (String::new(), String::new());
            stmt.render_execute(Some(&mut used), &mut execute);
            stmt.render(&mut literal);
            assert_eq!(execute, literal);
        }
        assert!(used.is_empty());
    }

    #[test]
    fn renders_literals_safely() {
        let stmt = Stmt::new("UPDATE t SET a = $1, b = $2, c = $10 WHERE id = $3")
            .arg(Some("it's".to_owned()))
            .arg(serde_json::json!({"q": "'; DROP TABLE x; --"}))
            .arg(Uuid::nil())
            .arg(true)
            .arg(true)
            .arg(true)
            .arg(true)
            .arg(true)
            .arg(true)
            .arg(None::<DateTime<Utc>>);
        let mut out = String::new();
        stmt.render(&mut out);
        assert_eq!(
            out,
            "UPDATE t SET a = 'it''s'::text, b = '{\"q\":\"''; DROP TABLE x; --\"}'::jsonb, \
             c = NULL::timestamptz WHERE id = '00000000-0000-0000-0000-000000000000'::uuid;\n"
        );
    }

    fn lit(arg: Arg) -> String {
        let mut out = String::new();
        literal(&arg, &mut out);
        out
    }

    fn rendered(stmt: &Stmt) -> String {
        let mut out = String::new();
        stmt.render(&mut out);
        out
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// The literal of `id(n)`.
    fn u(n: u128) -> String {
        format!("'{}'::uuid", id(n))
    }

    fn ts(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn null_of_every_variant_is_typed() {
        assert_eq!(lit(Arg::Uuid(None)), "NULL::uuid");
        assert_eq!(lit(Arg::Text(None)), "NULL::text");
        assert_eq!(lit(Arg::Bool(None)), "NULL::boolean");
        assert_eq!(lit(Arg::Int(None)), "NULL::bigint");
        assert_eq!(lit(Arg::Float(None)), "NULL::float8");
        assert_eq!(lit(Arg::Ts(None)), "NULL::timestamptz");
        assert_eq!(lit(Arg::Json(None)), "NULL::jsonb");
    }

    #[test]
    fn scalar_literals() {
        assert_eq!(
            lit(id(0xabc).into()),
            "'00000000-0000-0000-0000-000000000abc'::uuid"
        );
        assert_eq!(lit(true.into()), "true");
        assert_eq!(lit(false.into()), "false");
        assert_eq!(lit(0i64.into()), "'0'::bigint");
        assert_eq!(lit((-5i64).into()), "'-5'::bigint");
        assert_eq!(lit(i64::MAX.into()), "'9223372036854775807'::bigint");
        // Quoted, so PostgreSQL reads the whole text as one bigint.
        assert_eq!(lit(i64::MIN.into()), "'-9223372036854775808'::bigint");
        // `{:?}`: the shortest round-trip form, always with '.' or an exponent.
        assert_eq!(lit(1.0f64.into()), "'1.0'::float8");
        assert_eq!(lit(0.1f64.into()), "'0.1'::float8");
        assert_eq!(lit((-0.0f64).into()), "'-0.0'::float8");
        assert_eq!(lit(1e300f64.into()), "'1e300'::float8");
        assert_eq!(lit(1e-7f64.into()), "'1e-7'::float8");
        assert_eq!(lit(f64::MAX.into()), "'1.7976931348623157e308'::float8");
        // Non-finite floats as PostgreSQL spells them (what binding stores).
        assert_eq!(lit(f64::NAN.into()), "'NaN'::float8");
        assert_eq!(lit(f64::INFINITY.into()), "'Infinity'::float8");
        assert_eq!(lit(f64::NEG_INFINITY.into()), "'-Infinity'::float8");
    }

    #[test]
    fn timestamp_literals_are_rfc3339_utc() {
        assert_eq!(
            lit(ts("2024-02-29T23:59:59Z").into()),
            "'2024-02-29T23:59:59+00:00'::timestamptz"
        );
        assert_eq!(
            lit(ts("2024-01-02T03:04:05.123456Z").into()),
            "'2024-01-02T03:04:05.123456+00:00'::timestamptz"
        );
        // Converted to UTC, whatever the input's offset.
        assert_eq!(
            lit(ts("2024-01-02T03:04:05.5+02:00").into()),
            "'2024-01-02T01:04:05.500+00:00'::timestamptz"
        );
        assert_eq!(
            lit(ts("0001-01-01T00:00:00Z").into()),
            "'0001-01-01T00:00:00+00:00'::timestamptz"
        );
        assert_eq!(
            lit(ts("9999-12-31T23:59:59.999999Z").into()),
            "'9999-12-31T23:59:59.999999+00:00'::timestamptz"
        );
    }

    #[test]
    fn text_literals_double_quotes_and_backslashes_only_in_escape_strings() {
        let cases = [
            ("", "''::text"),
            ("plain", "'plain'::text"),
            ("it's", "'it''s'::text"),
            ("'", "''''::text"),
            ("''", "''''''::text"),
            ("'; DROP TABLE t; --", "'''; DROP TABLE t; --'::text"),
            // A backslash makes an escape string with it doubled: the same
            // text whatever the session's standard_conforming_strings.
            (r"a\b", r"E'a\\b'::text"),
            (r"\'", r"E'\\'''::text"),
            (r"\\", r"E'\\\\'::text"),
            (r"E'\n'", r"E'E''\\n'''::text"),
            (
                "żółć 🦀 \u{202e}rtl \u{feff}",
                "'żółć 🦀 \u{202e}rtl \u{feff}'::text",
            ),
            (
                "\t\n\r\u{1}\u{1b}\u{7f}\u{85}",
                "'\t\n\r\u{1}\u{1b}\u{7f}\u{85}'::text",
            ),
            ("$1 $10 $$ $tag$", "'$1 $10 $$ $tag$'::text"),
            ("/* -- ; */", "'/* -- ; */'::text"),
        ];
        for (value, expected) in cases {
            assert_eq!(lit(value.to_owned().into()), expected, "{value:?}");
            assert_eq!(lit(Some(value.to_owned()).into()), expected, "{value:?}");
        }
    }

    #[test]
    fn json_literals_are_serde_text_with_quotes_doubled() {
        assert_eq!(
            lit(serde_json::json!({"a": "it's", "b": [1, 2.5, null, true]}).into()),
            r#"'{"a":"it''s","b":[1,2.5,null,true]}'::jsonb"#
        );
        // JSON's own escapes are kept: in an escape string their
        // backslashes are doubled, so the server reads the JSON text as is.
        assert_eq!(
            lit(serde_json::json!("a\\b\"c\n\u{1}").into()),
            r#"E'"a\\\\b\\"c\\n\\u0001"'::jsonb"#
        );
        // A JSON null is a jsonb value, not SQL NULL.
        assert_eq!(lit(Value::Null.into()), "'null'::jsonb");
        assert_eq!(
            lit(serde_json::json!({"$1": "$2", "k'": "🦀"}).into()),
            r#"'{"$1":"$2","k''":"🦀"}'::jsonb"#
        );
    }

    #[test]
    fn placeholders_one_to_twelve_do_not_clobber_each_other() {
        let template = (1..=12)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = Stmt::new(format!("SELECT {template}"));
        for n in 1..=12i64 {
            stmt = stmt.arg(n * 100);
        }
        let expected = (1..=12)
            .map(|n| format!("'{}'::bigint", n * 100))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(rendered(&stmt), format!("SELECT {expected};\n"));

        // Out of order, repeated, next to other text.
        let mut stmt = Stmt::new("$11$1 $10,$1($12)x$2y");
        for n in 1..=12i64 {
            stmt = stmt.arg(n);
        }
        assert_eq!(
            rendered(&stmt),
            "'11'::bigint'1'::bigint '10'::bigint,'1'::bigint('12'::bigint)x'2'::biginty;\n"
        );
    }

    #[test]
    fn placeholders_without_an_argument_are_kept() {
        let stmt = Stmt::new("SELECT $0, $1, $2, $13, $, $x, $$q$$, é$1ü")
            .arg(7i64)
            .arg(None::<String>);
        assert_eq!(
            rendered(&stmt),
            "SELECT $0, '7'::bigint, NULL::text, $13, $, $x, $$q$$, é'7'::bigintü;\n"
        );
        // More digits than a usize holds: kept as written.
        let stmt = Stmt::new("SELECT $99999999999999999999999").arg(1i64);
        assert_eq!(rendered(&stmt), "SELECT $99999999999999999999999;\n");
    }

    #[test]
    fn values_are_not_substituted_again() {
        let stmt = Stmt::new("SELECT $1, $2, $3")
            .arg("$2 $3 $10".to_owned())
            .arg(serde_json::json!({"x": "$1"}))
            .arg("'$1'".to_owned());
        assert_eq!(
            rendered(&stmt),
            "SELECT '$2 $3 $10'::text, '{\"x\":\"$1\"}'::jsonb, '''$1'''::text;\n"
        );
    }

    #[test]
    fn render_keeps_the_template_text() {
        let stmt = Stmt::new("UPDATE t\n   SET a = $2\n WHERE id = $1")
            .arg(id(1))
            .arg("x".to_owned());
        assert_eq!(
            rendered(&stmt),
            format!("UPDATE t\n   SET a = 'x'::text\n WHERE id = {};\n", u(1))
        );
    }

    // -- keys --------------------------------------------------------------

    #[test]
    fn row_keys_come_from_the_first_uuid_argument() {
        let key = |stmt: Stmt| stmt.with_row_key().keys;
        assert_eq!(
            key(Stmt::new("INSERT INTO t (id, a) VALUES ($1, $2)")
                .arg(id(1))
                .arg(1i64)),
            vec![format!("t:{}", id(1))]
        );
        // Whitespace is normalised first.
        assert_eq!(
            key(Stmt::new("INSERT  INTO\n  t (id,\n a)\n VALUES ($1,\n $2)")
                .arg(id(1))
                .arg(1i64)),
            vec![format!("t:{}", id(1))]
        );
        assert_eq!(
            key(Stmt::new("UPDATE t SET a = $2 WHERE id = $1")
                .arg(id(2))
                .arg(1i64)),
            vec![format!("t:{}", id(2))]
        );
        assert_eq!(
            key(Stmt::new("DELETE FROM t WHERE id = $1").arg(id(3))),
            vec![format!("t:{}", id(3))]
        );
        // Explicit keys stay; the row key comes after them.
        assert_eq!(
            key(Stmt::new("DELETE FROM t WHERE id = $1")
                .arg(id(3))
                .key("t:u:x")),
            vec!["t:u:x".to_owned(), format!("t:{}", id(3))]
        );
    }

    #[test]
    fn no_row_key_without_a_mergeable_shape_and_a_uuid() {
        let key = |stmt: Stmt| stmt.with_row_key().keys;
        let none: Vec<String> = Vec::new();
        // The first argument is not a non-null uuid.
        assert_eq!(
            key(Stmt::new("INSERT INTO t (a) VALUES ($1)").arg(1i64)),
            none
        );
        assert_eq!(
            key(Stmt::new("DELETE FROM t WHERE id = $1").arg(None::<Uuid>)),
            none
        );
        assert_eq!(key(Stmt::new("DELETE FROM t WHERE id = $1")), none);
        // Shapes a replay does not merge: barriers unless keyed by hand.
        for sql in [
            "INSERT INTO t (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
            "INSERT INTO t (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET a = lower(EXCLUDED.a)",
            "INSERT INTO t (id) VALUES ($1) RETURNING id",
            "INSERT INTO t (id) SELECT $1",
            "UPDATE t SET a = 1 WHERE id = $1 AND b = 2",
            "UPDATE t SET a = 1 WHERE parent_id = $1",
            "UPDATE t AS x SET a = 1 WHERE id = $1",
            "DELETE FROM t WHERE parent_id = $1",
            "DELETE FROM t x WHERE id = $1",
            "delete from t where id = $1",
            "SELECT $1",
        ] {
            assert_eq!(key(Stmt::new(sql).arg(id(1))), none, "{sql}");
        }
    }

    // -- render_batch ------------------------------------------------------

    fn insert(n: u128, a: &str) -> Stmt {
        Stmt::new("INSERT INTO t (id, a) VALUES ($1, $2)")
            .arg(id(n))
            .arg(a.to_owned())
            .with_row_key()
    }

    fn update(n: u128, a: &str) -> Stmt {
        Stmt::new("UPDATE t SET a = $2 WHERE id = $1")
            .arg(id(n))
            .arg(a.to_owned())
            .with_row_key()
    }

    fn delete(n: u128) -> Stmt {
        Stmt::new("DELETE FROM t WHERE id = $1")
            .arg(id(n))
            .with_row_key()
    }

    /// A statement with no keys: a replay barrier.
    fn barrier(a: &str) -> Stmt {
        Stmt::new("UPDATE t SET n = n + 1 WHERE a = $1").arg(a.to_owned())
    }

    #[test]
    fn an_empty_batch_renders_nothing() {
        assert_eq!(render_batch(Vec::new()), "");
    }

    #[test]
    fn single_row_writes_name_their_table_and_whether_row_one_is_returned() {
        let of = |sql: &str| Stmt::new(sql).single_row_write();
        let named = |table: &str, returned| Some((table.to_owned(), returned));
        assert_eq!(of("UPDATE t SET a = $2 WHERE id = $1"), named("t", true));
        assert_eq!(
            of("INSERT INTO t (id, a) VALUES ($1, $2)"),
            named("t", true)
        );
        assert_eq!(
            of("INSERT INTO t(id) VALUES ($1)"),
            named("t", true),
            "no space, one column"
        );
        assert_eq!(
            of("INSERT INTO t (a, id) VALUES ($1, $2)"),
            named("t", false)
        );
        assert_eq!(
            of("INSERT INTO t (id, a) VALUES ($2, $1)"),
            named("t", false)
        );
        assert_eq!(of("INSERT INTO t (ident) VALUES ($1)"), named("t", false));
        assert_eq!(of("DELETE FROM t WHERE id = $1"), named("t", false));
        assert_eq!(
            of("INSERT INTO t (id) VALUES ($1) ON CONFLICT DO NOTHING"),
            None
        );
        assert_eq!(of("UPDATE t SET a = (SELECT 1) WHERE id = $1"), None);
        assert_eq!(of("UPDATE t SET a = 1 WHERE b = $1"), None);
    }

    #[test]
    fn a_lone_statement_renders_as_itself() {
        for stmt in [insert(1, "x"), update(1, "x"), delete(1), barrier("x")] {
            assert_eq!(render_batch(vec![stmt.clone()]), rendered(&stmt));
        }
    }

    #[test]
    fn consecutive_same_shape_inserts_merge_into_one_values_list() {
        assert_eq!(
            render_batch(vec![insert(1, "a"), insert(2, "it's"), insert(3, "c")]),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text), ({}, 'it''s'::text), \
                 ({}, 'c'::text);\n",
                u(1),
                u(2),
                u(3)
            )
        );
        // The same statement written with other whitespace has the same shape.
        let spaced = Stmt::new("INSERT INTO t (id, a)\n       VALUES ($1,\n               $2)")
            .arg(id(2))
            .arg("b".to_owned())
            .with_row_key();
        assert_eq!(
            render_batch(vec![insert(1, "a"), spaced]),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text), ({}, 'b'::text);\n",
                u(1),
                u(2)
            )
        );
    }

    #[test]
    fn merged_insert_tuples_keep_their_expressions_and_repeats() {
        let stmt = |n: u128, a: i64| {
            Stmt::new("INSERT INTO t (id, a, b, c) VALUES ($1, $2, $2 + 1, lower($3))")
                .arg(id(n))
                .arg(a)
                .arg("X".to_owned())
                .with_row_key()
        };
        assert_eq!(
            render_batch(vec![stmt(1, 10), stmt(2, -20)]),
            format!(
                "INSERT INTO t (id, a, b, c) VALUES \
                 ({}, '10'::bigint, '10'::bigint + 1, lower('X'::text)), \
                 ({}, '-20'::bigint, '-20'::bigint + 1, lower('X'::text));\n",
                u(1),
                u(2)
            )
        );
    }

    #[test]
    fn different_tables_and_column_lists_do_not_merge() {
        let other_table = Stmt::new("INSERT INTO s (id, a) VALUES ($1, $2)")
            .arg(id(2))
            .arg("b".to_owned())
            .with_row_key();
        let other_columns = Stmt::new("INSERT INTO t (id, b) VALUES ($1, $2)")
            .arg(id(3))
            .arg("c".to_owned())
            .with_row_key();
        assert_eq!(
            render_batch(vec![insert(1, "a"), other_table, other_columns]),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text);\n\
                 INSERT INTO s (id, a) VALUES ({}, 'b'::text);\n\
                 INSERT INTO t (id, b) VALUES ({}, 'c'::text);\n",
                u(1),
                u(2),
                u(3)
            )
        );
    }

    #[test]
    fn updates_merge_into_update_from_values() {
        let stmt = |n: u128, a: &str, b: i64| {
            Stmt::new("UPDATE t SET a = $2, b = b + $3, c = $1 WHERE id = $1")
                .arg(id(n))
                .arg(a.to_owned())
                .arg(b)
                .with_row_key()
        };
        assert_eq!(
            render_batch(vec![stmt(1, "x", 1), stmt(2, "'", -1)]),
            format!(
                "UPDATE t SET a = v.c2, b = b + v.c3, c = v.c1 FROM (VALUES \
                 ({}, 'x'::text, '1'::bigint), ({}, ''''::text, '-1'::bigint)) \
                 AS v(c1, c2, c3) WHERE t.id = v.c1;\n",
                u(1),
                u(2)
            )
        );
    }

    #[test]
    fn deletes_merge_into_one_in_list() {
        assert_eq!(
            render_batch(vec![delete(1), delete(2), delete(3)]),
            format!(
                "DELETE FROM t WHERE id IN ({}, {}, {});\n",
                u(1),
                u(2),
                u(3)
            )
        );
    }

    #[test]
    fn unmergeable_statements_render_one_by_one() {
        let sql =
            "INSERT INTO t (id, a) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a";
        let upsert = |n: u128| {
            Stmt::new(sql)
                .arg(id(n))
                .arg("x".to_owned())
                .key(format!("t:{}", id(n)))
        };
        let one = |n: u128| {
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'x'::text) \
                 ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a;\n",
                u(n)
            )
        };
        assert_eq!(render_batch(vec![upsert(1), upsert(2)]), one(1) + &one(2));
    }

    #[test]
    fn statements_on_one_row_keep_their_order() {
        // Insert, update, delete and re-insert of one row: four waves,
        // nothing merged, log order.
        let batch = vec![insert(1, "a"), update(1, "b"), delete(1), insert(1, "c")];
        let expected: String = batch.iter().map(rendered).collect();
        assert_eq!(render_batch(batch), expected);
    }

    #[test]
    fn statements_on_different_rows_share_waves() {
        // Rows 1 and 2, each inserted then updated: wave 0 has both inserts,
        // wave 1 both updates, whatever the interleaving.
        let expected = format!(
            "INSERT INTO t (id, a) VALUES ({one}, 'a'::text), ({two}, 'b'::text);\n\
             UPDATE t SET a = v.c2 FROM (VALUES ({one}, 'a2'::text), ({two}, 'b2'::text)) \
             AS v(c1, c2) WHERE t.id = v.c1;\n",
            one = u(1),
            two = u(2)
        );
        assert_eq!(
            render_batch(vec![
                insert(1, "a"),
                update(1, "a2"),
                insert(2, "b"),
                update(2, "b2"),
            ]),
            expected
        );
        assert_eq!(
            render_batch(vec![
                insert(1, "a"),
                insert(2, "b"),
                update(1, "a2"),
                update(2, "b2"),
            ]),
            expected
        );
    }

    #[test]
    fn within_a_wave_groups_come_in_first_appearance_order() {
        // Three distinct rows, so one wave: row 3's insert joins row 1's
        // group, before the delete of row 2 (disjoint keys may reorder).
        assert_eq!(
            render_batch(vec![insert(1, "a"), delete(2), insert(3, "c")]),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text), ({}, 'c'::text);\n\
                 DELETE FROM t WHERE id = {};\n",
                u(1),
                u(3),
                u(2)
            )
        );
        assert_eq!(
            render_batch(vec![delete(2), insert(1, "a"), insert(3, "c")]),
            format!(
                "DELETE FROM t WHERE id = {};\n\
                 INSERT INTO t (id, a) VALUES ({}, 'a'::text), ({}, 'c'::text);\n",
                u(2),
                u(1),
                u(3)
            )
        );
    }

    #[test]
    fn a_shared_extra_key_orders_statements_on_different_rows() {
        // A unique value (like `member_of:…`): the re-add (row 3) stays
        // after the removal (row 2), though their row keys differ.
        let batch = vec![
            insert(1, "a"),
            delete(2).key("t.a:x"),
            insert(3, "x").key("t.a:x"),
        ];
        assert_eq!(
            render_batch(batch),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text);\n\
                 DELETE FROM t WHERE id = {};\n\
                 INSERT INTO t (id, a) VALUES ({}, 'x'::text);\n",
                u(1),
                u(2),
                u(3)
            )
        );
    }

    #[test]
    fn a_statement_goes_after_the_last_wave_of_any_of_its_keys() {
        // Row 1 takes waves 0, 1, 2; a statement keyed by rows 1 and 2 goes
        // to wave 3, row 2's next statement to wave 4, and row 3 to wave 0.
        let both = Stmt::new("SELECT touch($1, $2)")
            .arg(id(1))
            .arg(id(2))
            .key(format!("t:{}", id(1)))
            .key(format!("t:{}", id(2)));
        let batch = vec![
            insert(1, "a"),
            update(1, "b"),
            update(1, "c"),
            both,
            update(2, "d"),
            insert(3, "e"),
        ];
        assert_eq!(
            render_batch(batch),
            format!(
                "INSERT INTO t (id, a) VALUES ({one}, 'a'::text), ({three}, 'e'::text);\n\
                 UPDATE t SET a = 'b'::text WHERE id = {one};\n\
                 UPDATE t SET a = 'c'::text WHERE id = {one};\n\
                 SELECT touch({one}, {two});\n\
                 UPDATE t SET a = 'd'::text WHERE id = {two};\n",
                one = u(1),
                two = u(2),
                three = u(3)
            )
        );
    }

    #[test]
    fn keyless_statements_are_barriers() {
        // Nothing moves across a barrier: the inserts before and after it do
        // not merge, and two identical barriers stay two statements.
        let batch = vec![
            insert(1, "a"),
            barrier("x"),
            insert(2, "b"),
            barrier("y"),
            barrier("y"),
            insert(3, "c"),
            insert(4, "d"),
        ];
        assert_eq!(
            render_batch(batch),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text);\n\
                 UPDATE t SET n = n + 1 WHERE a = 'x'::text;\n\
                 INSERT INTO t (id, a) VALUES ({}, 'b'::text);\n\
                 UPDATE t SET n = n + 1 WHERE a = 'y'::text;\n\
                 UPDATE t SET n = n + 1 WHERE a = 'y'::text;\n\
                 INSERT INTO t (id, a) VALUES ({}, 'c'::text), ({}, 'd'::text);\n",
                u(1),
                u(2),
                u(3),
                u(4)
            )
        );
        // A keyed statement after a barrier, on a row untouched so far, does
        // not go back before it.
        assert_eq!(
            render_batch(vec![
                insert(1, "a"),
                insert(2, "b"),
                barrier("x"),
                update(3, "c"),
            ]),
            format!(
                "INSERT INTO t (id, a) VALUES ({}, 'a'::text), ({}, 'b'::text);\n\
                 UPDATE t SET n = n + 1 WHERE a = 'x'::text;\n\
                 UPDATE t SET a = 'c'::text WHERE id = {};\n",
                u(1),
                u(2),
                u(3)
            )
        );
    }

    #[test]
    fn merged_values_carry_hostile_text_literally() {
        let hostile = "'); DELETE FROM t; -- $1 $2 \\ 🦀";
        let batch = vec![update(1, hostile), update(2, "$1"), delete(3), delete(4)];
        assert_eq!(
            render_batch(batch),
            format!(
                "UPDATE t SET a = v.c2 FROM (VALUES \
                 ({}, E'''); DELETE FROM t; -- $1 $2 \\\\ 🦀'::text), ({}, '$1'::text)) \
                 AS v(c1, c2) WHERE t.id = v.c1;\n\
                 DELETE FROM t WHERE id IN ({}, {});\n",
                u(1),
                u(2),
                u(3),
                u(4)
            )
        );
    }
}
