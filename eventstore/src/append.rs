use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::{AppendError, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamRef};

/// How [`AppendTx::lock_streams`] locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Exclusive,
    Shared,
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct AppendResult {
    /// The stream's version after the append (its number of events).
    pub stream_version: i64,
    /// The events as stored; empty when `idempotent`.
    pub events: Vec<RecordedEvent>,
    /// True when every event id was already in the stream: nothing was
    /// written and the earlier append stands.
    pub idempotent: bool,
}

/// One append transaction. Command handlers use it to put write-side
/// reservations (unique names, counters) in the same transaction as the
/// events; inline projectors run inside [`AppendTx::append`].
pub struct AppendTx {
    store: EventStore,
    tx: Transaction<'static, Postgres>,
    /// What this transaction appended, handed to the commit observers
    /// once it has committed.
    written: Vec<RecordedEvent>,
}

impl EventStore {
    pub async fn begin(&self) -> Result<AppendTx, sqlx::Error> {
        Ok(AppendTx {
            store: self.clone(),
            tx: self.pool().begin().await?,
            written: Vec::new(),
        })
    }

    /// Appends `events` to one stream atomically.
    ///
    /// Without inline projectors the append is one statement in autocommit
    /// (version check and insert in a single data-modifying CTE): one round
    /// trip, no `BEGIN`/`COMMIT`. With projectors it runs in a transaction
    /// so they commit or fail together with the events.
    pub async fn append(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        if self.projectors().is_empty() {
            let mut conn = self.pool().acquire().await?;
            let result = append_on(&mut conn, stream, expected, events).await?;
            if !result.events.is_empty() {
                self.after_commit(&result.events);
            }
            return Ok(result);
        }
        let mut tx = self.begin().await?;
        let result = tx.append(stream, expected, events).await?;
        tx.commit().await?;
        Ok(result)
    }
}

impl AppendTx {
    /// The transaction's connection, for write-side statements that must
    /// commit or roll back together with the events.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Locks the streams' rows until the transaction ends, in ascending id
    /// order (so that two commands locking overlapping sets queue instead
    /// of deadlocking); streams that do not exist yet are skipped.
    /// `Exclusive` serialises writers of a stream (they queue instead of
    /// losing optimistic races); `Shared` lets a command depend on a
    /// stream's current state (a sprint, a role) while others only read it.
    pub async fn lock_streams(&mut self, ids: &[Uuid], mode: LockMode) -> Result<(), sqlx::Error> {
        let sql = match mode {
            LockMode::Exclusive => {
                "SELECT 1 FROM streams WHERE stream_id = ANY($1) ORDER BY stream_id FOR UPDATE"
            }
            LockMode::Shared => {
                "SELECT 1 FROM streams WHERE stream_id = ANY($1) ORDER BY stream_id FOR SHARE"
            }
        };
        sqlx::query(sql).bind(ids).execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let store = self.store;
        self.tx.commit().await?;
        if !self.written.is_empty() {
            store.after_commit(&self.written);
        }
        Ok(())
    }

    pub async fn append(
        &mut self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let result = append_on(&mut self.tx, stream, expected, events).await?;
        if result.events.is_empty() {
            return Ok(result);
        }
        for projector in self.store.projectors() {
            projector
                .apply(&mut self.tx, &result.events)
                .await
                .map_err(|source| AppendError::Projector {
                    projector: projector.name().to_owned(),
                    source,
                })?;
        }
        self.written.extend_from_slice(&result.events);
        Ok(result)
    }
}

/// The version check and the insert, as one statement: `s` is the stream
/// row after the check (no row: the check failed) and the events join it,
/// so when the check fails no event row is produced and no identity value
/// is drawn. The `streams` row is written before any event, so an appender
/// holds `ROW EXCLUSIVE` on `streams` while its events are in flight (the
/// projection rebuild's final catch-up relies on that).
///
/// `$1` stream_type, `$2` stream_id, `$3` project_id, `$4`..`$8` the event
/// columns, `$9` the number of events, `$10` the expected version.
macro_rules! append_sql {
    ($check:literal) => {
        concat!(
            "WITH s AS (",
            $check,
            " RETURNING version)
             INSERT INTO events (stream_type, stream_id, project_id, version, event_id,
                                 event_type, schema_version, payload, metadata)
             SELECT $1, $2, $3, s.version - $9 + u.ord, u.event_id, u.event_type,
                    u.schema_version, u.payload, u.metadata
             FROM s, UNNEST($4::uuid[], $5::text[], $6::int2[], $7::jsonb[], $8::jsonb[])
                     WITH ORDINALITY AS u(event_id, event_type, schema_version, payload,
                                          metadata, ord)
             ORDER BY u.ord
             RETURNING global_position, tx_id::text::bigint AS tx_id, version, event_id,
                       event_type, schema_version, payload, metadata, recorded_at"
        )
    };
}

