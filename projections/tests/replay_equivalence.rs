//! Property test of the replay batch renderer (`eventstore::stmt`): on
//! random statement sequences, a replay (`render_batch`, chunk by chunk,
//! each chunk one simple query with literals) and the fused append's
//! rendering (`Stmt::render` of every statement, one string) leave the same
//! rows as the live path (`Stmt::execute`: one prepared statement with bound
//! parameters at a time).
//!
//! The statements run against scratch tables (`t`, and `child` with a
//! cascading foreign key to it) in three schemas. They mix mergeable
//! INSERTs of several shapes, UPDATEs and DELETEs by id, upserts (keyed or
//! barriers), keyless barriers and multi-key statements, with hostile text,
//! JSON, extreme numbers and timestamps. Their keys follow the contract of
//! `Stmt::keys` (every row and unique value a statement touches, including
//! rows a cascade deletes and rows a subquery reads), which the generator
//! derives from a model of the tables.
//!
//! Seeds: `REPLAY_SEED=n` runs that seed only; `REPLAY_SEEDS=n` runs seeds
//! 1..=n; by default seeds 1..=150, as many as fit in 20 s (at least 8). A
//! failure names its seed and shrinks the sequence to a minimal one that
//! still differs.
//!
//! Edge values whose literal once differed from the bound parameter
//! (`i64::MIN`, non-finite floats, sub-microsecond timestamps, years
//! outside 1..=9999, a negative value after `-$n`) are checked one by one by
//! `literal_edge_values_match_bound_parameters`, and literal text inside
//! templates by `template_whitespace_in_merged_groups`.
//!
//! Needs `DATABASE_URL` (see `scripts/test.sh`).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use projections::stmt::{Arg, Stmt, render_batch};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Statements per seed.
const STATEMENTS: usize = 160;
const DEFAULT_SEEDS: u64 = 150;
/// By default, no new seed starts after this long (once `MIN_SEEDS` ran).
const TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);
const MIN_SEEDS: usize = 8;
/// Row ids are drawn from small pools, so statements collide on rows.
const PARENT_IDS: u128 = 10;
const CHILD_IDS: u128 = 10;
/// The unique column `t.u` draws from this many values.
const UNIQUE_VALUES: usize = 6;

const LIVE: &str = "live";
const BATCH: &str = "batch";
const FUSED: &str = "fused";

fn ddl(schema: &str) -> String {
    format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE;
         CREATE SCHEMA {schema};
         CREATE TABLE {schema}.t (
             id uuid PRIMARY KEY,
             a  text,
             b  bigint,
             c  jsonb,
             d  boolean,
             e  timestamptz,
             f  float8,
             u  text UNIQUE,
             n  bigint NOT NULL DEFAULT 0
         );
         CREATE TABLE {schema}.child (
             id        uuid PRIMARY KEY,
             parent_id uuid NOT NULL REFERENCES {schema}.t (id) ON DELETE CASCADE,
             note      text,
             at        timestamptz
         );"
    )
}

// ---------------------------------------------------------------------------
// Random values
// ---------------------------------------------------------------------------

const HOSTILE: &[&str] = &[
    "",
    "'",
    "''",
    "'''",
    "\\",
    "\\\\",
    "\\'",
    "'\\",
    "\\n",
    "'; DROP TABLE t; --",
    "'); DELETE FROM t; --",
    "$1",
    "$2",
    "$10",
    "$11",
    "$1$",
    "$$",
    "$tag$",
    "$0",
    "--",
    "/*",
    "*/",
    ";",
    ";\n",
    "\n",
    "\r\n",
    "\t",
    " ",
    "  ",
    "\u{1}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "NULL",
    "null",
    "\"",
    "{}",
    "[]",
    "{\"a\":1}",
    "v.c1",
    " WHERE id = $1",
    "::text",
    "::jsonb",
    "E'\\x41'",
    "U&'\\0041'",
    "é",
    "ż",
    "🦀",
    "\u{202e}",
    "\u{feff}",
    "\u{200b}",
    "𝕏",
    "ß",
    "\u{fffd}",
    " ON CONFLICT",
    " VALUES (",
    "(",
    ")",
    ",",
    "true",
];

