use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{EventStore, RecordedEvent};

/// A point in the global order `(tx_id, global_position)`. `Default` is the
/// start of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GlobalPosition {
    pub tx_id: i64,
    pub position: i64,
}

impl GlobalPosition {
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            tx_id: event.tx_id,
            position: event.global_position,
        }
    }
}

/// Note: `tx_id` is selected as a bigint under its own name, so an
/// `ORDER BY tx_id` would sort by that output expression (a full sort of the
/// remaining log, measured 100 ms per 5k batch) instead of walking the
/// index; order by `events.tx_id` explicitly.
const COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, stream_type, stream_id, \
     version, event_id, event_type, schema_version, project_id, payload, metadata, recorded_at";

/// [`COLUMNS`] without the payload and metadata (read as JSON `null`), for
/// consumers that only need where events are (the log sealer).
const HEADER_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, stream_type, \
     stream_id, version, event_id, event_type, schema_version, project_id, \
     'null'::jsonb AS payload, 'null'::jsonb AS metadata, recorded_at";

pub(crate) fn from_row(row: &PgRow) -> RecordedEvent {
    RecordedEvent {
        global_position: row.get("global_position"),
        tx_id: row.get("tx_id"),
        stream_type: row.get("stream_type"),
        stream_id: row.get("stream_id"),
        version: row.get("version"),
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        schema_version: row.get("schema_version"),
        project_id: row.get("project_id"),
        payload: row.get("payload"),
        metadata: row.get("metadata"),
        recorded_at: row.get("recorded_at"),
    }
}

impl EventStore {
    /// The events of one stream with `version > after_version`, upcast.
    pub async fn read_stream(
        &self,
        stream_id: Uuid,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        self.read_stream_in(&mut conn, stream_id, after_version)
            .await
    }

    /// [`Self::read_stream`] on a given connection (e.g. inside an append
    /// transaction, to load an aggregate and write in one go).
    pub async fn read_stream_in(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream_id)
            .bind(after_version)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .iter()
            .map(|r| self.upcasters().upcast(from_row(r)))
            .collect())
    }

    /// The type of stream `stream_id` (`None`: no such stream), on a given
    /// connection, e.g. to tell "a task id where a doc id was expected"
    /// from a decoding failure before loading.
    pub async fn stream_type_in(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT stream_type FROM streams WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(conn)
            .await
    }

    /// Up to `limit` events of the given stream types after `after` in
    /// plain `global_position` order. NOT gap-safe: only for callers that
    /// hold `streams` locked against appends (a `SHARE` lock or stronger),
    /// so that every event that will ever have a lower position is
    /// committed. Within a stream this is version order.
    pub async fn read_by_position_while_locked(
        &self,
        conn: &mut PgConnection,
        after: i64,
        limit: i64,
        stream_types: &[String],
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events
             WHERE global_position > $1 AND stream_type = ANY($2)
             ORDER BY global_position LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(stream_types)
            .bind(limit)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .iter()
            .map(|r| self.upcasters().upcast(from_row(r)))
            .collect())
    }

    /// Up to `limit` events after `after` in global order, gap-safe: only
    /// events of transactions older than every transaction still in flight
    /// are returned, so an event that commits later can never appear
    /// *before* one this call already returned.
    pub async fn read_all(
        &self,
        after: GlobalPosition,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        self.read_all_in(&mut conn, after, limit, None).await
    }

    /// [`Self::read_all`] on a given connection, optionally limited to some
    /// stream types.
    pub async fn read_all_in(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
        stream_types: Option<&[String]>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        self.read_after(conn, after, limit, stream_types, Reading::SAFE)
            .await
    }

    /// [`Self::read_all_in`] for the subscription `name`: nothing while it
    /// is paused (checked in the same statement, so a runner that keeps
    /// its checkpoint in memory still stops when an operator pauses it).
    pub(crate) async fn read_for_subscription(
        &self,
        conn: &mut PgConnection,
        name: &str,
        after: GlobalPosition,
        limit: i64,
        stream_types: Option<&[String]>,
        headers_only: bool,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let reading = Reading {
            headers_only,
            unless_paused: Some(name),
            ..Reading::SAFE
        };
        self.read_after(conn, after, limit, stream_types, reading)
            .await
    }

    /// [`Self::read_all_in`] without payloads and metadata (JSON `null`),
    /// not upcast: for consumers that only need positions and ids.
    pub async fn read_all_headers_in(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
        stream_types: Option<&[String]>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        self.read_after(
            conn,
            after,
            limit,
            stream_types,
            Reading {
                headers_only: true,
                ..Reading::SAFE
            },
        )
        .await
    }

    /// Committed events after `after` *beyond* the gap-safe horizon too:
    /// what a reader sees if it does not wait for older in-flight
    /// transactions. A position read here is not a safe checkpoint (an
    /// older transaction may still commit below it), so only folds that
    /// are idempotent per stream version and re-read from their own safe
    /// position may use it (the directory, to see a user committed on
    /// another node while an unrelated long transaction holds the horizon).
    pub async fn read_ahead_in(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
        stream_types: &[String],
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        self.read_after(
            conn,
            after,
            limit,
            Some(stream_types),
            Reading {
                below_horizon: false,
                ..Reading::SAFE
            },
        )
        .await
    }

    async fn read_after(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
        stream_types: Option<&[String]>,
        reading: Reading<'_>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let Reading {
            below_horizon,
            headers_only,
            unless_paused,
        } = reading;
        let columns = if headers_only {
            HEADER_COLUMNS
        } else {
            COLUMNS
        };
        let sql = format!(
            "SELECT {columns} FROM events
             WHERE (tx_id, global_position) > ($1::text::xid8, $2)
               AND (NOT $5 OR tx_id < pg_snapshot_xmin(pg_current_snapshot()))
               AND ($4::text[] IS NULL OR stream_type = ANY($4))
               AND ($6::text IS NULL
                    OR NOT EXISTS (SELECT 1 FROM checkpoints WHERE name = $6 AND paused))
             ORDER BY events.tx_id, events.global_position
             LIMIT $3"
        );
        // Not a cached prepared statement: a generic plan cannot see where
        // the cursor is and may estimate a large share of the log, choosing
        // a bitmap scan + sort; the custom plan walks (tx_id, global_position).
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(after.tx_id.to_string())
            .bind(after.position)
            .bind(limit)
            .bind(stream_types)
            .bind(below_horizon)
            .bind(unless_paused)
            .fetch_all(conn)
            .await?;
        if headers_only {
            return Ok(rows.iter().map(from_row).collect());
        }
        Ok(rows
            .iter()
            .map(|r| self.upcasters().upcast(from_row(r)))
            .collect())
    }

    /// Every committed event after `after`, without the in-flight horizon.
    /// Only correct while appends are blocked (the final catch-up of a
    /// projection rebuild holds a lock that excludes writers).
    pub async fn read_all_quiesced(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events
             WHERE (tx_id, global_position) > ($1::text::xid8, $2)
             ORDER BY events.tx_id, events.global_position LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(after.tx_id.to_string())
            .bind(after.position)
            .bind(limit)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .iter()
            .map(|r| self.upcasters().upcast(from_row(r)))
            .collect())
    }

    /// One event by its global position or its id.
    pub async fn read_event(&self, key: EventKey) -> Result<Option<RecordedEvent>, sqlx::Error> {
        let (filter, position, id) = match key {
            EventKey::Position(p) => ("global_position = $1", Some(p), None),
            EventKey::Id(id) => ("event_id = $2", None, Some(id)),
        };
        let sql = format!("SELECT {COLUMNS} FROM events WHERE {filter}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(position)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| self.upcasters().upcast(from_row(&r))))
    }

    /// The newest event any gap-safe reader can see now, and how many
    /// events exist in total (for lag reporting).
    pub async fn head(&self) -> Result<(GlobalPosition, i64), sqlx::Error> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(tx_id::text::bigint), 0) AS tx_id,
                    COALESCE(MAX(global_position), 0) AS pos, COUNT(*) AS n
             FROM events WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((
            GlobalPosition {
                tx_id: row.get("tx_id"),
                position: row.get("pos"),
            },
            row.get("n"),
        ))
    }

    /// How many visible events come after `after` in global order.
    pub async fn count_after(&self, after: GlobalPosition) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM events
             WHERE (tx_id, global_position) > ($1::text::xid8, $2)
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot())",
        )
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .fetch_one(self.pool())
        .await
    }
}

