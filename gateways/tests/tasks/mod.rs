//! Tasks over the real REST surface: numbering and PATCHes under
//! concurrency, optimistic `If-Match`, list filters and cursors, history.

use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::app;

fn id(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_creation_gives_dense_unique_numbers(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "Numbers").await;
    let path = format!("/api/v1/projects/{p}/tasks");
    let creates = (0..20).map(|i| {
        t.call(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"title": format!("t{i}")})),
        )
    });
    let replies = futures_util::future::join_all(creates).await;
    let mut numbers: Vec<i64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.body);
            r.data()["task_number"].as_i64().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
    // Creates that queue behind one in flight share its successor's round
    // trip: one transaction appends several of them.
    let (created, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT tx_id) FROM events
          WHERE project_id = $1::uuid AND event_type = 'task.created'",
    )
    .bind(&p)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(created, 20);
    assert!(
        transactions <= 10,
        "20 concurrent creates committed in {transactions} transactions: they were not grouped"
    );
    // A rejected creation does not burn a number.
    let bad = t
        .call("POST", &path, Some(&admin), Some(json!({"title": ""})))
        .await;
    assert_eq!(bad.code(), "TASK_TITLE_INVALID");
    let next = t
        .call("POST", &path, Some(&admin), Some(json!({"title": "next"})))
        .await;
    assert_eq!(next.data()["task_number"], 21);
}

/// A create that cannot succeed (its id is taken) fails only itself when
/// it was grouped with others: the group's creates retry one by one.
#[sqlx::test(migrations = "../migrations")]
async fn a_failing_create_does_not_fail_its_group(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let project_id: uuid::Uuid = t.create_project(&admin, "Groups").await.parse().unwrap();
    let meta = eventstore::Metadata::system("test");
    let fields = |title: &str| domain::task::TaskFields {
        title: title.into(),
        ..Default::default()
    };
    let taken = uuid::Uuid::now_v7();
    t.commands
        .create_task_with_id(&meta, project_id, taken, fields("first"))
        .await
        .unwrap();
    let events_before = t.event_count().await;
    let mut creates = Vec::new();
    for i in 0..6 {
        let task_id = if i == 3 { taken } else { uuid::Uuid::now_v7() };
        creates.push(t.commands.create_task_with_id(
            &meta,
            project_id,
            task_id,
            fields(&format!("t{i}")),
        ));
    }
    let results = futures_util::future::join_all(creates).await;
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result.is_err(),
            i == 3,
            "create {i}: {:?}",
            result.as_ref().err()
        );
    }
    // Five tasks, numbered 2..=6 without a gap, and nothing for the refused one.
    assert_eq!(t.event_count().await - events_before, 5);
    let mut numbers: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload->>'task_number')::bigint FROM events
          WHERE project_id = $1 AND event_type = 'task.created'",
    )
    .bind(project_id)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    numbers.sort();
    assert_eq!(numbers, (1..=6).collect::<Vec<_>>());
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_patches_are_never_lost(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "Race").await;
    for i in 0..10 {
        let r = t
            .call(
                "POST",
                &format!("/api/v1/projects/{p}/custom-fields"),
                Some(&admin),
                Some(json!({"field_key": format!("f{i}"), "display_name": format!("F{i}"), "field_type": "number"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let task = t.create_task(&admin, &p, "hot").await;
    let path = format!("/api/v1/projects/{p}/tasks/{task}");
    let patches = (0..10).map(|i| {
        t.call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"custom_fields": {format!("f{i}"): i}})),
        )
    });
    let replies = futures_util::future::join_all(patches).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let now = t.call("GET", &path, Some(&admin), None).await;
    let fields = now.data()["custom_fields"].as_object().unwrap().clone();
    assert_eq!(fields.len(), 10, "{fields:?}");
    assert_eq!(now.data()["version"], 11);
    let history = t
        .call("GET", &format!("{path}/history"), Some(&admin), None)
        .await;
    assert_eq!(history.data()["items"].as_array().unwrap().len(), 11);
}

#[sqlx::test(migrations = "../migrations")]
async fn if_match_turns_a_stale_write_into_409(_: PgPoolOptions, options: PgConnectOptions) {
    use actix_web::test;
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "Etag").await;
    let task = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&admin),
            Some(json!({"title": "a"})),
        )
        .await;
    let path = format!("/api/v1/projects/{p}/tasks/{}", id(&task.data()["id"]));
    let patch = |etag: &str, title: &str| {
        test::TestRequest::patch()
            .uri(&path)
            .insert_header(("Authorization", format!("Bearer {admin}")))
            .insert_header(("If-Match", etag.to_owned()))
            .set_json(json!({"title": title}))
            .to_request()
    };
    let ok = test::call_service(&t.service, patch("\"1\"", "b")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers().get("etag").unwrap(), "\"2\"");
    let stale = test::call_service(&t.service, patch("\"1\"", "c")).await;
    assert_eq!(stale.status(), 409);
    let body: Value = test::read_body_json(stale).await;
    assert_eq!(body["error_code"], "CONFLICT");
    let now = t.call("GET", &path, Some(&admin), None).await;
    assert_eq!(now.data()["title"], "b", "the stale write changed nothing");
}

