//! The tamper-evident chain over the log.
//!
//! Event number `seq` of the log's order `(tx_id, global_position)` is
//! sealed with `hash(seq) = sha256(hash(seq - 1) || canonical bytes)`, the
//! genesis predecessor being 32 zero bytes. Appends do not compute it: that
//! would serialise every writer on the previous hash. The `log_sealer`
//! subscription seals in the order gap-safe readers see, which is final once
//! an event is below the horizon, so the chain never has to be rewritten.
//!
//! The canonical bytes are the stored row as written (payload and metadata
//! as PostgreSQL's `jsonb` text, which is deterministic), including the
//! global position but not `tx_id`: a transaction id is an artefact of the
//! cluster, and an imported log (`paca events import`) keeps positions and
//! order but gets new transaction ids.
//!
//! [`verify`] recomputes the chain and names the first event whose bytes
//! changed, a sealed event that is gone (a gap), an event out of its sealed
//! place (a reordering or an insertion), or a seal that does not match an
//! anchor the operator kept elsewhere.

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::RecordedEvent;
use crate::subscription::{HandlerError, SubscriptionHandler};

/// The subscription that seals the log.
pub const SEALER: &str = "log_sealer";

pub type Hash = [u8; 32];

pub const GENESIS: Hash = [0; 32];

/// The stored columns the chain covers, in canonical order.
pub const RAW_COLUMNS: &str = "e.global_position, e.stream_type, e.stream_id, e.version, \
     e.event_id, e.event_type, e.schema_version, e.project_id, e.payload::text AS payload, \
     e.metadata::text AS metadata, e.recorded_at";

/// One stored event as raw text, exactly as the chain hashes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RawEvent {
    pub position: i64,
    pub stream_type: String,
    pub stream_id: uuid::Uuid,
    pub version: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub project_id: Option<uuid::Uuid>,
    /// `jsonb` text as PostgreSQL prints it.
    pub payload: String,
    pub metadata: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl RawEvent {
    pub fn from_row(row: &PgRow) -> Self {
        Self {
            position: row.get("global_position"),
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

    /// The bytes the chain hashes: a JSON array of the fields (payload and
    /// metadata as strings, so their bytes are the stored `jsonb` text, and
    /// the timestamp in microseconds, PostgreSQL's precision).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            self.position,
            &self.stream_type,
            self.stream_id,
            self.version,
            self.event_id,
            &self.event_type,
            self.schema_version,
            self.project_id,
            &self.payload,
            &self.metadata,
            self.recorded_at.timestamp_micros(),
        ))
        .expect("a tuple of strings and numbers serialises")
    }
}

pub fn chain(prev: &Hash, event: &RawEvent) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(event.canonical());
    hasher.finalize().into()
}

/// The newest seal: `(seq, global_position, hash)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Seal {
    pub seq: i64,
    pub position: i64,
    #[serde(serialize_with = "as_hex")]
    pub hash: Hash,
}

fn as_hex<S: serde::Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(hash))
}

fn to_hash(bytes: Vec<u8>) -> Result<Hash, sqlx::Error> {
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("a seal hash is not 32 bytes".into()))
}

pub async fn head(pool: &PgPool) -> Result<Option<Seal>, sqlx::Error> {
    let row =
        sqlx::query("SELECT seq, global_position, hash FROM event_seals ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    row.map(|r| {
        Ok(Seal {
            seq: r.get("seq"),
            position: r.get("global_position"),
            hash: to_hash(r.get("hash"))?,
        })
    })
    .transpose()
}

/// The `log_sealer` subscription as every caller runs it: positions only
/// (the handler re-reads the stored bytes), large batches, and a pause after
/// a partial batch instead of a wake-up per commit, so sealing costs the
/// writers as little as possible.
pub fn subscription(store: crate::EventStore) -> crate::Subscription<Sealer> {
    crate::Subscription::new(SEALER, store, Sealer)
        .headers_only()
        .batch_size(1000)
        .coalesce(std::time::Duration::from_millis(250))
}