/// How `paca events show` names an event.
#[derive(Debug, Clone, Copy)]
pub enum EventKey {
    Position(i64),
    Id(Uuid),
}

impl EventStore {
    /// Refuses to run when the cluster's transaction-id counter is behind
    /// the newest `tx_id` in the log (a logical restore into a new cluster):
    /// new events would sort before old ones and gap-safe readers would
    /// stall or misorder. See docs/operations.md, "Backup and restore".
    pub async fn check_xid_horizon(&self) -> Result<(), String> {
        let row = sqlx::query(
            "SELECT (SELECT MAX(tx_id) FROM events)::text AS newest,
                    pg_current_xact_id()::text AS current",
        )
        .fetch_one(self.pool())
        .await
        .map_err(|e| e.to_string())?;
        let newest: Option<String> = row.get("newest");
        let current: String = row.get("current");
        let (Some(newest), Ok(current)) = (newest, current.parse::<u64>()) else {
            return Ok(());
        };
        match newest.parse::<u64>() {
            Ok(newest) if newest >= current => Err(format!(
                "the event log's newest tx_id ({newest}) is ahead of this cluster's transaction \
                 counter ({current}); this happens after a logical restore into a new cluster. \
                 Run `paca events renumber` (with every server stopped), which rewrites the log's \
                 transaction ids below this cluster's counter keeping its order, or advance the \
                 counter past {newest} (docs/operations.md, \"Backup and restore\")"
            )),
            _ => Ok(()),
        }
    }
}

/// How [`EventStore::read_after`] reads.
#[derive(Debug, Clone, Copy)]
struct Reading<'a> {
    /// Stop at the gap-safe horizon (else: read ahead of it).
    below_horizon: bool,
    /// Positions and ids only.
    headers_only: bool,
    /// Nothing while this subscription is paused.
    unless_paused: Option<&'a str>,
}

impl Reading<'_> {
    const SAFE: Self = Self {
        below_horizon: true,
        headers_only: false,
        unless_paused: None,
    };
}