#[sqlx::test(migrations = "../migrations")]
async fn list_filters_and_cursor_walk(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "List").await;
    let base = format!("/api/v1/projects/{p}");
    let members = t
        .call("GET", &format!("{base}/members"), Some(&admin), None)
        .await;
    let me = id(&members.data()[0]["id"]);
    let types = t
        .call("GET", &format!("{base}/task-types"), Some(&admin), None)
        .await;
    let bug = types.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Bug")
        .unwrap()["id"]
        .clone();
    let mut ids = Vec::new();
    for i in 0..25 {
        let body = if i % 5 == 0 {
            json!({"title": format!("bug {i}"), "task_type_id": bug, "assignee_ids": [me]})
        } else {
            json!({"title": format!("task {i}")})
        };
        let r = t
            .call("POST", &format!("{base}/tasks"), Some(&admin), Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(id(&r.data()["id"]));
    }
    // Walk all pages of 7.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/tasks?page_size=7&cursor={c}"),
            None => format!("{base}/tasks?page_size=7"),
        };
        let page = t.call("GET", &url, Some(&admin), None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.data()["page_size"], 7);
        seen.extend(
            page.data()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| id(&t["id"])),
        );
        match page.data()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every task exactly once, in creation order");
    let (t, admin) = (&t, &admin);
    let count = |url: String| async move {
        let r = t.call("GET", &url, Some(admin), None).await;
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        r.data()["items"].as_array().unwrap().len()
    };
    assert_eq!(
        count(format!(
            "{base}/tasks?page_size=200&task_type_id={}",
            bug.as_str().unwrap()
        ))
        .await,
        5
    );
    assert_eq!(
        count(format!("{base}/tasks?page_size=200&assignee_id={me}")).await,
        5
    );
    assert_eq!(
        count(format!("{base}/tasks?page_size=200&assignee_id=null")).await,
        20
    );
    assert_eq!(
        count(format!("{base}/tasks?page_size=200&sprint_id=null")).await,
        25
    );
    assert_eq!(
        count(format!("{base}/tasks?page_size=500")).await,
        20,
        "out-of-range page_size falls back to 20"
    );
    let bad = t
        .call(
            "GET",
            &format!("{base}/tasks?status_id=nope"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "BAD_REQUEST"));
    let bad = t
        .call(
            "GET",
            &format!("{base}/tasks?cursor=not-a-cursor"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[sqlx::test(migrations = "../migrations")]
async fn rejected_task_commands_append_nothing(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "Strict").await;
    let base = format!("/api/v1/projects/{p}");
    let task = t
        .call(
            "POST",
            &format!("{base}/tasks"),
            Some(&admin),
            Some(json!({"title": "a"})),
        )
        .await;
    let task = id(&task.data()["id"]);
    let types = t
        .call("GET", &format!("{base}/task-types"), Some(&admin), None)
        .await;
    let epic = types.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Epic")
        .unwrap()["id"]
        .clone();
    let before = t.event_count().await;
    let cases = [
        (
            "POST",
            format!("{base}/tasks"),
            json!({"title": "  "}),
            400,
            "TASK_TITLE_INVALID",
        ),
        (
            "POST",
            format!("{base}/tasks"),
            json!({"title": "x", "description": "plain"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("{base}/tasks"),
            json!({"title": "x", "status_id": uuid::Uuid::nil()}),
            404,
            "TASK_STATUS_NOT_FOUND",
        ),
        (
            "POST",
            format!("{base}/tasks"),
            json!({"title": "x", "custom_fields": {"nope": 1}}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("{base}/tasks"),
            json!({"title": "x", "task_type_id": epic, "parent_task_id": task}),
            400,
            "TASK_EPIC_CANNOT_HAVE_PARENT",
        ),
        (
            "PATCH",
            format!("{base}/tasks/{task}"),
            json!({"parent_task_id": task}),
            400,
            "TASK_CANNOT_BE_OWN_PARENT",
        ),
        (
            "PATCH",
            format!("{base}/tasks/{task}"),
            json!({"start_date": "22/11/2026"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "PATCH",
            format!("{base}/tasks/{}", uuid::Uuid::nil()),
            json!({"title": "x"}),
            404,
            "TASK_NOT_FOUND",
        ),
        (
            "POST",
            format!("{base}/tasks/{task}/activities/comments"),
            json!({"content": []}),
            400,
            "ACTIVITY_COMMENT_CONTENT_INVALID",
        ),
        (
            "DELETE",
            format!("{base}/task-types/{}", epic.as_str().unwrap()),
            json!({}),
            403,
            "TASK_TYPE_IS_SYSTEM",
        ),
        (
            "POST",
            format!("{base}/task-statuses"),
            json!({"name": "QA", "category": "waiting"}),
            400,
            "TASK_STATUS_CATEGORY_INVALID",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let reply = t
            .call(method, &path, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{method} {path} {body}: {}",
            reply.body
        );
    }
    assert_eq!(
        t.event_count().await,
        before,
        "a rejected command appended an event"
    );
    let counter: i64 = sqlx::query_scalar("SELECT last_number FROM task_counters")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(counter, 1, "rejected creations do not consume task numbers");
}

/// Task writes that need no lock beyond the project's commit in one round
/// trip (the fused append); what they project equals a replay of the log,
/// and a node whose cached task is stale (another node wrote since) loses
/// nothing: its write conflicts, reloads and lands on top.
#[sqlx::test(migrations = "../migrations")]
async fn fused_task_writes_match_a_replay_and_survive_stale_caches(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use std::sync::atomic::Ordering;
    let t = app(options.clone()).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "Fused").await;
    let r = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/custom-fields"),
            Some(&admin),
            Some(json!({"field_key": "size", "display_name": "Size", "field_type": "number"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let members = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/members"),
            Some(&admin),
            None,
        )
        .await;
    let me = id(&members.data().as_array().unwrap()[0]["id"]);
    let task = t.create_task(&admin, &p, "fast").await;
    let path = format!("/api/v1/projects/{p}/tasks/{task}");
    let stats = t.commands.store.stats();
    let fused_before = stats.fused.load(Ordering::Relaxed);

    let writes = [
        json!({"title": "it's \\ $1 fast"}),
        json!({"assignee_ids": [me]}),
        json!({"custom_fields": {"size": 3}}),
        json!({"description": [{"type": "paragraph", "content": [{"type": "text", "text": "quote ' here"}]}]}),
        json!({"importance": 2, "tags": ["a", "b"], "due_date": "2027-01-31"}),
    ];
    for (i, body) in writes.iter().enumerate() {
        let r = t
            .call("PATCH", &path, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.data()["version"], i as i64 + 2, "{}", r.body);
        // The response was read inside the write (text format) and says
        // exactly what a later GET (binary format) says.
        let got = t.call("GET", &path, Some(&admin), None).await;
        assert_eq!(r.data(), got.data(), "after {body}");
    }
    assert_eq!(
        t.call("GET", &path, Some(&admin), None).await.data()["title"],
        "it's \\ $1 fast"
    );
    let c = t
        .call(
            "POST",
            &format!("{path}/activities/comments"),
            Some(&admin),
            Some(json!({"content": {"text": "first"}})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let listed = t
        .call("GET", &format!("{path}/activities"), Some(&admin), None)
        .await;
    let listed = listed.data()["items"].as_array().unwrap().clone();
    assert!(
        listed.iter().any(|a| a == c.data()),
        "the comment as created is the comment as listed: {} in {listed:?}",
        c.data()
    );
    assert_eq!(
        stats.fused.load(Ordering::Relaxed) - fused_before,
        6,
        "every write should have taken the fused path"
    );

    // A second node writes the task: this node's cached copy is now stale.
    let other_store = eventstore::EventStore::builder(t.pool.clone())
        .upcasters(commands::upcasters())
        .projector(std::sync::Arc::new(commands::write_index::WriteIndex))
        .projector(std::sync::Arc::new(projections::ReadModelProjector))
        .build();
    let other = commands::Commands::new(other_store, t.commands.auth.clone())
        .await
        .unwrap();
    let task_id: uuid::Uuid = task.parse().unwrap();
    let project_id: uuid::Uuid = p.parse().unwrap();
    let meta = eventstore::Metadata::system("test");
    other
        .update_task(
            &meta,
            project_id,
            task_id,
            domain::task::TaskPatch {
                title: Some("from the other node".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    // If-Match with the version the client saw on the other node is
    // honoured although this node's cache is behind it.
    let current = t.call("GET", &path, Some(&admin), None).await;
    assert_eq!(current.data()["version"], 8);
    let r = t
        .call_with(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"importance": 3})),
            &[("If-Match", "\"8\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.data()["version"], 9);
    assert_eq!(r.data()["title"], "from the other node");
    assert_eq!(r.data()["importance"], 3);
    // A stale If-Match is still refused.
    let r = t
        .call_with(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"importance": 4})),
            &[("If-Match", "\"8\"")],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // The other node's cache is stale too: its write lands on top.
    other
        .update_task(
            &meta,
            project_id,
            task_id,
            domain::task::TaskPatch {
                story_points: Some(Some(5)),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let now = t.call("GET", &path, Some(&admin), None).await;
    assert_eq!(now.data()["version"], 10);
    assert_eq!(now.data()["importance"], 3);
    assert_eq!(now.data()["story_points"], 5);

    // Refused writes append nothing.
    let events = t.event_count().await;
    let r = t
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"status_id": uuid::Uuid::now_v7()})),
        )
        .await;
    assert_eq!(r.code(), "TASK_STATUS_NOT_FOUND", "{}", r.body);
    let r = t
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"assignee_ids": [uuid::Uuid::now_v7()]})),
        )
        .await;
    assert_eq!(r.code(), "PROJECT_MEMBER_NOT_FOUND", "{}", r.body);
    assert_eq!(t.event_count().await, events);

    let diffs = projections::verify(&t.commands.store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert!(
        diffs.is_empty(),
        "live read models differ from a replay: {diffs:?}"
    );
}

/// The task cache keeps no comment bodies, so an edit of a comment on a
/// cached task decides from the log: its no-op check and its event's
/// `old_content` see the body as written, never the cache's placeholder.
#[sqlx::test(migrations = "../migrations")]
async fn comment_edits_on_a_cached_task_see_the_bodies(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t.create_project(&admin, "Bodies").await;
    let task = t.create_task(&admin, &p, "commented").await;
    let path = format!("/api/v1/projects/{p}/tasks/{task}");
    let first = json!({"text": "as written"});
    let c = t
        .call(
            "POST",
            &format!("{path}/activities/comments"),
            Some(&admin),
            Some(json!({"content": first})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let comment = id(&c.data()["id"]);
    // A fused write puts the task (without the body) in the cache.
    let r = t
        .call("PATCH", &path, Some(&admin), Some(json!({"importance": 2})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let task_id: uuid::Uuid = task.parse().unwrap();
    let edit = format!("{path}/activities/comments/{comment}");
    let pool = t.pool.clone();
    let version = || async {
        sqlx::query_scalar::<_, i64>("SELECT version FROM streams WHERE stream_id = $1")
            .bind(task_id)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = version().await;
    // The same body again is a no-op: nothing appended.
    let r = t
        .call(
            "PATCH",
            &edit,
            Some(&admin),
            Some(json!({"content": first})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(version().await, before, "an unchanged body appends nothing");
    // A new body records the old one as written.
    let second = json!({"text": "edited"});
    let r = t
        .call(
            "PATCH",
            &edit,
            Some(&admin),
            Some(json!({"content": second})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.data()["content"], second, "{}", r.body);
    let (old, new): (Value, Value) = sqlx::query_as(
        "SELECT payload->'old_content', payload->'content' FROM events
          WHERE stream_id = $1 AND event_type = 'task.comment_edited'",
    )
    .bind(task_id)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((old, new), (first, second));
}

/// A fused `PATCH` runs its response read in the write's own round trip and
/// returns the rows, which decode to what the read models serve.
#[sqlx::test(migrations = "../migrations")]
async fn a_fused_update_returns_its_response_read(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let project_id: uuid::Uuid = t.create_project(&admin, "Reads").await.parse().unwrap();
    let task = t
        .call(
            "POST",
            &format!("/api/v1/projects/{project_id}/tasks"),
            Some(&admin),
            Some(json!({"title": "first"})),
        )
        .await;
    let task_id: uuid::Uuid = id(&task.data()["id"]).parse().unwrap();
    let meta = eventstore::Metadata::system("test");
    let q = projections::queries_tasks::task_read(task_id);
    let patch = domain::task::TaskPatch {
        title: Some("read in the write".into()),
        ..Default::default()
    };
    let (_, rows) = t
        .commands
        .update_task_reading(&meta, project_id, task_id, patch, None, &q)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the fused update returns its read");
    let read = projections::queries_tasks::task_from_read(&rows, project_id).unwrap();
    let stored = projections::queries_tasks::task(&t.pool, project_id, task_id)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        serde_json::to_value(&stored).unwrap()
    );
    assert_eq!(read.unwrap().title, "read in the write");
    // Nothing to write: no append, no rows (the caller reads for itself).
    let same = domain::task::TaskPatch {
        title: Some("read in the write".into()),
        ..Default::default()
    };
    let (_, rows) = t
        .commands
        .update_task_reading(&meta, project_id, task_id, same, None, &q)
        .await
        .unwrap();
    assert!(rows.is_empty());
}
