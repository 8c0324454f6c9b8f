use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::{AppendError, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamRef};

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
    wrote: bool,
}

impl EventStore {
    pub async fn begin(&self) -> Result<AppendTx, sqlx::Error> {
        Ok(AppendTx {
            store: self.clone(),
            tx: self.pool().begin().await?,
            wrote: false,
        })
    }

    /// Appends `events` to one stream atomically.
    pub async fn append(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
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

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let store = self.store;
        self.tx.commit().await?;
        if self.wrote {
            store.after_commit();
        }
        Ok(())
    }

    pub async fn append(
        &mut self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let count = events.len() as i64;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        if count == 0 {
            let version = current_version(&mut self.tx, stream.stream_id).await?;
            return Ok(AppendResult {
                stream_version: version.unwrap_or(0),
                events: Vec::new(),
                idempotent: false,
            });
        }

        // With `Any` there is no version check to trip over a retry, so look
        // for the ids first; with an explicit version a retry of a committed
        // append always fails the check, and only then do we look.
        if expected == ExpectedVersion::Any
            && let Some(result) = self.already_appended(stream.stream_id, &ids).await?
        {
            return Ok(result);
        }

        let new_version = match expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => {
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, $2, $3)
                     ON CONFLICT (stream_id) DO NOTHING RETURNING version",
                )
                .bind(stream.stream_id)
                .bind(stream.stream_type)
                .bind(count)
                .fetch_optional(&mut *self.tx)
                .await?
            }
            ExpectedVersion::Exact(version) => {
                sqlx::query_scalar::<_, i64>(
                    "UPDATE streams SET version = version + $3
                     WHERE stream_id = $1 AND version = $2 RETURNING version",
                )
                .bind(stream.stream_id)
                .bind(version)
                .bind(count)
                .fetch_optional(&mut *self.tx)
                .await?
            }
            ExpectedVersion::Any => Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, $2, $3)
                     ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + $3
                     RETURNING version",
                )
                .bind(stream.stream_id)
                .bind(stream.stream_type)
                .bind(count)
                .fetch_one(&mut *self.tx)
                .await?,
            ),
        };
        let Some(new_version) = new_version else {
            if let Some(result) = self.already_appended(stream.stream_id, &ids).await? {
                return Ok(result);
            }
            return Err(AppendError::VersionConflict {
                stream_id: stream.stream_id,
                expected,
                actual: current_version(&mut self.tx, stream.stream_id).await?,
            });
        };
        let first_version = new_version - count + 1;

        let mut versions = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut schema_versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            versions.push(first_version + i as i64);
            types.push(event.event_type);
            schema_versions.push(event.schema_version);
            payloads.push(event.payload);
            metadata.push(serde_json::to_value(&event.metadata).unwrap_or_default());
        }
        let rows = sqlx::query(
            "INSERT INTO events (stream_type, stream_id, project_id, version, event_id,
                                 event_type, schema_version, payload, metadata)
             SELECT $1, $2, $3, u.version, u.event_id, u.event_type, u.schema_version,
                    u.payload, u.metadata
             FROM UNNEST($4::bigint[], $5::uuid[], $6::text[], $7::int2[], $8::jsonb[], $9::jsonb[])
                  AS u(version, event_id, event_type, schema_version, payload, metadata)
             RETURNING global_position, tx_id::text::bigint AS tx_id, version, event_id,
                       event_type, schema_version, payload, metadata, recorded_at",
        )
        .bind(stream.stream_type)
        .bind(stream.stream_id)
        .bind(stream.project_id)
        .bind(&versions)
        .bind(&ids)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("events_event_id_key") => {
                AppendError::DuplicateEventIds(ids.clone())
            }
            _ => AppendError::Database(error),
        })?;

        let mut recorded: Vec<RecordedEvent> = rows
            .into_iter()
            .map(|row| RecordedEvent {
                global_position: row.get("global_position"),
                tx_id: row.get("tx_id"),
                stream_type: stream.stream_type.to_owned(),
                stream_id: stream.stream_id,
                version: row.get("version"),
                event_id: row.get("event_id"),
                event_type: row.get("event_type"),
                schema_version: row.get("schema_version"),
                project_id: stream.project_id,
                payload: row.get("payload"),
                metadata: row.get("metadata"),
                recorded_at: row.get("recorded_at"),
            })
            .collect();
        recorded.sort_by_key(|e| e.version);

        for projector in self.store.projectors() {
            projector
                .apply(&mut self.tx, &recorded)
                .await
                .map_err(|source| AppendError::Projector {
                    projector: projector.name().to_owned(),
                    source,
                })?;
        }
        self.wrote = true;
        Ok(AppendResult {
            stream_version: new_version,
            events: recorded,
            idempotent: false,
        })
    }

    /// `Some` when all `ids` are already stored in this stream (a retried
    /// append); an error when only some are, or they are in another stream.
    async fn already_appended(
        &mut self,
        stream_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Option<AppendResult>, AppendError> {
        let found: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT event_id, stream_id FROM events WHERE event_id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut *self.tx)
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
            stream_version: current_version(&mut self.tx, stream_id).await?.unwrap_or(0),
            events: Vec::new(),
            idempotent: true,
        }))
    }
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