fn text(rng: &mut StdRng) -> String {
    let mut out = String::new();
    for _ in 0..rng.random_range(0..5) {
        if rng.random_bool(0.7) {
            out.push_str(HOSTILE[rng.random_range(0..HOSTILE.len())]);
        } else {
            // Any character but NUL (PostgreSQL text cannot hold it).
            let c = loop {
                let code = if rng.random_bool(0.5) {
                    rng.random_range(1..0x80)
                } else {
                    rng.random_range(1..0x11_0000)
                };
                if let Some(c) = char::from_u32(code) {
                    break c;
                }
            };
            out.push(c);
        }
    }
    out
}

fn opt_text(rng: &mut StdRng) -> Option<String> {
    rng.random_bool(0.85).then(|| text(rng))
}

/// Any i64.
fn int(rng: &mut StdRng) -> i64 {
    const SPECIAL: &[i64] = &[
        i64::MIN,
        0,
        1,
        -1,
        i64::MAX,
        i64::MIN + 1,
        i32::MAX as i64,
        i32::MIN as i64,
        i32::MAX as i64 + 1,
        i32::MIN as i64 - 1,
        10_i64.pow(18),
        -(10_i64.pow(18)),
    ];
    match rng.random_range(0..3) {
        0 => SPECIAL[rng.random_range(0..SPECIAL.len())],
        1 => rng.random_range(-1000..1000),
        _ => rng.random_range(i64::MIN + 1..=i64::MAX),
    }
}

fn opt_int(rng: &mut StdRng) -> Option<i64> {
    rng.random_bool(0.85).then(|| int(rng))
}

/// Any f64, the non-finite ones included.
fn float(rng: &mut StdRng) -> f64 {
    const SPECIAL: &[f64] = &[
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1.0 / 3.0,
        1e300,
        -1e300,
        1e-300,
        5e-324,
        -5e-324,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        123456789012345680000.0,
        9007199254740993.0,
    ];
    match rng.random_range(0..3) {
        0 => SPECIAL[rng.random_range(0..SPECIAL.len())],
        1 => rng.random_range(-1e6..1e6),
        _ => loop {
            let v = f64::from_bits(rng.random());
            if v.is_finite() {
                break v;
            }
        },
    }
}

fn opt_float(rng: &mut StdRng) -> Option<f64> {
    rng.random_bool(0.85).then(|| float(rng))
}

/// Microsecond timestamps in years 1..=9999 (what the domain accepts:
/// `domain::validate::timestamp`).
fn timestamp(rng: &mut StdRng) -> DateTime<Utc> {
    const MIN: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
    const SPECIAL: &[i64] = &[
        MIN,
        MAX,
        0,
        -1,
        946_684_800_000_000, // 2000-01-01, PostgreSQL's epoch
        946_684_799_999_999,
        -30_610_224_000_000_000, // 1000-01-01
        1_709_251_199_999_999,   // 2024-02-29T23:59:59.999999Z
    ];
    let micros = match rng.random_range(0..3) {
        0 => SPECIAL[rng.random_range(0..SPECIAL.len())],
        1 => rng.random_range(1_600_000_000_000_000..1_900_000_000_000_000),
        _ => rng.random_range(MIN..=MAX),
    };
    Utc.timestamp_micros(micros).unwrap()
}

fn opt_timestamp(rng: &mut StdRng) -> Option<DateTime<Utc>> {
    rng.random_bool(0.85).then(|| timestamp(rng))
}

