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
    let p = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Numbers"})),
        )
        .await;
    let p = id(&p.data()["id"]);
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

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_patches_are_never_lost(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Race"})),
        )
        .await;
    let p = id(&p.data()["id"]);
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
    let task = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&admin),
            Some(json!({"title": "hot"})),
        )
        .await;
    let task = id(&task.data()["id"]);
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
    let p = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Etag"})),
        )
        .await;
    let p = id(&p.data()["id"]);
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
    let p = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "List"})),
        )
        .await;
    let p = id(&p.data()["id"]);
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
    let p = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Strict"})),
        )
        .await;
    let p = id(&p.data()["id"]);
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