/// Seals each batch in the order it is delivered (the log's order).
pub struct Sealer;

#[async_trait::async_trait]
impl SubscriptionHandler for Sealer {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let tail = sqlx::query(
            "SELECT s.seq, s.hash, s.global_position, e.tx_id::text::bigint AS tx_id
             FROM event_seals s LEFT JOIN events e ON e.global_position = s.global_position
             ORDER BY s.seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (mut seq, mut prev, sealed_up_to) = match tail {
            Some(row) => (
                row.get::<i64, _>("seq"),
                to_hash(row.get("hash"))?,
                Some((
                    row.get::<Option<i64>, _>("tx_id").unwrap_or(i64::MAX),
                    row.get::<i64, _>("global_position"),
                )),
            ),
            None => (0, GENESIS, None),
        };
        // Sealing is idempotent per event: what is at or before the sealed
        // head in the log's order (a checkpoint moved back) is skipped.
        let positions: Vec<i64> = events
            .iter()
            .filter(|e| sealed_up_to.is_none_or(|head| (e.tx_id, e.global_position) > head))
            .map(|e| e.global_position)
            .collect();
        if positions.is_empty() {
            return Ok(());
        }
        // The subscription delivers positions only; the chain covers the
        // stored bytes.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RAW_COLUMNS} FROM events e WHERE e.global_position = ANY($1)"
        )))
        .bind(&positions)
        .fetch_all(&mut *tx)
        .await?;
        let mut raw: std::collections::HashMap<i64, RawEvent> = rows
            .iter()
            .map(RawEvent::from_row)
            .map(|e| (e.position, e))
            .collect();
        let (mut seqs, mut sealed, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for position in positions {
            let Some(event) = raw.remove(&position) else {
                continue;
            };
            seq += 1;
            prev = chain(&prev, &event);
            seqs.push(seq);
            sealed.push(position);
            hashes.push(prev.to_vec());
        }
        sqlx::query(
            "INSERT INTO event_seals (seq, global_position, hash)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
        )
        .bind(&seqs)
        .bind(&sealed)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verdict {
    /// The chain holds: `sealed` events hash to `head`; `unsealed` newer
    /// events are not sealed yet.
    Intact {
        sealed: i64,
        unsealed: i64,
        head: Option<Seal>,
    },
    /// The first thing wrong, in log order.
    Broken { position: i64, problem: String },
}

/// Recomputes the chain over the whole log, streaming (constant memory).
/// `anchor` is a `(seq, hash)` the operator recorded earlier: the chain
/// must still pass through it.
pub async fn verify(pool: &PgPool, anchor: Option<(i64, Hash)>) -> Result<Verdict, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // One snapshot for the walk and the final checks.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await?;
    let result = walk(&mut conn, anchor).await;
    let _ = sqlx::query("COMMIT").execute(&mut *conn).await;
    result
}