fn json_value(rng: &mut StdRng, depth: u32) -> Value {
    let leaf = depth >= 3 || rng.random_bool(0.5);
    match rng.random_range(0..if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(int(rng)),
        3 => json!(float(rng)),
        4 => Value::String(text(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| json_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(json_object(rng, depth + 1)),
    }
}

fn json_object(rng: &mut StdRng, depth: u32) -> Map<String, Value> {
    (0..rng.random_range(0..4))
        .map(|_| (text(rng), json_value(rng, depth + 1)))
        .collect()
}

fn opt_json(rng: &mut StdRng) -> Option<Value> {
    rng.random_bool(0.85).then(|| json_value(rng, 0))
}

// ---------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------

/// What the generator knows of the tables, to write valid statements with
/// the keys the contract asks for.
#[derive(Default)]
struct Model {
    /// Parent rows and their unique `u`. (Ordered maps: a seed must give
    /// the same sequence in every process.)
    parents: BTreeMap<Uuid, Option<String>>,
    /// Child rows: parent and note.
    children: BTreeMap<Uuid, (Uuid, Option<String>)>,
    /// The kind of the last statement: often repeated, as a log repeats
    /// an event type, so that replay batches have runs to merge.
    last_kind: Option<u32>,
}

impl Model {
    fn taken(&self, u: &str) -> bool {
        self.parents.values().any(|v| v.as_deref() == Some(u))
    }
}

fn parent_id(n: u128) -> Uuid {
    Uuid::from_u128(0x1000 + n)
}

fn child_id(n: u128) -> Uuid {
    Uuid::from_u128(0x2000 + n)
}

fn unique_key(u: &str) -> String {
    format!("t.u:{u}")
}

fn parent_key(id: Uuid) -> String {
    format!("t:{id}")
}

const INSERT_FULL: &str =
    "INSERT INTO t (id, a, b, c, d, e, f, u) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// The same statement written another way: the same shape once normalised.
const INSERT_FULL_SPACED: &str = "INSERT INTO t (id, a, b, c, d, e, f, u)
                                  VALUES ($1, $2, $3, $4,
                                          $5, $6, $7, $8)";

fn unique_value(rng: &mut StdRng) -> String {
    // Hostile, but one of a few, so values collide.
    const VALUES: [&str; UNIQUE_VALUES] = ["x", "it's", "\\", "$1", "🦀", "a  b"];
    VALUES[rng.random_range(0..UNIQUE_VALUES)].to_owned()
}

/// One random statement valid in the model's state; updates the model.
fn statement(rng: &mut StdRng, model: &mut Model) -> Stmt {
    const KINDS: u32 = 22;
    let mut kind = match model.last_kind {
        Some(kind) if rng.random_bool(0.6) => kind,
        _ => rng.random_range(0..KINDS),
    };
    loop {
        let pid = parent_id(rng.random_range(0..PARENT_IDS));
        let cid = child_id(rng.random_range(0..CHILD_IDS));
        let stmt = match kind {
            // INSERTs of the full shape (two spellings), if the row is free.
            0..=2 if !model.parents.contains_key(&pid) => {
                let u = rng
                    .random_bool(0.5)
                    .then(|| unique_value(rng))
                    .filter(|u| !model.taken(u));
                let sql = if rng.random_bool(0.5) {
                    INSERT_FULL
                } else {
                    INSERT_FULL_SPACED
                };
                let mut stmt = Stmt::new(sql)
                    .arg(pid)
                    .arg(opt_text(rng))
                    .arg(opt_int(rng))
                    .arg(opt_json(rng))
                    .arg(Arg::Bool(rng.random_bool(0.85).then(|| rng.random())))
                    .arg(opt_timestamp(rng))
                    .arg(Arg::Float(opt_float(rng)))
                    .arg(u.clone());
                if let Some(u) = &u {
                    stmt = stmt.key(unique_key(u));
                }
                model.parents.insert(pid, u);
                stmt.with_row_key()
            }
            // Other INSERT shapes into the same table: fewer columns,
            // expressions, a repeated placeholder.
            3 if !model.parents.contains_key(&pid) => {
                model.parents.insert(pid, None);
                Stmt::new("INSERT INTO t (id, a, b) VALUES ($1, $2, $3)")
                    .arg(pid)
                    .arg(opt_text(rng))
                    .arg(opt_int(rng))
                    .with_row_key()
            }
            4 if !model.parents.contains_key(&pid) => {
                model.parents.insert(pid, None);
                Stmt::new(
                    "INSERT INTO t (id, a, n, c) VALUES ($1, $2 || '|' || $3, $4 * 2, \
                     jsonb_build_object('k', $3, 'n', $4))",
                )
                .arg(pid)
                .arg(opt_text(rng))
                .arg(opt_text(rng))
                .arg(rng.random_range(-1_000_000_i64..1_000_000))
                .with_row_key()
            }
            5 if !model.parents.contains_key(&pid) => {
                model.parents.insert(pid, None);
                Stmt::new("INSERT INTO t (id, b, n, e, f) VALUES ($1, $2, $2, $3, $4)")
                    .arg(pid)
                    .arg(rng.random_range(-1_000_000_i64..1_000_000))
                    .arg(opt_timestamp(rng))
                    .arg(Arg::Float(opt_float(rng)))
                    .with_row_key()
            }
            // Upserts: not a mergeable shape; keyed by hand or a barrier.
            6 => {
                let sql = if rng.random_bool(0.5) {
                    "INSERT INTO t (id, a, b) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a, n = t.n + 1"
                } else {
                    "INSERT INTO t (id, a, b) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING"
                };
                model.parents.entry(pid).or_insert(None);
                let stmt = Stmt::new(sql).arg(pid).arg(opt_text(rng)).arg(opt_int(rng));
                if rng.random_bool(0.5) {
                    stmt.key(parent_key(pid))
                } else {
                    stmt
                }
            }
            // UPDATEs by id (the row may or may not exist).
            7 | 8 => Stmt::new("UPDATE t SET a = $2 WHERE id = $1")
                .arg(pid)
                .arg(opt_text(rng))
                .with_row_key(),
            9 => Stmt::new("UPDATE t SET b = $2, d = $3, e = $4, f = $5 WHERE id = $1")
                .arg(pid)
                .arg(opt_int(rng))
                .arg(Arg::Bool(rng.random_bool(0.85).then(|| rng.random())))
                .arg(opt_timestamp(rng))
                .arg(Arg::Float(opt_float(rng)))
                .with_row_key(),
            // Reads its own row; an unused parameter.
            10 => Stmt::new(
                "UPDATE t SET n = n + $3, c = COALESCE(c, '{}'::jsonb) || $4, a = a || $2 \
                 WHERE id = $1",
            )
            .arg(pid)
            .arg(opt_text(rng))
            .arg(rng.random_range(-1000_i64..1000))
            .arg(Value::Object(json_object(rng, 0)))
            .with_row_key(),
            11 => Stmt::new("UPDATE t SET c = $2, a = $4 WHERE id = $1")
                .arg(pid)
                .arg(opt_json(rng))
                .arg(opt_int(rng))
                .arg(opt_text(rng))
                .with_row_key(),
            // The unique column: keyed by the value it frees and the one it
            // takes.
            12 => {
                let new = unique_value(rng);
                if model.taken(&new) {
                    kind = rng.random_range(0..KINDS);
                    continue;
                }
                let mut stmt = Stmt::new("UPDATE t SET u = $2 WHERE id = $1")
                    .arg(pid)
                    .arg(new.clone())
                    .key(unique_key(&new));
                if let Some(row) = model.parents.get_mut(&pid)
                    && let Some(old) = row.replace(new)
                {
                    stmt = stmt.key(unique_key(&old));
                }
                stmt.with_row_key()
            }
            // Reads the children: child inserts and deletes carry the
            // parent's key.
            13 => Stmt::new(
                "UPDATE t SET b = (SELECT count(*) FROM child WHERE parent_id = $1) WHERE id = $1",
            )
            .arg(pid)
            .with_row_key(),
            // DELETE by id: frees its unique value, cascades to its children.
            14 => {
                let mut stmt = Stmt::new("DELETE FROM t WHERE id = $1").arg(pid);
                if let Some(Some(u)) = model.parents.remove(&pid) {
                    stmt = stmt.key(unique_key(&u));
                }
                let orphans: Vec<Uuid> = model
                    .children
                    .iter()
                    .filter(|(_, (p, _))| *p == pid)
                    .map(|(c, _)| *c)
                    .collect();
                for c in orphans {
                    model.children.remove(&c);
                    stmt = stmt.key(format!("child:{c}"));
                }
                stmt.with_row_key()
            }
            // Children.
            15 | 16 if model.parents.contains_key(&pid) && !model.children.contains_key(&cid) => {
                let note = opt_text(rng);
                model.children.insert(cid, (pid, note.clone()));
                Stmt::new("INSERT INTO child (id, parent_id, note, at) VALUES ($1, $2, $3, $4)")
                    .arg(cid)
                    .arg(pid)
                    .arg(note)
                    .arg(opt_timestamp(rng))
                    .key(parent_key(pid))
                    .with_row_key()
            }
            17 => {
                let note = opt_text(rng);
                if let Some((_, old)) = model.children.get_mut(&cid) {
                    *old = note.clone();
                }
                Stmt::new("UPDATE child SET note = $2, at = $3 WHERE id = $1")
                    .arg(cid)
                    .arg(note)
                    .arg(opt_timestamp(rng))
                    .with_row_key()
            }
            18 => {
                let mut stmt = Stmt::new("DELETE FROM child WHERE id = $1").arg(cid);
                if let Some((parent, _)) = model.children.remove(&cid) {
                    stmt = stmt.key(parent_key(parent));
                }
                stmt.with_row_key()
            }
            // Barriers: statements on many rows, without keys (rarer).
            19 if rng.random_bool(0.3) => {
                Stmt::new("UPDATE t SET n = n + 1 WHERE b > $1").arg(opt_int(rng))
            }
            20 if rng.random_bool(0.3) => {
                let note = if rng.random_bool(0.5) {
                    // A note some child has, if any.
                    model
                        .children
                        .values()
                        .find_map(|(_, n)| n.clone())
                        .or_else(|| opt_text(rng))
                } else {
                    opt_text(rng)
                };
                model
                    .children
                    .retain(|_, (_, n)| note.is_none() || *n != note);
                Stmt::new("DELETE FROM child WHERE note = $1").arg(note)
            }
            // Two rows by hand-written keys.
            21 => {
                let other = parent_id(rng.random_range(0..PARENT_IDS));
                Stmt::new("UPDATE t SET n = n + 1, a = $3 WHERE id IN ($1, $2)")
                    .arg(pid)
                    .arg(other)
                    .arg(opt_text(rng))
                    .key(parent_key(pid))
                    .key(parent_key(other))
            }
            // Not applicable now: another row, or another kind.
            _ => {
                if rng.random_bool(0.5) {
                    kind = rng.random_range(0..KINDS);
                }
                continue;
            }
        };
        model.last_kind = Some(kind);
        return stmt;
    }
}

fn sequence(seed: u64) -> (Vec<Stmt>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let stmts: Vec<Stmt> = (0..STATEMENTS)
        .map(|_| statement(&mut rng, &mut model))
        .collect();
    // Replay batch boundaries: a few random cuts.
    let mut cuts: Vec<usize> = (0..rng.random_range(0..4))
        .map(|_| rng.random_range(1..STATEMENTS))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    (stmts, cuts)
}

// ---------------------------------------------------------------------------
// Running the three ways
// ---------------------------------------------------------------------------

async fn create_schemas(conn: &mut PgConnection) {
    for schema in [LIVE, BATCH, FUSED] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl(schema)))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// Empties the three schemas' tables (cheaper than recreating them).
async fn reset(conn: &mut PgConnection) {
    let tables: Vec<String> = [LIVE, BATCH, FUSED]
        .iter()
        .flat_map(|s| [format!("{s}.t"), format!("{s}.child")])
        .collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "TRUNCATE {}",
        tables.join(", ")
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// The live path: each statement prepared, parameters bound, in order.
async fn run_live(conn: &mut PgConnection, stmts: &[Stmt]) -> Result<(), String> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path TO {LIVE}, public"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    for (i, stmt) in stmts.iter().enumerate() {
        stmt.execute(&mut *conn)
            .await
            .map_err(|e| format!("live statement {i} failed: {e}\n{stmt:?}"))?;
    }
    Ok(())
}