const APPEND_EXACT: &str =
    append_sql!("UPDATE streams SET version = version + $9 WHERE stream_id = $2 AND version = $10");
const APPEND_NO_STREAM: &str = append_sql!(
    "INSERT INTO streams (stream_id, stream_type, version) VALUES ($2, $1, $9)
     ON CONFLICT (stream_id) DO NOTHING"
);
/// No version check, but no write either when any of the ids is stored
/// already: a retry (or a duplicate), sorted out after.
const APPEND_ANY: &str = append_sql!(
    "INSERT INTO streams (stream_id, stream_type, version)
     SELECT $2, $1, $9 WHERE NOT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($4))
     ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version"
);

/// The append proper, on a connection in autocommit or in a transaction.
async fn append_on(
    conn: &mut PgConnection,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult, AppendError> {
    let count = events.len() as i64;
    if count == 0 {
        let version = current_version(conn, stream.stream_id).await?;
        return Ok(AppendResult {
            stream_version: version.unwrap_or(0),
            events: Vec::new(),
            idempotent: false,
        });
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut schema_versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut metadata = Vec::with_capacity(events.len());
    for event in events {
        ids.push(event.event_id);
        types.push(event.event_type);
        schema_versions.push(event.schema_version);
        payloads.push(event.payload);
        metadata.push(serde_json::to_value(&event.metadata).unwrap_or_default());
    }
    let (sql, exact) = match expected {
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => (APPEND_NO_STREAM, None),
        ExpectedVersion::Exact(version) => (APPEND_EXACT, Some(version)),
        ExpectedVersion::Any => (APPEND_ANY, None),
    };
    let mut query = sqlx::query(sql)
        .bind(stream.stream_type)
        .bind(stream.stream_id)
        .bind(stream.project_id)
        .bind(&ids)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(count);
    if let Some(version) = exact {
        query = query.bind(version);
    }
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("events_event_id_key") => {
                AppendError::DuplicateEventIds(ids.clone())
            }
            _ => AppendError::Database(error),
        })?;

    if rows.is_empty() {
        // The check failed (or, with `Any`, some id is stored already): a
        // retry of a committed append, a duplicate id, or a conflict. (With
        // `Any` the ids are found: the log is append-only and this statement
        // sees at least what the append's statement saw.)
        if let Some(result) = already_appended(conn, stream.stream_id, &ids).await? {
            return Ok(result);
        }
        return Err(AppendError::VersionConflict {
            stream_id: stream.stream_id,
            expected,
            actual: current_version(conn, stream.stream_id).await?,
        });
    }

    // `try_get`: a payload PostgreSQL stores but serde cannot read back is an
    // error (in a transaction, the append rolls back), not a panic that drops
    // the client's connection. Such payloads are kept out at the edge:
    // serde_json's `float_roundtrip` reads back every double PostgreSQL prints.
    let mut recorded: Vec<RecordedEvent> = rows
        .into_iter()
        .map(|row| {
            Ok(RecordedEvent {
                global_position: row.try_get("global_position")?,
                tx_id: row.try_get("tx_id")?,
                stream_type: stream.stream_type.to_owned(),
                stream_id: stream.stream_id,
                version: row.try_get("version")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                schema_version: row.try_get("schema_version")?,
                project_id: stream.project_id,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AppendError::Database)?;
    recorded.sort_by_key(|e| e.version);
    Ok(AppendResult {
        stream_version: recorded.last().map_or(0, |e| e.version),
        events: recorded,
        idempotent: false,
    })
}

/// `Some` when all `ids` are already stored in this stream (a retried
/// append); an error when only some are, or they are in another stream.
async fn already_appended(
    conn: &mut PgConnection,
    stream_id: Uuid,
    ids: &[Uuid],
) -> Result<Option<AppendResult>, AppendError> {
    let found: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT event_id, stream_id FROM events WHERE event_id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    if found.is_empty() {
        return Ok(None);
    }
    if found.len() != ids.len() || found.iter().any(|(_, s)| *s != stream_id) {
        return Err(AppendError::DuplicateEventIds(
            found.into_iter().map(|(id, _)| id).collect(),
        ));
    }
    Ok(Some(AppendResult {
        stream_version: current_version(conn, stream_id).await?.unwrap_or(0),
        events: Vec::new(),
        idempotent: true,
    }))
}

async fn current_version(
    conn: &mut PgConnection,
    stream_id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_optional(conn)
        .await
}
