//! Per-plugin database isolation (the Paca weakness GHSA-g6mx-8g92-w9v5 is
//! that a plugin's SQL runs as the server's own role with a `search_path`).
//!
//! Each plugin gets its own PostgreSQL role, which owns the schema
//! `plugin_data_<name>` and has no other rights. The plugin's statements
//! run on connections that *log in* as that role (a pool per plugin), each
//! in its own transaction that starts with `SET LOCAL ROLE` to the same
//! role, a `search_path` of its schema and a statement timeout bounded by
//! the call's deadline. Because the session user itself is the plugin
//! role, `RESET ROLE`, `SET ROLE` or `set_config('role', …)` cannot reach
//! any other role (with `SET LOCAL ROLE` alone from the server's session,
//! they would return to the server's superuser). Whatever SQL a plugin
//! sends, it cannot read or write `public`, `rm`, the event log or another
//! plugin's schema: PostgreSQL refuses it.

use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Executor, PgPool, Postgres, Row, SqlSafeStr, TypeInfo, ValueRef};
use uuid::Uuid;

use crate::manifest::{quote_ident, role_name, schema_name};

/// Largest JSON result a query may return to a guest.
const MAX_RESULT_BYTES: usize = 16 << 20;

#[derive(Clone)]
pub struct PluginDb {
    pub schema: String,
    pub role: String,
    pool: PgPool,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The role's login password: derived from the server's secret, so it is
/// never stored anywhere (and never in the event log).
fn password(secret: &[u8], role: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"paca-plugin-db-role\0");
    hasher.update(secret);
    hasher.update(role.as_bytes());
    hex::encode(hasher.finalize())
}