/// Renders `chunks` one `render_batch` each and runs them as a replay does:
/// a transaction per batch with `search_path` set locally, the batch as one
/// simple query. `standard_conforming_strings` is turned *off* here (every
/// other test runs with the default, on): the rendered literals must read
/// the same under either setting, hostile text included.
async fn run_rendered(
    conn: &mut PgConnection,
    schema: &str,
    chunks: Vec<String>,
) -> Result<(), String> {
    for (i, sql) in chunks.into_iter().enumerate() {
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET LOCAL search_path TO {schema}, public; \
             SET LOCAL standard_conforming_strings = off"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        let outcome = if sql.is_empty() {
            Ok(())
        } else {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *conn)
                .await
                .map(|_| ())
        };
        match outcome {
            Ok(()) => {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await.unwrap();
            }
            Err(e) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
                return Err(format!("{schema}: rendered batch {i} failed: {e}\n{sql}"));
            }
        }
    }
    Ok(())
}

fn batches(stmts: &[Stmt], cuts: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([stmts.len()].iter()) {
        let cut = cut.min(stmts.len());
        if cut > from {
            out.push(render_batch(stmts[from..cut].to_vec()));
            from = cut;
        }
    }
    out
}

fn fused(stmts: &[Stmt]) -> Vec<String> {
    let mut sql = String::new();
    for stmt in stmts {
        stmt.render(&mut sql);
    }
    vec![sql]
}