async fn walk(
    conn: &mut PgConnection,
    anchor: Option<(i64, Hash)>,
) -> Result<Verdict, sqlx::Error> {
    let mut expected_seq = 1i64;
    let mut prev = GENESIS;
    let mut unsealed: i64 = 0;
    let mut first_unsealed: Option<i64> = None;
    let mut last_seal: Option<Seal> = None;
    let mut anchor_seen = false;
    let broken = |position: i64, problem: String| Ok(Verdict::Broken { position, problem });
    {
        let sql = format!(
            "SELECT {RAW_COLUMNS}, s.seq, s.hash FROM events e
             LEFT JOIN event_seals s ON s.global_position = e.global_position
             ORDER BY e.tx_id, e.global_position"
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let event = RawEvent::from_row(&row);
            let seq: Option<i64> = row.get("seq");
            let Some(seq) = seq else {
                unsealed += 1;
                first_unsealed.get_or_insert(event.position);
                continue;
            };
            if let Some(unsealed_at) = first_unsealed {
                return broken(
                    unsealed_at,
                    format!(
                        "event #{unsealed_at} is not in the chain but a later event (#{}) is: \
                         it was inserted, or moved in the log's order",
                        event.position
                    ),
                );
            }
            if seq > expected_seq {
                drop(rows);
                return missing(conn, expected_seq).await;
            }
            if seq < expected_seq {
                return broken(
                    event.position,
                    format!(
                        "event #{} is out of order: it was sealed as number {seq} of the chain \
                         but now comes at number {expected_seq}",
                        event.position
                    ),
                );
            }
            let stored = to_hash(row.get("hash"))?;
            let hash = chain(&prev, &event);
            if hash != stored {
                return broken(
                    event.position,
                    format!(
                        "event #{} ({} {}) changed: its stored bytes no longer hash to its seal \
                         (or the seal before it was rewritten)",
                        event.position, event.event_type, event.event_id
                    ),
                );
            }
            if let Some((anchor_seq, anchor_hash)) = anchor
                && anchor_seq == seq
            {
                if anchor_hash != hash {
                    return broken(
                        event.position,
                        format!(
                            "anchor mismatch: chain number {seq} (event #{}) hashes to {}, \
                             the anchor says {}",
                            event.position,
                            hex::encode(hash),
                            hex::encode(anchor_hash)
                        ),
                    );
                }
                anchor_seen = true;
            }
            prev = hash;
            expected_seq += 1;
            last_seal = Some(Seal {
                seq,
                position: event.position,
                hash,
            });
        }
    }
    // Seals beyond the last event found: sealed events that are gone.
    let orphan: Option<i64> =
        sqlx::query_scalar("SELECT 1::bigint FROM event_seals WHERE seq >= $1 LIMIT 1")
            .bind(expected_seq)
            .fetch_optional(&mut *conn)
            .await?;
    if orphan.is_some() {
        return missing(conn, expected_seq).await;
    }
    if let Some((anchor_seq, _)) = anchor
        && !anchor_seen
    {
        return broken(
            0,
            format!(
                "anchor mismatch: the chain has {} sealed events, no number {anchor_seq}",
                expected_seq - 1
            ),
        );
    }
    Ok(Verdict::Intact {
        sealed: expected_seq - 1,
        unsealed,
        head: last_seal,
    })
}

/// Seal `seq` exists but its event is not where the chain expects it.
async fn missing(conn: &mut PgConnection, seq: i64) -> Result<Verdict, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT global_position FROM event_seals WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
    let position = position.unwrap_or(0);
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE global_position = $1)")
            .bind(position)
            .fetch_one(&mut *conn)
            .await?;
    let problem = if exists {
        format!(
            "reordered: event #{position} was sealed as number {seq} of the chain but no longer \
             comes there in the log's order"
        )
    } else {
        format!(
            "gap: event #{position} (number {seq} of the chain) was sealed but is missing from \
             the log"
        )
    };
    Ok(Verdict::Broken { position, problem })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RawEvent {
        RawEvent {
            position: 7,
            stream_type: "task".into(),
            stream_id: uuid::Uuid::nil(),
            version: 1,
            event_id: uuid::Uuid::from_u128(1),
            event_type: "task.created".into(),
            schema_version: 1,
            project_id: None,
            payload: r#"{"title": "x"}"#.into(),
            metadata: "{}".into(),
            recorded_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
        }
    }

    #[test]
    fn every_field_is_covered() {
        let base = chain(&GENESIS, &event());
        let mut changed = event();
        changed.payload = r#"{"title": "y"}"#.into();
        assert_ne!(chain(&GENESIS, &changed), base);
        let mut moved = event();
        moved.position = 8;
        assert_ne!(chain(&GENESIS, &moved), base);
        let mut later = event();
        later.recorded_at += chrono::Duration::microseconds(1);
        assert_ne!(chain(&GENESIS, &later), base);
        assert_ne!(chain(&base, &event()), base, "the previous hash is covered");
        assert_eq!(chain(&GENESIS, &event()), base, "deterministic");
    }
}