impl PluginDb {
    /// Creates (or refreshes) the plugin's role and schema with the
    /// server's own connection, then opens a pool that logs in as the role.
    pub async fn provision(
        admin: &PgPool,
        plugin: &str,
        secret: &[u8],
        max_connections: u32,
    ) -> Result<Self, String> {
        let schema = schema_name(plugin);
        let role = role_name(plugin);
        let pw = password(secret, &role);
        let (r, s) = (quote_ident(&role), quote_ident(&schema));
        let mut conn = admin.acquire().await.map_err(err)?;
        // Serialise provisioning of one plugin across servers.
        sqlx::query("SELECT pg_advisory_lock(hashtextextended('paca.plugin.provision.' || $1, 0))")
            .bind(&role)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        let result = async {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                    .bind(&role)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(err)?;
            // The password is hex (no quote can appear in it).
            let attributes = format!(
                "LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
                 CONNECTION LIMIT {} PASSWORD '{pw}'",
                max_connections + 4
            );
            let alter = format!("ALTER ROLE {r} {attributes}");
            let created = if exists {
                Ok(())
            } else {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {r} {attributes}")))
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            };
            // Roles are cluster-wide while the advisory lock is per
            // database: another database of the cluster may have created
            // it meanwhile (42710 duplicate_object), then it is altered.
            let lost_race = match created {
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42710") => true,
                Err(e) => return Err(format!("creating the plugin's database role {role}: {e}")),
                Ok(()) => false,
            };
            if exists || lost_race {
                sqlx::raw_sql(sqlx::AssertSqlSafe(alter))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| format!("updating the plugin's database role {role}: {e}"))?;
            }
            let superuser: bool =
                sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(err)?;
            if !superuser {
                // A CREATEROLE server role must be a member to hand the
                // schema over.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("GRANT {r} TO CURRENT_USER")))
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {r};
                 ALTER SCHEMA {s} OWNER TO {r};
                 REVOKE ALL ON SCHEMA {s} FROM PUBLIC;"
            )))
            .execute(&mut *conn)
            .await
            .map_err(|e| format!("creating schema {schema}: {e}"))?;
            Ok::<_, String>(())
        }
        .await;
        let _ = sqlx::query(
            "SELECT pg_advisory_unlock(hashtextextended('paca.plugin.provision.' || $1, 0))",
        )
        .bind(&role)
        .execute(&mut *conn)
        .await;
        result?;
        drop(conn);

        let options: PgConnectOptions = (*admin.connect_options())
            .clone()
            .username(&role)
            .password(&pw)
            .application_name(&format!("paca-plugin:{plugin}"));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(60)))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let db = Self { schema, role, pool };
        db.bootstrap().await?;
        Ok(db)
    }

    /// The host's own tables in the schema, created by the plugin role.
    async fn bootstrap(&self) -> Result<(), String> {
        let mut tx = self
            .begin(Instant::now() + Duration::from_secs(30), false)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS plugin_kv (
                 key TEXT PRIMARY KEY, value TEXT NOT NULL DEFAULT '');
             CREATE TABLE IF NOT EXISTS plugin_schema_migrations (
                 filename TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("creating plugin_kv/plugin_schema_migrations: {e}"))?;
        tx.commit().await.map_err(err)
    }

    /// A transaction running as the plugin's role in its schema.
    async fn begin(
        &self,
        deadline: Instant,
        read_only: bool,
    ) -> Result<sqlx::Transaction<'static, Postgres>, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(crate::host::DEADLINE_MESSAGE.into());
        }
        let mut tx = tokio::time::timeout(left, self.pool.begin())
            .await
            .map_err(|_| "timed out waiting for a database connection".to_owned())?
            .map_err(|e| format!("database connection failed: {e}"))?;
        let ms = left.as_millis().max(1);
        let setup = format!(
            "{}SET LOCAL ROLE {}; SET LOCAL search_path TO {}, public; SET LOCAL statement_timeout = {ms}; \
             SET LOCAL lock_timeout = {ms};",
            if read_only {
                "SET TRANSACTION READ ONLY; "
            } else {
                ""
            },
            quote_ident(&self.role),
            quote_ident(&self.schema),
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        Ok(tx)
    }

    /// Applies `migrations/*.sql` files not yet recorded, in name order,
    /// each in its own transaction under the plugin's role. Returns the
    /// names applied now.
    pub async fn migrate(&self, files: &[(String, String)]) -> Result<Vec<String>, String> {
        let mut files: Vec<&(String, String)> = files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut applied = Vec::new();
        for (name, sql) in files {
            let mut tx = self
                .begin(Instant::now() + Duration::from_secs(300), false)
                .await?;
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended('paca.plugin.migrate.' || $1, 0))",
            )
            .bind(&self.schema)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            let done: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM plugin_schema_migrations WHERE filename = $1)",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            if done {
                continue;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("migration {name} failed: {e}"))?;
            sqlx::query("INSERT INTO plugin_schema_migrations (filename) VALUES ($1)")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            applied.push(name.clone());
        }
        Ok(applied)
    }

    /// `db_query`: read-only, `{"columns": [...], "rows": [[...]] | null}`.
    pub async fn query(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<Value, String> {
        let mut tx = self.begin(deadline, true).await?;
        let query = bind_all(&mut tx, sql, params).await?;
        let rows = query.fetch_all(&mut *tx).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        rows_to_json(&rows)
    }

    /// `db_exec`: rows affected.
    pub async fn exec(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<u64, String> {
        let mut tx = self.begin(deadline, false).await?;
        let query = bind_all(&mut tx, sql, params).await?;
        let done = query.execute(&mut *tx).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(done.rows_affected())
    }

    pub async fn kv_get(&self, key: &str, deadline: Instant) -> Result<Option<String>, String> {
        let mut tx = self.begin(deadline, true).await?;
        let value = sqlx::query_scalar("SELECT value FROM plugin_kv WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(value)
    }

    pub async fn kv_set(&self, key: &str, value: &str, deadline: Instant) -> Result<(), String> {
        let mut tx = self.begin(deadline, false).await?;
        sqlx::query(
            "INSERT INTO plugin_kv (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    pub async fn kv_delete(&self, key: &str, deadline: Instant) -> Result<(), String> {
        let mut tx = self.begin(deadline, false).await?;
        sqlx::query("DELETE FROM plugin_kv WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type Q<'q> = Query<'q, Postgres, PgArguments>;

/// Binds JSON params to the parameter types PostgreSQL infers for `sql`
/// (described first), so `$1` can be a uuid, a timestamp or jsonb as the
/// statement needs, as Paca's pgx-based host allows.
async fn bind_all(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    sql: &str,
    params: &[Value],
) -> Result<Q<'static>, String> {
    let described = (&mut **tx)
        .describe(sqlx::AssertSqlSafe(sql.to_owned()).into_sql_str())
        .await
        .map_err(err)?;
    let types: Vec<String> = match described.parameters() {
        Some(either) => match either {
            sqlx::Either::Left(types) => types.iter().map(|t| t.name().to_owned()).collect(),
            sqlx::Either::Right(n) => vec!["TEXT".to_owned(); n],
        },
        None => vec![],
    };
    if types.len() != params.len() {
        return Err(format!(
            "the statement has {} parameter(s), {} given",
            types.len(),
            params.len()
        ));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for (i, (ty, value)) in types.iter().zip(params).enumerate() {
        query = bind_one(query, ty, value).map_err(|e| format!("parameter ${}: {e}", i + 1))?;
    }
    Ok(query)
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn bind_one<'q>(query: Q<'q>, ty: &str, value: &Value) -> Result<Q<'q>, String> {
    let null = value.is_null();
    macro_rules! opt {
        ($conv:expr) => {
            if null { None } else { Some($conv?) }
        };
    }
    let int = |v: &Value| -> Result<i64, String> {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| format!("expected an integer, got {v}"))
    };
    let float = |v: &Value| -> Result<f64, String> {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| format!("expected a number, got {v}"))
    };
    let string = |v: &Value| -> Result<String, String> { Ok(as_text(v).unwrap_or_default()) };
    Ok(match ty {
        "BOOL" => query.bind(opt!(
            value
                .as_bool()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| format!("expected a boolean, got {value}"))
        )),
        "INT2" => query.bind(opt!(int(value).map(|v| v as i16))),
        "INT4" => query.bind(opt!(int(value).map(|v| v as i32))),
        "INT8" => query.bind(opt!(int(value))),
        "FLOAT4" => query.bind(opt!(float(value).map(|v| v as f32))),
        "FLOAT8" | "NUMERIC" => query.bind(opt!(float(value))),
        "UUID" => query.bind(opt!(
            string(value).and_then(|s| Uuid::parse_str(&s).map_err(err))
        )),
        "JSON" | "JSONB" => query.bind(if null { None } else { Some(value.clone()) }),
        "TIMESTAMPTZ" => query.bind(opt!(string(value).and_then(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(err)
        }))),
        "TIMESTAMP" => query.bind(opt!(
            string(value).and_then(|s| s.parse::<NaiveDateTime>().map_err(err))
        )),
        "DATE" => query.bind(opt!(
            string(value).and_then(|s| s.parse::<NaiveDate>().map_err(err))
        )),
        "BYTEA" => query.bind(opt!(string(value).and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(err)
        }))),
        "TEXT[]" | "VARCHAR[]" => query.bind(opt!(
            value
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|v| as_text(v).unwrap_or_default())
                    .collect::<Vec<String>>())
                .ok_or_else(|| "expected an array".to_owned())
        )),
        "UUID[]" => query.bind(opt!(
            value
                .as_array()
                .ok_or_else(|| "expected an array".to_owned())
                .and_then(|a| a
                    .iter()
                    .map(|v| Uuid::parse_str(v.as_str().unwrap_or_default()).map_err(err))
                    .collect::<Result<Vec<Uuid>, String>>())
        )),
        "INT8[]" => query.bind(opt!(
            value
                .as_array()
                .ok_or_else(|| "expected an array".to_owned())
                .and_then(|a| a.iter().map(int).collect::<Result<Vec<i64>, String>>())
        )),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "UNKNOWN" | "XML" => {
            query.bind(as_text(value))
        }
        other => {
            return Err(format!(
                "unsupported parameter type {other}; cast it in SQL (e.g. $1::text::{})",
                other.to_lowercase()
            ));
        }
    })
}