/// Every table's rows as text (`row::text` keeps what `to_jsonb` would
/// blur, e.g. `-0` floats), by id.
async fn contents(conn: &mut PgConnection, schema: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in ["t", "child"] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT x::text FROM {schema}.{table} x ORDER BY id"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        out.insert(table, rows);
    }
    out
}

/// Runs `stmts` the three ways; `Ok(None)` when all agree, `Ok(Some(why))`
/// when a rendering differs from the live path, `Err` when the live path
/// itself fails (an invalid sequence, e.g. while shrinking).
async fn check(
    conn: &mut PgConnection,
    stmts: &[Stmt],
    cuts: &[usize],
) -> Result<Option<String>, String> {
    reset(conn).await;
    run_live(conn, stmts).await?;
    let live = contents(conn, LIVE).await;
    for (schema, chunks) in [(BATCH, batches(stmts, cuts)), (FUSED, fused(stmts))] {
        if let Err(e) = run_rendered(conn, schema, chunks).await {
            return Ok(Some(e));
        }
        let other = contents(conn, schema).await;
        if other != live {
            let mut why = format!("{schema} differs from {LIVE}:\n");
            for (table, rows) in &live {
                let theirs = &other[table];
                for row in rows.iter().filter(|r| !theirs.contains(r)) {
                    why.push_str(&format!("  only {LIVE}.{table}:   {row}\n"));
                }
                for row in theirs.iter().filter(|r| !rows.contains(r)) {
                    why.push_str(&format!("  only {schema}.{table}: {row}\n"));
                }
            }
            return Ok(Some(why));
        }
    }
    Ok(None)
}

