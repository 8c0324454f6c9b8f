//! The one-round-trip append (`EventStore::append_fused`) against
//! PostgreSQL: it keeps the transactional append's guarantees (version
//! check, guards, projectors commit or fail with the events) and its
//! projected timestamps are the events' own.

#[allow(dead_code)] // the helpers other test files use
mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventstore::stmt::Stmt;
use eventstore::{
    AppendError, EventStore, ExpectedVersion, FusedAppend, InlineProjector, RecordedEvent,
    StreamRef,
};
use serde_json::json;
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use common::event;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn stream(stream_id: Uuid) -> StreamRef<'static> {
    StreamRef {
        stream_type: "task",
        stream_id,
        project_id: None,
    }
}

/// One row per event with its version and `recorded_at`; an event whose
/// payload says `"fail": "sql"` renders a failing statement, one that says
/// `"render": false` cannot be rendered. Rows carry their row key (so an
/// append may go as one statement) unless the payload says `"keyless":
/// true`. An event with an `"item"` id also inserts (`"create": true`) or
/// updates that row of `it_items`.
struct Rows;

fn statements(events: &[RecordedEvent]) -> Vec<Stmt> {
    let mut out = Vec::new();
    for e in events {
        let note = e.payload["note"].as_str().map(str::to_owned);
        let row =
            Stmt::new("INSERT INTO it_rows (event_id, version, at, note) VALUES ($1, $2, $3, $4)")
                .arg(e.event_id)
                .arg(e.version)
                .arg(e.recorded_at)
                .arg(note.clone());
        out.push(if e.payload["keyless"] == true {
            row
        } else {
            row.with_row_key()
        });
        if let Some(item) = e.payload["item"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
        {
            let sql = if e.payload["create"] == true {
                "INSERT INTO it_items (id, note, version, at) VALUES ($1, $2, $3, $4)"
            } else {
                "UPDATE it_items SET note = $2, version = $3, at = $4 WHERE id = $1"
            };
            out.push(
                Stmt::new(sql)
                    .arg(item)
                    .arg(note)
                    .arg(e.version)
                    .arg(e.recorded_at)
                    .with_row_key(),
            );
        }
        if e.payload["fail"] == "sql" {
            out.push(Stmt::new("SELECT 1 / 0"));
        }
    }
    out
}

#[async_trait::async_trait]
impl InlineProjector for Rows {
    fn name(&self) -> &str {
        "it-rows"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), BoxError> {
        for stmt in statements(events) {
            stmt.execute(conn).await?;
        }
        Ok(())
    }

    // Given as statements, so the fused append sends them as `EXECUTE`s
    // of prepared statements.
    fn statements(&self, events: &[RecordedEvent]) -> Option<Result<Vec<Stmt>, BoxError>> {
        if events.iter().any(|e| e.payload["render"] == false) {
            return None;
        }
        Some(Ok(statements(events)))
    }
}

async fn setup(connect: PgConnectOptions) -> (sqlx::PgPool, EventStore) {
    setup_with(connect, 6).await
}

async fn setup_with(connect: PgConnectOptions, connections: u32) -> (sqlx::PgPool, EventStore) {
    let pool = common::pool(connect, connections).await;
    sqlx::raw_sql(
        "CREATE TABLE it_rows (event_id UUID PRIMARY KEY, version BIGINT NOT NULL,
                               at TIMESTAMPTZ NOT NULL, note TEXT);
         CREATE TABLE it_items (id UUID PRIMARY KEY, note TEXT, version BIGINT NOT NULL,
                                at TIMESTAMPTZ NOT NULL);
         CREATE TABLE it_labels (id UUID PRIMARY KEY, label TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let store = EventStore::builder(pool.clone())
        .projector(Arc::new(Rows))
        .build();
    (pool, store)
}

async fn counts(pool: &sqlx::PgPool, id: Uuid) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE stream_id = $1),
                (SELECT version FROM streams WHERE stream_id = $1),
                (SELECT count(*) FROM it_rows r JOIN events e USING (event_id) WHERE e.stream_id = $1)",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn fused_append_commits_events_and_projection_together(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect).await;
    let id = Uuid::now_v7();
    // Version 0 creates the stream; a stream that exists is a conflict
    // and appends nothing.
    let created = store
        .append_fused(stream(id), 0, vec![event("it.a", json!({}))], &[])
        .await
        .unwrap()
        .expect("rendered");
    assert_eq!(created.stream_version, 1);
    assert!(matches!(
        store
            .append_fused(stream(id), 0, vec![event("it.x", json!({}))], &[])
            .await,
        Err(AppendError::VersionConflict { .. })
    ));

    // Quotes, backslashes and a dollar-number in values survive rendering.
    let tricky = "it's a \\ $1 ''; DROP TABLE events; --";
    let result = store
        .append_fused(
            stream(id),
            1,
            vec![
                event("it.b", json!({ "note": tricky })),
                event("it.c", json!({ "note": "two" })),
            ],
            &[],
        )
        .await
        .unwrap()
        .expect("rendered");
    assert_eq!(result.stream_version, 3);
    assert_eq!(
        result.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(
        result
            .events
            .iter()
            .all(|e| e.global_position > 0 && e.tx_id > 0)
    );
    assert_eq!(counts(&pool, id).await, (3, 3, 3));

    // The projected timestamps are the events' `recorded_at`, which the
    // result reports as stored.
    type Row = (i64, DateTime<Utc>, DateTime<Utc>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.version, r.at, e.recorded_at, r.note FROM it_rows r
         JOIN events e USING (event_id) WHERE e.stream_id = $1 AND r.version > 1 ORDER BY r.version",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for (row, recorded) in rows.iter().zip(&result.events) {
        assert_eq!(row.1, row.2, "projected time differs from the event's");
        assert_eq!(row.2, recorded.recorded_at);
    }
    assert_eq!(rows[0].3.as_deref(), Some(tricky));
    // The stored events read back exactly as the result describes them.
    let stored = store.read_stream(id, 1).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| (e.event_id, e.global_position, e.payload.clone()))
            .collect::<Vec<_>>(),
        result
            .events
            .iter()
            .map(|e| (e.event_id, e.global_position, e.payload.clone()))
            .collect::<Vec<_>>()
    );
    // Both went as one statement each (keyed single-row inserts).
    assert_eq!(one_statement(&store), 2);
    pool.close().await;
}

