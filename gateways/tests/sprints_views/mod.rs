//! In-process tests of sprints, interaction views and manual task
//! positions against a real PostgreSQL database: every route and error
//! code, task moves on completion and deletion, rejected commands leaving
//! no trace, the per-context view lock, history/as_of, and rebuild+verify.

use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::{self, app};

fn id(reply: &common::Reply) -> String {
    reply.data()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", reply.body))
        .to_owned()
}

fn items(reply: &common::Reply) -> Vec<Value> {
    reply.data()["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {}", reply.body))
        .clone()
}

fn names(reply: &common::Reply) -> Vec<String> {
    items(reply)
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn project_creation_seeds_backlog_and_timeline_views(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Views"})),
        )
        .await);
    let backlog = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=backlog"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(backlog.status, 200, "{}", backlog.body);
    let views = items(&backlog);
    assert_eq!(views.len(), 1);
    assert_eq!(views[0]["name"], "Table");
    assert_eq!(views[0]["view_type"], "table");
    assert_eq!(views[0]["config"]["column_by"], "sprint");
    assert_eq!(
        views[0]["config"]["filters"]["task_types"],
        json!({"all": false, "items": {"normal": {"all": true}}})
    );
    assert_eq!(views[0]["position"], 0.0);
    assert!(
        views[0].get("sprint_id").is_none(),
        "null sprint_id is omitted"
    );
    assert_eq!(views[0]["project_id"], p.as_str());

    let types = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/task-types"),
            Some(&admin),
            None,
        )
        .await;
    let epic = items(&types)
        .into_iter()
        .find(|t| t["name"] == "Epic")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let timeline = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=timeline&sprint_id=ignored"),
            Some(&admin),
            None,
        )
        .await;
    let views = items(&timeline);
    assert_eq!(views.len(), 1);
    assert_eq!(views[0]["name"], "Roadmap");
    assert_eq!(views[0]["view_type"], "roadmap");
    assert_eq!(
        views[0]["config"]["filters"]["task_types"],
        json!({"all": false, "items": {epic: true}})
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn sprint_lifecycle_history_and_as_of(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Sprints"})),
        )
        .await);
    let base = format!("/api/v1/projects/{p}/sprints");
    let created = t
        .call(
            "POST",
            &base,
            Some(&admin),
            Some(json!({"name": "Sprint 1", "start_date": "2026-01-05T00:00:00Z", "goal": "ship"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let s = id(&created);
    let data = created.data();
    assert_eq!(data["status"], "planned");
    assert_eq!(data["project_id"], p.as_str());
    assert_eq!(data["start_date"], "2026-01-05T00:00:00Z");
    assert_eq!(data["goal"], "ship");
    assert!(data.get("end_date").is_none(), "null optionals are omitted");
    assert!(data["created_at"].is_string() && data["updated_at"].is_string());

    // Seeded sprint views: Board then Table, filtered to this sprint.
    let views = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=sprint&sprint_id={s}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(names(&views), ["Board", "Table"]);
    let board = &items(&views)[0];
    assert_eq!(board["view_type"], "board");
    assert_eq!(board["sprint_id"], s.as_str());
    assert_eq!(board["config"]["column_by"], "status");
    assert_eq!(
        board["config"]["filters"]["sprints"],
        json!({"all": false, "items": {s.clone(): true}})
    );
    assert_eq!(
        board["config"]["filters"]["task_types"],
        json!({"all": false, "items": {"normal": {"all": true}}})
    );
    assert_eq!(
        board["config"]["collapsed_columns"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the Backlog status column is collapsed"
    );
    let table = &items(&views)[1];
    assert_eq!(
        (table["view_type"].clone(), table["position"].clone()),
        (json!("table"), json!(1.0))
    );

    // PATCH: three-state goal/dates, status, validation.
    let path = format!("{base}/{s}");
    let patched = t
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"goal": null, "end_date": "2026-01-19", "status": "active"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert!(patched.data().get("goal").is_none());
    assert_eq!(patched.data()["end_date"], "2026-01-19T00:00:00Z");
    assert_eq!(patched.data()["start_date"], "2026-01-05T00:00:00Z");
    assert_eq!(patched.data()["status"], "active");
    let renamed = t
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"name": "Sprint One"})),
        )
        .await;
    assert_eq!(renamed.data()["name"], "Sprint One");
    assert_eq!(renamed.data()["status"], "active");

    let list = t.call("GET", &base, Some(&admin), None).await;
    assert_eq!(names(&list), ["Sprint One"]);
    let got = t.call("GET", &path, Some(&admin), None).await;
    assert_eq!(got.data(), renamed.data());

    // History: every version, with actor; as_of by version and by time.
    let history = t
        .call("GET", &format!("{path}/history"), Some(&admin), None)
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    let entries = items(&history);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["sprint.created", "sprint.updated", "sprint.updated"]
    );
    assert_eq!(entries[0]["version"], 1);
    assert!(entries[0]["actor_id"].is_string());
    assert_eq!(entries[0]["payload"]["name"], "Sprint 1");
    assert_eq!(entries[2]["changes"][0]["field"], "name");

    let v1 = t
        .call("GET", &format!("{path}?as_of=1"), Some(&admin), None)
        .await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert_eq!(v1.data()["name"], "Sprint 1");
    assert_eq!(v1.data()["goal"], "ship");
    assert_eq!(v1.data()["status"], "planned");
    let at = entries[1]["recorded_at"].as_str().unwrap();
    let v2 = t
        .call(
            "GET",
            &format!("{path}?as_of={}", at.replace('+', "%2B")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(v2.data()["status"], "active");
    assert_eq!(v2.data()["name"], "Sprint 1");
    let now = t
        .call("GET", &format!("{path}?as_of=99"), Some(&admin), None)
        .await;
    assert_eq!(
        now.data(),
        got.data(),
        "as_of past the end is the current state"
    );
    let before = t
        .call("GET", &format!("{path}?as_of=0"), Some(&admin), None)
        .await;
    assert_eq!((before.status, before.code()), (404, "SPRINT_NOT_FOUND"));
    let bad = t
        .call(
            "GET",
            &format!("{path}?as_of=yesterday"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "BAD_REQUEST"));

    // Errors.
    let missing = format!("{base}/{}", uuid::Uuid::now_v7());
    for (method, path, body) in [
        ("GET", missing.clone(), None),
        ("PATCH", missing.clone(), Some(json!({"name": "x"}))),
        ("DELETE", missing.clone(), None),
        ("POST", format!("{missing}/complete"), None),
        ("GET", format!("{missing}/history"), None),
    ] {
        let reply = t.call(method, &path, Some(&admin), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, "SPRINT_NOT_FOUND"),
            "{method} {path}"
        );
    }

    // Complete twice.
    let done = t
        .call("POST", &format!("{path}/complete"), Some(&admin), None)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.data()["status"], "completed");
    let again = t
        .call(
            "POST",
            &format!("{path}/complete"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (409, "SPRINT_ALREADY_COMPLETE")
    );

    // Delete: its views go with it, the history stays.
    let deleted = t.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.data()["message"], "sprint deleted");
    let gone = t.call("GET", &path, Some(&admin), None).await;
    assert_eq!(gone.code(), "SPRINT_NOT_FOUND");
    let view_gone = t
        .call(
            "GET",
            &format!(
                "/api/v1/projects/{p}/views/{}",
                board["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (view_gone.status, view_gone.code()),
        (404, "VIEW_NOT_FOUND")
    );
    let history = t
        .call("GET", &format!("{path}/history"), Some(&admin), None)
        .await;
    assert_eq!(
        items(&history).last().unwrap()["event_type"],
        "sprint.deleted"
    );
    let list = t.call("GET", &base, Some(&admin), None).await;
    assert!(items(&list).is_empty());
}

/// Creates a task through the task API; returns its id.
async fn task<S, B>(t: &common::TestApp<S>, token: &str, project: &str, body: Value) -> String
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let reply = t
        .call(
            "POST",
            &format!("/api/v1/projects/{project}/tasks"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    id(&reply)
}

async fn sprint_of<S, B>(t: &common::TestApp<S>, token: &str, project: &str, task: &str) -> Value
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let reply = t
        .call(
            "GET",
            &format!("/api/v1/projects/{project}/tasks/{task}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .data()
        .get("sprint_id")
        .cloned()
        .unwrap_or(Value::Null)
}

#[sqlx::test(migrations = "../migrations")]
async fn completion_and_deletion_move_tasks(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Moves"})),
        )
        .await);
    let statuses = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/task-statuses"),
            Some(&admin),
            None,
        )
        .await;
    let done_status = items(&statuses)
        .into_iter()
        .find(|s| s["category"] == "done")
        .unwrap()["id"]
        .clone();
    let base = format!("/api/v1/projects/{p}/sprints");
    let mut sprints = Vec::new();
    for name in ["S1", "S2", "S3"] {
        let reply = t
            .call("POST", &base, Some(&admin), Some(json!({"name": name})))
            .await;
        sprints.push(id(&reply));
    }
    let [s1, s2, s3] = [&sprints[0], &sprints[1], &sprints[2]];
    let open = task(&t, &admin, &p, json!({"title": "open", "sprint_id": s1})).await;
    let finished = task(
        &t,
        &admin,
        &p,
        json!({"title": "finished", "sprint_id": s1, "status_id": done_status}),
    )
    .await;
    let elsewhere = task(
        &t,
        &admin,
        &p,
        json!({"title": "elsewhere", "sprint_id": s3}),
    )
    .await;

    // Bad targets are refused and change nothing.
    let before = t.event_count().await;
    let complete = format!("{base}/{s1}/complete");
    for (body, status, code) in [
        (json!({"move_to_sprint_id": s1}), 400, "BAD_REQUEST"),
        (
            json!({"move_to_sprint_id": uuid::Uuid::now_v7()}),
            404,
            "SPRINT_NOT_FOUND",
        ),
        (
            json!({"move_to_sprint_id": "not-a-uuid"}),
            400,
            "BAD_REQUEST",
        ),
    ] {
        let reply = t.call("POST", &complete, Some(&admin), Some(body)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{}",
            reply.body
        );
    }
    assert_eq!(t.event_count().await, before, "refusals append nothing");
    let closed = t
        .call("POST", &format!("{base}/{s3}/complete"), Some(&admin), None)
        .await;
    assert_eq!(closed.status, 200);
    assert_eq!(
        sprint_of(&t, &admin, &p, &elsewhere).await,
        json!(null),
        "an open task of a sprint completed into the backlog"
    );
    let before = t.event_count().await;
    let into_closed = t
        .call(
            "POST",
            &complete,
            Some(&admin),
            Some(json!({"move_to_sprint_id": s3})),
        )
        .await;
    assert_eq!(
        (into_closed.status, into_closed.code()),
        (400, "BAD_REQUEST")
    );
    assert_eq!(t.event_count().await, before, "refusals append nothing");

    // Completion into S2: the open task moves, the done one stays.
    let reply = t
        .call(
            "POST",
            &complete,
            Some(&admin),
            Some(json!({"move_to_sprint_id": s2})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data()["status"], "completed");
    assert_eq!(sprint_of(&t, &admin, &p, &open).await, json!(s2));
    assert_eq!(sprint_of(&t, &admin, &p, &finished).await, json!(s1));
    let history = t
        .call("GET", &format!("{base}/{s1}/history"), Some(&admin), None)
        .await;
    let last = items(&history).last().unwrap().clone();
    assert_eq!(last["event_type"], "sprint.completed");
    assert_eq!(last["payload"]["moved_to_sprint_id"], s2.as_str());
    assert_eq!(last["payload"]["moved_task_ids"], json!([open]));
    // The move is a task.updated on the task's own stream.
    let task_history = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/tasks/{open}/history"),
            Some(&admin),
            None,
        )
        .await;
    let moved = items(&task_history).last().unwrap().clone();
    assert_eq!(moved["event_type"], "task.updated");
    assert_eq!(
        moved["changes"][0],
        json!({"field": "sprint", "old": s1, "new": s2})
    );

    // Deleting S2 sends all of its tasks to the backlog.
    let done_in_s2 = task(
        &t,
        &admin,
        &p,
        json!({"title": "done in s2", "sprint_id": s2, "status_id": done_status}),
    )
    .await;
    let deleted = t
        .call("DELETE", &format!("{base}/{s2}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(sprint_of(&t, &admin, &p, &open).await, json!(null));
    assert_eq!(sprint_of(&t, &admin, &p, &done_in_s2).await, json!(null));
    let views = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=sprint&sprint_id={s2}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((views.status, views.code()), (404, "SPRINT_NOT_FOUND"));
    // A deleted sprint can no longer receive tasks.
    let reply = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&admin),
            Some(json!({"title": "late", "sprint_id": s2})),
        )
        .await;
    assert_eq!(reply.code(), "SPRINT_NOT_FOUND");
}