/// Drops statements one at a time while the difference persists (and the
/// live path still succeeds): the smallest sequence found, for the report.
async fn shrink(conn: &mut PgConnection, mut stmts: Vec<Stmt>) -> (Vec<Stmt>, String) {
    let mut why = check(conn, &stmts, &[]).await.ok().flatten();
    if why.is_none() {
        // Needs the batch cuts to fail: keep the sequence as it is.
        return (stmts, String::from("(differs only with the original cuts)"));
    }
    let mut i = stmts.len();
    while i > 0 {
        i -= 1;
        let mut fewer = stmts.clone();
        fewer.remove(i);
        if let Ok(Some(w)) = check(conn, &fewer, &[]).await {
            stmts = fewer;
            why = Some(w);
        }
    }
    (stmts, why.unwrap_or_default())
}

/// Seeds to run, and whether to stop starting new ones after
/// `TIME_BUDGET` (only for the default list: the test must stay short on
/// a loaded machine).
fn seeds() -> (Vec<u64>, bool) {
    if let Some(seed) = std::env::var("REPLAY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return (vec![seed], false);
    }
    match std::env::var("REPLAY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => ((1..=n).collect(), false),
        None => ((1..=DEFAULT_SEEDS).collect(), true),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn batched_replay_equals_one_by_one_replay(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    create_schemas(&mut conn).await;
    let started = Instant::now();
    let (seeds, budgeted) = seeds();
    let mut ran = 0;
    // Statements in, statements the replay sent (about: a value may hold
    // ";\n" too): how much the batches merged.
    let (mut sent, mut rendered) = (0, 0);
    for &seed in &seeds {
        if budgeted && ran >= MIN_SEEDS && started.elapsed() > TIME_BUDGET {
            break;
        }
        ran += 1;
        let (stmts, cuts) = sequence(seed);
        sent += stmts.len();
        rendered += batches(&stmts, &cuts)
            .iter()
            .map(|b| b.matches(";\n").count())
            .sum::<usize>();
        match check(&mut conn, &stmts, &cuts).await {
            Ok(None) => {}
            Err(live) => {
                panic!("seed {seed}: the generator wrote an invalid sequence (a test bug): {live}")
            }
            Ok(Some(why)) => {
                let (small, small_why) = shrink(&mut conn, stmts).await;
                let listing: String = small
                    .iter()
                    .map(|s| format!("  {:?} keys={:?}\n    {:?}\n", s.sql, s.keys, s.args))
                    .collect();
                // The full sequence's difference can be a whole batch of SQL:
                // its start is enough next to the shrunk case.
                let why: String = why.chars().take(1500).collect();
                panic!(
                    "seed {seed}: replay differs from the live path\n{why}\n\
                     shrunk to {} statement(s):\n{listing}{small_why}\n\
                     rendered batch:\n{}\n\
                     rerun: REPLAY_SEED={seed} cargo test --workspace --test replay_equivalence",
                    small.len(),
                    render_batch(small.clone()),
                );
            }
        }
    }
    eprintln!(
        "{ran} of {} seeds x {STATEMENTS} statements in {:.1?}; replay batches: {sent} \
         statements rendered as ~{rendered}",
        seeds.len(),
        started.elapsed()
    );
}

/// Values whose rendered literal once read back differently from the
/// bound parameter, and a template whose rendering changed its meaning.
#[sqlx::test(migrations = "../migrations")]
async fn literal_edge_values_match_bound_parameters(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    create_schemas(&mut conn).await;
    let nanos = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    };
    let cases: Vec<(&str, Vec<Stmt>)> = vec![
        (
            "i64::MIN",
            vec![
                Stmt::new("INSERT INTO t (id, b) VALUES ($1, $2)")
                    .arg(parent_id(1))
                    .arg(i64::MIN),
            ],
        ),
        (
            "NaN",
            vec![
                Stmt::new("INSERT INTO t (id, f) VALUES ($1, $2)")
                    .arg(parent_id(1))
                    .arg(f64::NAN),
            ],
        ),
        (
            "infinity",
            vec![
                Stmt::new("INSERT INTO t (id, f) VALUES ($1, $2)")
                    .arg(parent_id(1))
                    .arg(f64::INFINITY),
            ],
        ),
        (
            "sub-microsecond timestamp (bound truncates, the literal rounds)",
            vec![
                Stmt::new("INSERT INTO t (id, e) VALUES ($1, $2)")
                    .arg(parent_id(1))
                    .arg(nanos("2024-01-01T00:00:00.0000017Z")),
            ],
        ),
        (
            "year 0 (1 BC)",
            vec![
                Stmt::new("INSERT INTO t (id, e) VALUES ($1, $2)")
                    .arg(parent_id(1))
                    .arg(nanos("0000-06-01T00:00:00Z")),
            ],
        ),
        (
            "year 10000",
            vec![
                Stmt::new("INSERT INTO t (id, e) VALUES ($1, $2)")
                    .arg(parent_id(1))
                    .arg(Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap()),
            ],
        ),
        (
            "`-$n` in a template with a negative value (renders `--`, a comment)",
            vec![
                Stmt::new("INSERT INTO t (id, n) VALUES ($1, 5)").arg(parent_id(1)),
                Stmt::new("UPDATE t SET n = n-$2 WHERE id = $1")
                    .arg(parent_id(1))
                    .arg(-3i64),
                Stmt::new("UPDATE t SET a = 'after' WHERE id = $1").arg(parent_id(1)),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, stmts) in cases {
        match check(&mut conn, &stmts, &[]).await {
            Ok(None) => {}
            Ok(Some(why)) => failures.push(format!("{name}: {why}")),
            Err(live) => failures.push(format!("{name}: live path failed: {live}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Merged groups compare templates with whitespace normalised outside
/// string literals: runs of spaces inside a template's own literal stay.
#[sqlx::test(migrations = "../migrations")]
async fn template_whitespace_in_merged_groups(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    create_schemas(&mut conn).await;
    let stmts = vec![
        Stmt::new("INSERT INTO t (id, a) VALUES ($1, 'a  b')")
            .arg(parent_id(1))
            .with_row_key(),
        Stmt::new("INSERT INTO t (id, a) VALUES ($1, 'a  b')")
            .arg(parent_id(2))
            .with_row_key(),
    ];
    match check(&mut conn, &stmts, &[]).await {
        Ok(None) => {}
        Ok(Some(why)) => panic!("{why}"),
        Err(live) => panic!("live path failed: {live}"),
    }
}
