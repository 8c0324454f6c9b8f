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
        Ok(self
            .read_after(conn, after, limit, stream_types, Reading::SAFE)
            .await?
            .events)
    }

    /// [`Self::read_all_in`] of some stream types, with where the reader
    /// may continue from ([`Batch::next_after`]) when fewer than `limit`
    /// events matched.
    pub async fn read_types_in(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
        stream_types: &[String],
    ) -> Result<Batch, sqlx::Error> {
        self.read_after(conn, after, limit, Some(stream_types), Reading::SAFE)
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
    ) -> Result<Batch, sqlx::Error> {
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
        Ok(self
            .read_after(
                conn,
                after,
                limit,
                stream_types,
                Reading {
                    headers_only: true,
                    ..Reading::SAFE
                },
            )
            .await?
            .events)
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
        Ok(self
            .read_after(
                conn,
                after,
                limit,
                Some(stream_types),
                Reading {
                    below_horizon: false,
                    ..Reading::SAFE
                },
            )
            .await?
            .events)
    }

    async fn read_after(
        &self,
        conn: &mut PgConnection,
        after: GlobalPosition,
        limit: i64,
        stream_types: Option<&[String]>,
        reading: Reading<'_>,
    ) -> Result<Batch, sqlx::Error> {
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
        // The statement is prepared once per connection and PostgreSQL
        // keeps its generic plan, so a read is not planned again every
        // time (0.15-0.25 ms on a quiet 1M-event log, several ms under
        // load). That needs the cursor behind InitPlans: as a plain
        // parameter, each custom plan probes the end of `events_tx_pos_idx`
        // for a value past the histogram, and its estimate, far below the
        // generic plan's, keeps PostgreSQL re-planning. Hidden from both,
        // the estimates agree, PostgreSQL settles on the generic plan after
        // five reads, and the plan is an ordered index walk from the cursor
        // that reads a batch's worth of entries. The limit is a literal for
        // the same reason: as a parameter the generic plan assumes a tenth
        // of the log.
        let mut filters = String::new();
        if below_horizon {
            filters.push_str(" AND tx_id < pg_snapshot_xmin(pg_current_snapshot())");
        }
        // Nothing at all while paused, the horizon included: a paused
        // runner must not move its cursor past events it never handled.
        let paused = match unless_paused {
            Some(_) => " AND NOT EXISTS (SELECT 1 FROM checkpoints WHERE name = $3 AND paused)",
            None => "",
        };
        filters.push_str(paused);
        let limit = limit.max(0);
        let after_cursor =
            "(tx_id, global_position) > ((SELECT $1::text::xid8), (SELECT $2::bigint))";
        let order = "ORDER BY events.tx_id, events.global_position";
        let batch = match stream_types {
            None => format!(
                "SELECT false AS horizon, {columns} FROM events
                 WHERE {after_cursor}{filters} {order} LIMIT {limit}"
            ),
            // One ordered walk of `events_type_tx_pos_idx` per type, each
            // reading at most a batch: a reader of rare types (the
            // directory) reads its matches, not every event since its
            // cursor. The types are literals (they are the code's stream
            // type names, quoted all the same): as parameters the planner
            // would not know each walk's order and would filter the whole
            // log's index instead.
            Some(types) => {
                let walks: Vec<String> = types
                    .iter()
                    .map(|stream_type| {
                        let stream_type = stream_type.replace('\'', "''");
                        format!(
                            "(SELECT false AS horizon, {columns} FROM events
                              WHERE stream_type = '{stream_type}' AND {after_cursor}{filters}
                              {order} LIMIT {limit})"
                        )
                    })
                    .collect();
                if walks.is_empty() {
                    return Ok(Batch {
                        limit,
                        ..Batch::default()
                    });
                }
                format!(
                    "SELECT * FROM ({}) walks ORDER BY tx_id, global_position LIMIT {limit}",
                    walks.join(" UNION ALL ")
                )
            }
        };
        // A typed reader below the horizon also learns the newest event of
        // any type under it: with fewer than `limit` matches it has seen
        // every match there, so its cursor can move past the rest. Its
        // checkpoint then says how far behind the log it really is (not
        // how long ago its types last appeared). A backward step on the
        // index.
        let horizon = below_horizon && stream_types.is_some();
        let sql = if horizon {
            format!(
                "SELECT * FROM (({batch})
                 UNION ALL
                 (SELECT true AS horizon, {HEADER_COLUMNS} FROM events
                  WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()){paused}
                  ORDER BY events.tx_id DESC, events.global_position DESC
                  LIMIT 1)) b
                 ORDER BY horizon, tx_id, global_position"
            )
        } else {
            batch
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.tx_id.to_string())
            .bind(after.position);
        if let Some(name) = unless_paused {
            query = query.bind(name);
        }
        let rows = query.fetch_all(conn).await?;
        let mut batch = Batch {
            events: Vec::with_capacity(rows.len()),
            horizon: None,
            limit,
        };
        for row in &rows {
            let event = from_row(row);
            if row.get::<bool, _>("horizon") {
                batch.horizon = Some(GlobalPosition::of(&event));
            } else if headers_only {
                batch.events.push(event);
            } else {
                batch.events.push(self.upcasters().upcast(event));
            }
        }
        Ok(batch)
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

/// One gap-safe read in global order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub events: Vec<RecordedEvent>,
    /// Typed reads only: the newest event of any type below the horizon
    /// the read used.
    pub horizon: Option<GlobalPosition>,
    limit: i64,
}

impl Batch {
    /// Where the next read continues, for a reader that read after
    /// `after` and handled every event of this batch: past the last event,
    /// and past the horizon too if the batch was not full (every matching
    /// event below it has then been returned, and nothing can commit below
    /// it later).
    pub fn next_after(&self, after: GlobalPosition) -> GlobalPosition {
        let last = self.events.last().map_or(after, GlobalPosition::of);
        match self.horizon {
            Some(horizon) if (self.events.len() as i64) < self.limit => last.max(horizon),
            _ => last,
        }
        .max(after)
    }

    /// The batch held as many events as were asked for: read again.
    pub fn full(&self) -> bool {
        self.limit > 0 && self.events.len() as i64 >= self.limit
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