#[sqlx::test(migrations = "../migrations")]
async fn views_routes_and_errors(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Tabs"})),
        )
        .await);
    let other = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Other"})),
        )
        .await);
    let s = id(&t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/sprints"),
            Some(&admin),
            Some(json!({"name": "S"})),
        )
        .await);
    let views = format!("/api/v1/projects/{p}/views");
    let sprint_q = format!("context=sprint&sprint_id={s}");

    // Create: defaults, explicit type and position, plugin config.
    let created = t
        .call(
            "POST",
            &format!("{views}?{sprint_q}"),
            Some(&admin),
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.data()["view_type"], "table");
    assert_eq!(created.data()["config"], json!({}));
    assert_eq!(created.data()["position"], 2.0, "after the seeded tabs");
    assert_eq!(created.data()["sprint_id"], s.as_str());
    let mine = id(&created);
    let plugin = t
        .call(
            "POST",
            &format!("{views}?context=backlog"),
            Some(&admin),
            Some(json!({"name": "Checklist", "view_type": "plugin", "position": 5,
                        "config": {"plugin_manifest_id": "com.paca.checklist", "plugin_component": "Board"}})),
        )
        .await;
    assert_eq!(plugin.status, 201, "{}", plugin.body);
    assert_eq!(plugin.data()["position"], 5.0);

    let before = t.event_count().await;
    for (method, path, body, status, code) in [
        (
            "POST",
            format!("{views}?{sprint_q}"),
            json!({"name": "x", "view_type": "gantt"}),
            400,
            "VIEW_TYPE_INVALID",
        ),
        (
            "POST",
            format!("{views}?{sprint_q}"),
            json!({"name": "  "}),
            400,
            "VIEW_NAME_INVALID",
        ),
        (
            "POST",
            format!("{views}?{sprint_q}"),
            json!({"view_type": "board"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("{views}?{sprint_q}"),
            json!({"name": "p", "view_type": "plugin", "config": {"plugin_component": "C"}}),
            400,
            "VIEW_PLUGIN_CONFIG_REQUIRED",
        ),
        (
            "POST",
            format!("{views}?{sprint_q}"),
            json!({"name": "x", "config": [1, 2]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("{views}?context=roadmap"),
            json!({"name": "x"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            views.clone(),
            json!({"name": "no sprint id"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("{views}?context=sprint&sprint_id={}", uuid::Uuid::now_v7()),
            json!({"name": "x"}),
            404,
            "SPRINT_NOT_FOUND",
        ),
        (
            "PATCH",
            format!("{views}/{mine}"),
            json!({"name": ""}),
            400,
            "VIEW_NAME_INVALID",
        ),
        (
            "PATCH",
            format!("{views}/{mine}"),
            json!({"view_type": "plugin"}),
            400,
            "VIEW_PLUGIN_CONFIG_REQUIRED",
        ),
        (
            "PATCH",
            format!("{views}/{mine}"),
            json!({"view_type": "list"}),
            400,
            "VIEW_TYPE_INVALID",
        ),
        (
            "PATCH",
            format!("/api/v1/projects/{other}/views/{mine}"),
            json!({"name": "stolen"}),
            404,
            "VIEW_NOT_FOUND",
        ),
        (
            "DELETE",
            format!("/api/v1/projects/{other}/views/{mine}"),
            json!(null),
            404,
            "VIEW_NOT_FOUND",
        ),
        (
            "PUT",
            format!("{views}/positions?{sprint_q}"),
            json!({"view_ids": [mine]}),
            400,
            "VIEW_REORDER_INVALID",
        ),
        (
            "PUT",
            format!("{views}/positions?{sprint_q}"),
            json!({"view_ids": []}),
            400,
            "VIEW_REORDER_INVALID",
        ),
        (
            "PUT",
            format!("{views}/positions?context=timeline"),
            json!({"view_ids": [mine]}),
            400,
            "VIEW_REORDER_INVALID",
        ),
        (
            "PUT",
            format!("{views}/positions?context=sprint"),
            json!({"view_ids": [mine]}),
            400,
            "BAD_REQUEST",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let reply = t.call(method, &path, Some(&admin), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{method} {path}: {}",
            reply.body
        );
    }
    assert_eq!(t.event_count().await, before, "refusals append nothing");

    let list_bad = t
        .call("GET", &format!("{views}?context=nope"), Some(&admin), None)
        .await;
    assert_eq!((list_bad.status, list_bad.code()), (400, "BAD_REQUEST"));
    let list_no_sprint = t.call("GET", &views, Some(&admin), None).await;
    assert_eq!(list_no_sprint.status, 400, "context defaults to sprint");

    // GET / PATCH.
    let got = t
        .call("GET", &format!("{views}/{mine}"), Some(&admin), None)
        .await;
    assert_eq!(got.data(), created.data());
    let patched = t
        .call(
            "PATCH",
            &format!("{views}/{mine}"),
            Some(&admin),
            Some(json!({"name": "Renamed", "view_type": "board", "config": {"sort_by": "manual"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.data()["name"], "Renamed");
    assert_eq!(patched.data()["view_type"], "board");
    assert_eq!(patched.data()["config"], json!({"sort_by": "manual"}));

    // Reorder the sprint's three tabs.
    let list = t
        .call("GET", &format!("{views}?{sprint_q}"), Some(&admin), None)
        .await;
    let ids: Vec<String> = items(&list)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let reversed: Vec<&String> = ids.iter().rev().collect();
    let reordered = t
        .call(
            "PUT",
            &format!("{views}/positions?{sprint_q}"),
            Some(&admin),
            Some(json!({ "view_ids": reversed })),
        )
        .await;
    assert_eq!(reordered.status, 204, "{}", reordered.body);
    let list = t
        .call("GET", &format!("{views}?{sprint_q}"), Some(&admin), None)
        .await;
    assert_eq!(names(&list), ["Renamed", "Table", "Board"]);
    assert_eq!(items(&list)[2]["position"], 2.0);

    // Delete down to the last view of the context.
    let deleted = t
        .call("DELETE", &format!("{views}/{mine}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let timeline = t
        .call(
            "GET",
            &format!("{views}?context=timeline"),
            Some(&admin),
            None,
        )
        .await;
    let roadmap = items(&timeline)[0]["id"].as_str().unwrap().to_owned();
    let last = t
        .call("DELETE", &format!("{views}/{roadmap}"), Some(&admin), None)
        .await;
    assert_eq!((last.status, last.code()), (409, "VIEW_IS_LAST_VIEW"));
    let missing = t
        .call("DELETE", &format!("{views}/{mine}"), Some(&admin), None)
        .await;
    assert_eq!((missing.status, missing.code()), (404, "VIEW_NOT_FOUND"));
}

#[sqlx::test(migrations = "../migrations")]
async fn the_last_view_survives_concurrent_deletes(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Race"})),
        )
        .await);
    let s = id(&t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/sprints"),
            Some(&admin),
            Some(json!({"name": "S"})),
        )
        .await);
    let list = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=sprint&sprint_id={s}"),
            Some(&admin),
            None,
        )
        .await;
    let ids: Vec<String> = items(&list)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let paths: Vec<String> = ids
        .iter()
        .map(|v| format!("/api/v1/projects/{p}/views/{v}"))
        .collect();
    let deletes = paths
        .iter()
        .map(|path| t.call("DELETE", path, Some(&admin), None));
    let replies = futures_util::future::join_all(deletes).await;
    let mut outcomes: Vec<(u16, String)> = replies
        .iter()
        .map(|r| (r.status, r.code().to_owned()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [(204, String::new()), (409, "VIEW_IS_LAST_VIEW".into())]
    );
    let list = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=sprint&sprint_id={s}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(items(&list).len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn views_created_while_their_sprint_is_deleted_never_linger(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Orphans"})),
        )
        .await);
    for round in 0..5 {
        let s = id(&t
            .call(
                "POST",
                &format!("/api/v1/projects/{p}/sprints"),
                Some(&admin),
                Some(json!({"name": format!("S{round}")})),
            )
            .await);
        let create_path = format!("/api/v1/projects/{p}/views?context=sprint&sprint_id={s}");
        let delete_path = format!("/api/v1/projects/{p}/sprints/{s}");
        let create = t.call(
            "POST",
            &create_path,
            Some(&admin),
            Some(json!({"name": "Late"})),
        );
        let delete = t.call("DELETE", &delete_path, Some(&admin), None);
        let (created, deleted) = futures_util::future::join(create, delete).await;
        assert_eq!(deleted.status, 200, "{}", deleted.body);
        assert!(
            created.status == 201 || created.code() == "SPRINT_NOT_FOUND",
            "{}",
            created.body
        );
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sprint_views WHERE sprint_id = $1")
                .bind(s.parse::<uuid::Uuid>().unwrap())
                .fetch_one(&t.pool)
                .await
                .unwrap();
        assert_eq!(left, 0, "round {round}: a view outlived its sprint");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn task_positions_and_permissions(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let (viewer_id, viewer) = t.user(&admin, "vera").await;
    let (_, stranger) = t.user(&admin, "stan").await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Order", "is_public": true})),
        )
        .await);
    let roles = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/roles"),
            Some(&admin),
            None,
        )
        .await;
    let viewer_role = roles
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role_name"] == "Viewer")
        .unwrap()["id"]
        .clone();
    let added = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/members"),
            Some(&admin),
            Some(json!({"user_id": viewer_id, "project_role_id": viewer_role})),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let backlog = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/views?context=backlog"),
            None,
            None,
        )
        .await;
    assert_eq!(
        backlog.status, 200,
        "public projects are readable anonymously"
    );
    let v = items(&backlog)[0]["id"].as_str().unwrap().to_owned();
    let a = task(&t, &admin, &p, json!({"title": "a"})).await;
    let b = task(&t, &admin, &p, json!({"title": "b"})).await;
    let positions = format!("/api/v1/projects/{p}/views/{v}/task-positions");

    let bulk = t
        .call(
            "PUT",
            &positions,
            Some(&admin),
            Some(json!({"items": [
                {"task_id": a, "position": 98304.0, "group_key": "status-x"},
                {"task_id": b, "position": 163840.0, "group_key": null},
            ]})),
        )
        .await;
    assert_eq!(bulk.status, 204, "{}", bulk.body);
    let single = t
        .call(
            "PUT",
            &format!("{positions}/{b}"),
            Some(&admin),
            Some(json!({"position": 49152.5})),
        )
        .await;
    assert_eq!(single.status, 204, "{}", single.body);
    let listed = t.call("GET", &positions, None, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        items(&listed),
        vec![
            json!({"view_id": v, "task_id": b, "position": 49152.5}),
            json!({"view_id": v, "task_id": a, "position": 98304.0, "group_key": "status-x"}),
        ]
    );
    // The task list is enriched from the same positions.
    let tasks = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/tasks?view_id={v}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(tasks.status, 200, "{}", tasks.body);
    let task_a = items(&tasks)
        .into_iter()
        .find(|x| x["id"] == a.as_str())
        .unwrap();
    assert_eq!(task_a["view_position"], 98304.0);
    assert_eq!(task_a["view_group_key"], "status-x");

    let before = t.event_count().await;
    let missing_view = format!(
        "/api/v1/projects/{p}/views/{}/task-positions",
        uuid::Uuid::now_v7()
    );
    for (method, path, token, body, status, code) in [
        (
            "PUT",
            positions.clone(),
            admin.clone(),
            json!({"items": []}),
            400,
            "BAD_REQUEST",
        ),
        (
            "PUT",
            positions.clone(),
            admin.clone(),
            json!({"items": [{"task_id": a, "position": -1}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "PUT",
            format!("{positions}/{a}"),
            admin.clone(),
            json!({"position": -0.5}),
            400,
            "BAD_REQUEST",
        ),
        (
            "PUT",
            format!("{positions}/{a}"),
            admin.clone(),
            json!({"group_key": "x"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "PUT",
            format!("{positions}/{}", uuid::Uuid::now_v7()),
            admin.clone(),
            json!({"position": 1}),
            404,
            "TASK_NOT_FOUND",
        ),
        (
            "PUT",
            missing_view.clone(),
            admin.clone(),
            json!({"items": [{"task_id": a, "position": 1}]}),
            404,
            "VIEW_NOT_FOUND",
        ),
        (
            "GET",
            missing_view.clone(),
            admin.clone(),
            json!(null),
            404,
            "VIEW_NOT_FOUND",
        ),
        // A Viewer reads but cannot write.
        (
            "PUT",
            format!("{positions}/{a}"),
            viewer.clone(),
            json!({"position": 1}),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            format!("/api/v1/projects/{p}/sprints"),
            viewer.clone(),
            json!({"name": "nope"}),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            format!("/api/v1/projects/{p}/views?context=backlog"),
            viewer.clone(),
            json!({"name": "nope"}),
            403,
            "FORBIDDEN",
        ),
        (
            "DELETE",
            format!("/api/v1/projects/{p}/views/{v}"),
            stranger.clone(),
            json!(null),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            format!("/api/v1/projects/{p}/sprints"),
            admin.clone(),
            json!({"goal": "no name"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v1/projects/{p}/sprints"),
            admin.clone(),
            json!({"name": " "}),
            400,
            "SPRINT_NAME_INVALID",
        ),
        (
            "POST",
            format!("/api/v1/projects/{p}/sprints"),
            admin.clone(),
            json!({"name": "S", "status": "started"}),
            400,
            "SPRINT_STATUS_INVALID",
        ),
        (
            "POST",
            format!("/api/v1/projects/{p}/sprints"),
            admin.clone(),
            json!({"name": "S", "start_date": "next week"}),
            400,
            "BAD_REQUEST",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let reply = t.call(method, &path, Some(&token), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{method} {path}: {}",
            reply.body
        );
    }
    assert_eq!(t.event_count().await, before, "refusals append nothing");
    let read = t.call("GET", &positions, Some(&viewer), None).await;
    assert_eq!(read.status, 200);
    let anon_write = t
        .call(
            "PUT",
            &format!("{positions}/{a}"),
            None,
            Some(json!({"position": 1})),
        )
        .await;
    assert_eq!(anon_write.status, 401);

    // A deleted view takes its positions with it.
    let extra = id(&t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/views?context=backlog"),
            Some(&admin),
            Some(json!({"name": "Extra"})),
        )
        .await);
    t.call(
        "PUT",
        &format!("/api/v1/projects/{p}/views/{extra}/task-positions/{a}"),
        Some(&admin),
        Some(json!({"position": 1})),
    )
    .await;
    let deleted = t
        .call(
            "DELETE",
            &format!("/api/v1/projects/{p}/views/{extra}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM view_task_positions WHERE view_id = $1")
            .bind(extra.parse::<uuid::Uuid>().unwrap())
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn rebuild_and_verify_after_sprint_and_view_history(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = app(options).await;
    let admin = t.admin().await;
    let p = id(&t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Replay"})),
        )
        .await);
    let base = format!("/api/v1/projects/{p}/sprints");
    let s1 = id(&t
        .call(
            "POST",
            &base,
            Some(&admin),
            Some(json!({"name": "S1", "start_date": "2026-02-01"})),
        )
        .await);
    let s2 = id(&t
        .call(
            "POST",
            &base,
            Some(&admin),
            Some(json!({"name": "S2", "goal": "g"})),
        )
        .await);
    let s3 = id(&t
        .call("POST", &base, Some(&admin), Some(json!({"name": "S3"})))
        .await);
    t.call(
        "PATCH",
        &format!("{base}/{s1}"),
        Some(&admin),
        Some(json!({"status": "active", "end_date": "2026-02-14", "goal": "x"})),
    )
    .await;
    t.call(
        "PATCH",
        &format!("{base}/{s2}"),
        Some(&admin),
        Some(json!({"goal": null})),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let sprint = if i % 2 == 0 { &s1 } else { &s3 };
        tasks.push(
            task(
                &t,
                &admin,
                &p,
                json!({"title": format!("t{i}"), "sprint_id": sprint}),
            )
            .await,
        );
    }
    let views = format!("/api/v1/projects/{p}/views");
    let list = t
        .call(
            "GET",
            &format!("{views}?context=sprint&sprint_id={s1}"),
            Some(&admin),
            None,
        )
        .await;
    let board = items(&list)[0]["id"].as_str().unwrap().to_owned();
    for (i, task_id) in tasks.iter().enumerate() {
        t.call(
            "PUT",
            &format!("{views}/{board}/task-positions/{task_id}"),
            Some(&admin),
            Some(json!({"position": i as f64 * 1.5, "group_key": "g"})),
        )
        .await;
    }
    // Re-positioning a task replaces its row.
    t.call(
        "PUT",
        &format!("{views}/{board}/task-positions"),
        Some(&admin),
        Some(json!({"items": [{"task_id": tasks[0], "position": 9.25}]})),
    )
    .await;
    let extra = id(&t
        .call(
            "POST",
            &format!("{views}?context=backlog"),
            Some(&admin),
            Some(
                json!({"name": "Extra", "view_type": "board", "config": {"column_by": "assignee"}}),
            ),
        )
        .await);
    t.call(
        "PATCH",
        &format!("{views}/{extra}"),
        Some(&admin),
        Some(json!({"name": "Extra 2", "position": 0.5})),
    )
    .await;
    let backlog = t
        .call(
            "GET",
            &format!("{views}?context=backlog"),
            Some(&admin),
            None,
        )
        .await;
    let order: Vec<String> = items(&backlog)
        .iter()
        .rev()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let reordered = t
        .call(
            "PUT",
            &format!("{views}/positions?context=backlog"),
            Some(&admin),
            Some(json!({"view_ids": order})),
        )
        .await;
    assert_eq!(reordered.status, 204);
    t.call(
        "PUT",
        &format!("{views}/{extra}/task-positions/{}", tasks[1]),
        Some(&admin),
        Some(json!({"position": 3})),
    )
    .await;
    let completed = t
        .call(
            "POST",
            &format!("{base}/{s1}/complete"),
            Some(&admin),
            Some(json!({"move_to_sprint_id": s2})),
        )
        .await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    let deleted = t
        .call("DELETE", &format!("{base}/{s3}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    t.call("DELETE", &format!("{views}/{extra}"), Some(&admin), None)
        .await;

    let before_sprints = t.call("GET", &base, Some(&admin), None).await;
    let before_views = t
        .call(
            "GET",
            &format!("{views}?context=sprint&sprint_id={s2}"),
            Some(&admin),
            None,
        )
        .await;
    let before_positions = t
        .call(
            "GET",
            &format!("{views}/{board}/task-positions"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(items(&before_positions).len(), 4);

    let store = eventstore::EventStore::builder(t.pool.clone())
        .upcasters(commands::upcasters())
        .projector(std::sync::Arc::new(commands::write_index::WriteIndex))
        .projector(std::sync::Arc::new(projections::ReadModelProjector))
        .build();
    let diffs = projections::verify(&store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    let report = projections::rebuild(&store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert_eq!(report.events as i64, t.event_count().await);
    let diffs = projections::verify(&store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    let after_sprints = t.call("GET", &base, Some(&admin), None).await;
    assert_eq!(before_sprints.body["data"], after_sprints.body["data"]);
    let after_views = t
        .call(
            "GET",
            &format!("{views}?context=sprint&sprint_id={s2}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(before_views.body["data"], after_views.body["data"]);
    let after_positions = t
        .call(
            "GET",
            &format!("{views}/{board}/task-positions"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(before_positions.body["data"], after_positions.body["data"]);

    // Tampering with a position is caught.
    sqlx::query("UPDATE rm.view_task_positions SET position = position + 1")
        .execute(&t.pool)
        .await
        .unwrap();
    let diffs = projections::verify(&store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].table, "view_task_positions");
}