fn one_statement(store: &EventStore) -> u64 {
    store
        .stats()
        .fused_one_statement
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The batch sets nothing for its literals: on a session where
/// `standard_conforming_strings` is off (a server configured the old way),
/// backslashes and quotes in text and JSON still arrive as sent.
#[sqlx::test(migrations = "../migrations")]
async fn fused_literals_read_the_same_with_standard_conforming_strings_off(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect.options([("standard_conforming_strings", "off")])).await;
    let setting: String = sqlx::query_scalar("SHOW standard_conforming_strings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(setting, "off");
    let id = Uuid::now_v7();
    let tricky = r#"C:\new\table \' \\'; DROP TABLE events; -- "q" \u0041 E'\x41'"#;
    let payload = json!({ "note": tricky, "nested": { "path": "a\\b", "quote": "\"" } });
    store
        .append_fused(stream(id), 0, vec![event("it.a", payload.clone())], &[])
        .await
        .unwrap()
        .expect("rendered");
    let note: Option<String> = sqlx::query_scalar(
        "SELECT r.note FROM it_rows r JOIN events e USING (event_id) WHERE e.stream_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(note.as_deref(), Some(tricky));
    let stored = store.read_stream(id, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload, payload);
    pool.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn fused_append_conflicts_and_failures_write_nothing(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect).await;
    let id = Uuid::now_v7();
    let other = Uuid::now_v7();
    for s in [id, other] {
        store
            .append(
                stream(s),
                ExpectedVersion::NoStream,
                vec![event("it.a", json!({}))],
            )
            .await
            .unwrap();
    }

    // A stale expected version: nothing of the second append lands.
    store
        .append_fused(stream(id), 1, vec![event("it.b", json!({}))], &[])
        .await
        .unwrap()
        .unwrap();
    match store
        .append_fused(stream(id), 1, vec![event("it.late", json!({}))], &[])
        .await
    {
        Err(AppendError::VersionConflict { stream_id, .. }) => assert_eq!(stream_id, id),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(counts(&pool, id).await, (2, 2, 2));
    // An expected version beyond the stream's would leave a gap: refused.
    match store
        .append_fused(stream(id), 5, vec![event("it.gap", json!({}))], &[])
        .await
    {
        Err(AppendError::VersionConflict { stream_id, .. }) => assert_eq!(stream_id, id),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(counts(&pool, id).await, (2, 2, 2));

    // A guard on a stream that moved: refused, nothing written; the same
    // guard at the right version passes.
    match store
        .append_fused(stream(id), 2, vec![event("it.c", json!({}))], &[(other, 0)])
        .await
    {
        Err(AppendError::GuardMoved { stream_id }) => assert_eq!(stream_id, other),
        other => panic!("expected a moved guard, got {other:?}"),
    }
    assert_eq!(counts(&pool, id).await, (2, 2, 2));
    store
        .append_fused(stream(id), 2, vec![event("it.c", json!({}))], &[(other, 1)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts(&pool, id).await, (3, 3, 3));

    // A failing projector statement rolls back the events and the stream
    // version with it.
    match store
        .append_fused(
            stream(id),
            3,
            vec![
                event("it.d", json!({})),
                event("it.e", json!({ "fail": "sql" })),
            ],
            &[],
        )
        .await
    {
        Err(AppendError::Database(e)) => {
            assert_eq!(
                e.as_database_error().and_then(|d| d.code()).as_deref(),
                Some("22012")
            )
        }
        other => panic!("expected the projector's error, got {other:?}"),
    }
    assert_eq!(counts(&pool, id).await, (3, 3, 3));

    // A projector that cannot render: nothing is sent at all.
    assert!(
        store
            .append_fused(
                stream(id),
                3,
                vec![event("it.f", json!({ "render": false }))],
                &[]
            )
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(counts(&pool, id).await, (3, 3, 3));
    pool.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_fused_appends_to_one_stream_never_lose_or_duplicate(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect).await;
    let id = Uuid::now_v7();
    store
        .append(
            stream(id),
            ExpectedVersion::NoStream,
            vec![event("it.a", json!({}))],
        )
        .await
        .unwrap();
    // Eight writers, each appending ten events by "read version, append
    // fused, retry on conflict": every success lands once, at its own version.
    let mut writers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut done = 0;
            let mut conflicts = 0;
            while done < 10 {
                let version = store.read_stream(id, 0).await.unwrap().len() as i64;
                match store
                    .append_fused(
                        stream(id),
                        version,
                        vec![event("it.w", json!({ "note": format!("{w}") }))],
                        &[],
                    )
                    .await
                {
                    Ok(Some(_)) => done += 1,
                    Err(AppendError::VersionConflict { .. }) => conflicts += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            conflicts
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(counts(&pool, id).await, (81, 81, 81));
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM events WHERE stream_id = $1 ORDER BY version")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, (1..=81).collect::<Vec<_>>());
    pool.close().await;
}

/// The caller's prelude runs in the append's transaction: when it finds
/// its state moved (`take_task_number` with a number the counter is not
/// at), the append fails as a guard and keeps nothing, the counter
/// included; when it holds, both commit together.
#[sqlx::test(migrations = "../migrations")]
async fn a_prelude_commits_with_the_append_or_keeps_nothing(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let (pool, store) = setup(connect).await;
    let project = Uuid::now_v7();
    let take = |number: i64| {
        let mut sql = String::new();
        Stmt::new("SELECT take_task_number($1, $2)")
            .arg(project)
            .arg(number)
            .render(&mut sql);
        sql
    };
    let counter = || async {
        sqlx::query_scalar::<_, i64>("SELECT last_number FROM task_counters WHERE project_id = $1")
            .bind(project)
            .fetch_optional(&pool)
            .await
            .unwrap()
    };
    let events_of = |id: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE stream_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    let first = Uuid::now_v7();
    let refused = store
        .append_fused_one(FusedAppend {
            prelude: take(2),
            ..FusedAppend::new(stream(first), 0, vec![event("it.a", json!({}))], vec![])
        })
        .await;
    assert!(
        matches!(refused, Err(AppendError::GuardMoved { .. })),
        "{refused:?}"
    );
    assert_eq!(events_of(first).await, 0);
    assert_eq!(
        counter().await,
        None,
        "the refused append moved the counter"
    );

    for (number, id) in [(1, first), (2, Uuid::now_v7())] {
        store
            .append_fused_one(FusedAppend {
                prelude: take(number),
                ..FusedAppend::new(stream(id), 0, vec![event("it.a", json!({}))], vec![])
            })
            .await
            .unwrap()
            .expect("rendered");
        assert_eq!(events_of(id).await, 1);
        assert_eq!(counter().await, Some(number));
    }
    // A number already taken: refused, the counter stays.
    let late = Uuid::now_v7();
    assert!(matches!(
        store
            .append_fused_one(FusedAppend {
                prelude: take(2),
                ..FusedAppend::new(stream(late), 0, vec![event("it.a", json!({}))], vec![])
            })
            .await,
        Err(AppendError::GuardMoved { .. })
    ));
    assert_eq!(events_of(late).await, 0);
    assert_eq!(counter().await, Some(2));
}

/// A read runs after the projectors in the append's transaction, so it sees
/// the projected rows; in a batch of appends each gets its own read's rows,
/// whatever rows the statements before it returned.
#[sqlx::test(migrations = "../migrations")]
async fn a_read_returns_the_projected_rows_with_the_append(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    use sqlx::Row;
    let (_pool, store) = setup(connect).await;
    let read = |id: Uuid| {
        Some(
            Stmt::new(
                "SELECT r.note, r.version, r.at FROM it_rows r JOIN events e USING (event_id)
                  WHERE e.stream_id = $1 ORDER BY r.version",
            )
            .arg(id),
        )
    };
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let appends = vec![
        FusedAppend {
            read: read(a),
            ..FusedAppend::new(
                stream(a),
                0,
                vec![
                    event("it.a", json!({ "note": "a1" })),
                    event("it.b", json!({ "note": "a2" })),
                ],
                vec![],
            )
        },
        // No read: nothing comes back for it.
        FusedAppend::new(stream(c), 0, vec![event("it.a", json!({}))], vec![]),
        FusedAppend {
            read: read(b),
            ..FusedAppend::new(
                stream(b),
                0,
                vec![event("it.a", json!({ "note": "b1" }))],
                vec![],
            )
        },
    ];
    let results = store
        .append_fused_all(appends)
        .await
        .unwrap()
        .expect("rendered");
    assert_eq!(results.len(), 3);
    let notes = |rows: &[sqlx::postgres::PgRow]| {
        rows.iter()
            .map(|r| r.get::<Option<String>, _>("note").unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(notes(&results[0].1), ["a1", "a2"]);
    assert!(results[1].1.is_empty());
    assert_eq!(notes(&results[2].1), ["b1"]);
    // The rows are the committed ones: the projected time is the event's.
    let at: DateTime<Utc> = results[2].1[0].get("at");
    assert_eq!(at, results[2].0.events[0].recorded_at);
    assert_eq!(results[0].1[1].get::<i64, _>("version"), 2);

    // A failing append returns an error and no rows.
    let failed = store
        .append_fused_one(FusedAppend {
            read: read(a),
            ..FusedAppend::new(
                stream(a),
                2,
                vec![event("it.c", json!({ "fail": "sql" }))],
                vec![],
            )
        })
        .await;
    assert!(failed.is_err(), "{failed:?}");
}

/// The batch's statements are `EXECUTE`s of prepared statements that each
/// connection learns on first use (the batch fails with 26000 before
/// anything commits, and runs again once the connection has them); a
/// connection that lost them learns them again, and no append is applied
/// twice on the way.
#[sqlx::test(migrations = "../migrations")]
async fn prepared_statements_are_learned_by_each_connection(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    // One connection, so the test's own queries see its session.
    let (pool, store) = setup_with(connect, 1).await;
    let prepared = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT statement FROM pg_prepared_statements
              WHERE name LIKE 'paca_fused_%' ORDER BY statement",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    assert!(prepared().await.is_empty());

    let id = Uuid::now_v7();
    // One event with `note` at `version`, committed.
    let append = |version: i64, event_type: &'static str, note: &'static str| {
        let store = store.clone();
        async move {
            store
                .append_fused(
                    stream(id),
                    version,
                    vec![event(event_type, json!({ "note": note, "keyless": true }))],
                    &[],
                )
                .await
                .unwrap()
                .expect("rendered");
        }
    };
    append(0, "it.a", "one").await;
    assert_eq!(counts(&pool, id).await, (1, 1, 1));
    let learned = prepared().await;
    // The stream claim, the event insert and the projector's insert.
    assert_eq!(learned.len(), 3, "{learned:#?}");
    assert!(learned.iter().any(|s| s.contains("claim_stream")));
    assert!(learned.iter().any(|s| s.contains("INSERT INTO events")));
    assert!(learned.iter().any(|s| s.contains("INSERT INTO it_rows")));

    // Lost (a pooler's reset, an operator's DEALLOCATE): learned again.
    let forget = || async {
        for name in sqlx::query_scalar::<_, String>(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'paca_fused_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DEALLOCATE {name}")))
                .execute(&pool)
                .await
                .unwrap();
        }
        assert!(prepared().await.is_empty());
    };
    forget().await;
    append(1, "it.b", "two").await;
    assert_eq!(counts(&pool, id).await, (2, 2, 2));
    assert_eq!(prepared().await, learned);

    // A conflict on a warm connection is still exact and writes nothing.
    assert!(matches!(
        store
            .append_fused(stream(id), 1, vec![event("it.x", json!({}))], &[])
            .await,
        Err(AppendError::VersionConflict { .. })
    ));
    assert_eq!(counts(&pool, id).await, (2, 2, 2));

    // Statements that do not stay (as behind a pooler that hands out
    // server connections per transaction): the batch is sent again with
    // literals, once.
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION prepare_statements(p_names TEXT[], p_statements TEXT[],
                                                       p_replace BOOLEAN)
         RETURNS VOID LANGUAGE sql AS 'SELECT'",
    )
    .execute(&pool)
    .await
    .unwrap();
    forget().await;
    append(2, "it.c", "three").await;
    assert_eq!(counts(&pool, id).await, (3, 3, 3));
    assert!(prepared().await.is_empty());

    // Nor does a connection that cannot prepare them stop a write.
    sqlx::raw_sql("DROP FUNCTION prepare_statements")
        .execute(&pool)
        .await
        .unwrap();
    append(3, "it.d", "four").await;
    assert_eq!(counts(&pool, id).await, (4, 4, 4));
    assert_eq!(one_statement(&store), 0);
}

/// An append whose writes are single-row and on different rows goes as one
/// statement of CTEs with bound parameters; its read of a row it inserts
/// or updates comes from that write's `RETURNING` (a CTE cannot see a
/// sibling's writes), so it shows the row as committed, joined to tables
/// the append does not write. Anything else (a read joined to a table the
/// append writes, a statement without a row key) goes as a batch, and a
/// refused one-statement append writes nothing.
#[sqlx::test(migrations = "../migrations")]
async fn one_statement_appends_read_their_own_update(_: PgPoolOptions, connect: PgConnectOptions) {
    use sqlx::Row;
    let (pool, store) = setup(connect).await;
    let (id, item, guard) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    store
        .append(
            stream(guard),
            ExpectedVersion::NoStream,
            vec![event("it.a", json!({}))],
        )
        .await
        .unwrap();
    let read = |item: Uuid| {
        Some(Stmt::new("SELECT note, version, at FROM it_items WHERE id = $1").arg(item))
    };
    let append = |version: i64,
                  payload: serde_json::Value,
                  read_of: Uuid,
                  guards: Vec<(Uuid, i64)>| {
        let store = store.clone();
        async move {
            store
                .append_fused_one(FusedAppend {
                    read: read(read_of),
                    ..FusedAppend::new(stream(id), version, vec![event("it.i", payload)], guards)
                })
                .await
        }
    };
    let note = |rows: &[sqlx::postgres::PgRow]| -> Vec<(Option<String>, i64)> {
        rows.iter()
            .map(|r| (r.get("note"), r.get("version")))
            .collect()
    };

    // Created with a read of the created row: one statement, the row from
    // the insert's RETURNING.
    let (_, rows) = append(
        0,
        json!({ "item": item, "create": true, "note": "first" }),
        item,
        vec![],
    )
    .await
    .unwrap()
    .expect("rendered");
    assert_eq!(note(&rows), [(Some("first".to_owned()), 1)]);
    assert_eq!(one_statement(&store), 1);

    // Updated with a read of the updated row: one statement, and the read
    // shows the update, stamped with the event's time.
    let (result, rows) = append(
        1,
        json!({ "item": item, "note": "second" }),
        item,
        vec![(guard, 1)],
    )
    .await
    .unwrap()
    .expect("rendered");
    assert_eq!(one_statement(&store), 2);
    assert_eq!(note(&rows), [(Some("second".to_owned()), 2)]);
    assert_eq!(
        rows[0].get::<DateTime<Utc>, _>("at"),
        result.events[0].recorded_at
    );
    assert!(result.events[0].global_position > 0 && result.events[0].tx_id > 0);
    let stored = store.read_stream(id, 1).await.unwrap();
    assert_eq!(stored[0].recorded_at, result.events[0].recorded_at);
    assert_eq!(stored[0].global_position, result.events[0].global_position);
    assert_eq!(counts(&pool, id).await, (2, 2, 2));

    // A read of a row the append does not write reads the table; of a row
    // that does not exist, nothing (the append still commits).
    let (_, rows) = append(2, json!({ "note": "third" }), item, vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note(&rows), [(Some("second".to_owned()), 2)]);
    let (_, rows) = append(3, json!({}), Uuid::now_v7(), vec![])
        .await
        .unwrap()
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(one_statement(&store), 4);
    assert_eq!(counts(&pool, id).await, (4, 4, 4));

    // Refused (a stale version, a moved guard, a failing write): nothing
    // of it lands, the item included.
    let stale = append(3, json!({ "item": item, "note": "late" }), item, vec![]).await;
    assert!(
        matches!(stale, Err(AppendError::VersionConflict { stream_id, .. }) if stream_id == id),
        "{stale:?}"
    );
    let moved = append(
        4,
        json!({ "item": item, "note": "late" }),
        item,
        vec![(guard, 0)],
    )
    .await;
    assert!(
        matches!(moved, Err(AppendError::GuardMoved { stream_id }) if stream_id == guard),
        "{moved:?}"
    );
    // A write that fails (the item exists): the events roll back with it.
    let duplicate = store
        .append_fused(
            stream(id),
            4,
            vec![event("it.i", json!({ "item": item, "create": true }))],
            &[],
        )
        .await;
    match duplicate {
        Err(AppendError::Database(e)) => assert_eq!(
            e.as_database_error().and_then(|d| d.code()).as_deref(),
            Some("23505")
        ),
        other => panic!("expected the duplicate key, got {other:?}"),
    }
    assert_eq!(counts(&pool, id).await, (4, 4, 4));
    assert_eq!(one_statement(&store), 4);
    let current: (Option<String>, i64) =
        sqlx::query_as("SELECT note, version FROM it_items WHERE id = $1")
            .bind(item)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(current, (Some("second".to_owned()), 2));

    // A read joined to a table the append does not write: one statement,
    // the joined row included (and NULLs where the join finds none).
    sqlx::query("INSERT INTO it_labels (id, label) VALUES ($1, 'labelled')")
        .bind(item)
        .execute(&pool)
        .await
        .unwrap();
    let joined = |item: Uuid, other: &str| {
        let (label, on) = match other {
            "it_rows" => ("l.note", "l.version = i.version"),
            _ => ("l.label", "l.id = i.id"),
        };
        Stmt::new(format!(
            "SELECT i.note, i.version, {label} AS label
               FROM it_items AS i
               LEFT JOIN {other} l ON {on}
              WHERE i.id = $1"
        ))
        .arg(item)
    };
    let labelled = |version: i64, payload: serde_json::Value, read: Stmt| {
        let store = store.clone();
        async move {
            let append = FusedAppend {
                read: Some(read),
                ..FusedAppend::new(stream(id), version, vec![event("it.i", payload)], vec![])
            };
            let (_, rows) = store.append_fused_one(append).await.unwrap().unwrap();
            rows.iter()
                .map(|r| (r.get("note"), r.get("version"), r.get("label")))
                .collect::<Vec<(Option<String>, i64, Option<String>)>>()
        }
    };
    let text = |s: &str| Some(s.to_owned());
    let rows = labelled(
        4,
        json!({ "item": item, "note": "fifth" }),
        joined(item, "it_labels"),
    )
    .await;
    assert_eq!(rows, [(text("fifth"), 5, text("labelled"))]);
    assert_eq!(one_statement(&store), 5);
    let fresh = Uuid::now_v7();
    let rows = labelled(
        5,
        json!({ "item": fresh, "create": true, "note": "sixth" }),
        joined(fresh, "it_labels"),
    )
    .await;
    assert_eq!(rows, [(text("sixth"), 6, None)]);
    assert_eq!(one_statement(&store), 6);
    // Joined to a table the append writes (`it_rows`, its row of this
    // event): a batch, which reads after the writes and sees them.
    let rows = labelled(
        6,
        json!({ "item": item, "note": "seventh" }),
        joined(item, "it_rows"),
    )
    .await;
    assert_eq!(rows, [(text("seventh"), 7, text("seventh"))]);
    assert_eq!(one_statement(&store), 6);
    assert_eq!(counts(&pool, id).await, (7, 7, 7));
}