fn rows_to_json(rows: &[PgRow]) -> Result<Value, String> {
    let columns: Vec<String> = rows
        .first()
        .map(|r| r.columns().iter().map(|c| c.name().to_owned()).collect())
        .unwrap_or_default();
    if rows.is_empty() {
        return Ok(json!({"columns": columns, "rows": null}));
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut size = 0usize;
    for row in rows {
        let mut values = Vec::with_capacity(row.columns().len());
        for (i, column) in row.columns().iter().enumerate() {
            let value = cell(row, i, column.type_info().name())
                .map_err(|e| format!("column {:?}: {e}", column.name()))?;
            values.push(value);
        }
        let row = Value::Array(values);
        size += row.to_string().len();
        if size > MAX_RESULT_BYTES {
            return Err(format!("query result exceeds {MAX_RESULT_BYTES} bytes"));
        }
        out.push(row);
    }
    Ok(json!({"columns": columns, "rows": out}))
}

fn cell(row: &PgRow, i: usize, ty: &str) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<$t, _>(i).map_err(err)?
        };
    }
    Ok(match ty {
        "BOOL" => json!(get!(bool)),
        "INT2" => json!(get!(i16)),
        "INT4" => json!(get!(i32)),
        "INT8" => json!(get!(i64)),
        "OID" => json!(get!(sqlx::postgres::types::Oid).0),
        "FLOAT4" => json!(get!(f32)),
        "FLOAT8" => json!(get!(f64)),
        "UUID" => json!(get!(Uuid).to_string()),
        "JSON" | "JSONB" => get!(Value),
        "TIMESTAMPTZ" => json!(get!(DateTime<Utc>).to_rfc3339()),
        "TIMESTAMP" => json!(get!(NaiveDateTime).to_string()),
        "DATE" => json!(get!(NaiveDate).to_string()),
        "BYTEA" => json!(base64::engine::general_purpose::STANDARD.encode(get!(Vec<u8>))),
        "TEXT[]" | "VARCHAR[]" | "NAME[]" => json!(get!(Vec<String>)),
        "UUID[]" => json!(
            get!(Vec<Uuid>)
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
        ),
        "INT4[]" => json!(get!(Vec<i32>)),
        "INT8[]" => json!(get!(Vec<i64>)),
        "BOOL[]" => json!(get!(Vec<bool>)),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "UNKNOWN" => json!(get!(String)),
        other => {
            return Err(format!(
                "unsupported column type {other}; cast it in SQL (e.g. col::text or col::float8)"
            ));
        }
    })
}
