//! In-process tests of the REST API against a real PostgreSQL database:
//! concurrency, rejected commands leaving no trace, authorization, secrets.

mod common;
mod replay_equivalence;
mod sprints_views;
mod tasks;
mod write_side;

use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::postgres::PgPoolOptions;

use common::{ADMIN_PASSWORD, app};

#[sqlx::test(migrations = "../migrations")]
async fn quickstart_and_envelope(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let reply = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "My First Project", "description": "Getting started"})),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.data()["task_id_prefix"], "MFP");
    assert_eq!(reply.data()["settings"], json!({}));
    assert!(reply.body["request_id"].is_string());

    let reply = t
        .call(
            "POST",
            "/api/v1/users/me/api-keys",
            Some(&admin),
            Some(json!({"name": "cli"})),
        )
        .await;
    assert_eq!(reply.status, 201);
    let key = reply.data()["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("paca_"));
    let me = t.call("GET", "/api/v1/users/me", Some(&key), None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.data()["username"], "admin");
    assert_eq!(me.data()["role"], "SUPER_ADMIN");
    let list = t
        .call("GET", "/api/v1/users/me/api-keys", Some(&admin), None)
        .await;
    assert!(
        list.data()[0].get("key").is_none(),
        "raw key must not be listed"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn rejected_commands_append_nothing(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let (user_id, user) = t.user(&admin, "alice").await;
    let project = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Paca"})),
        )
        .await
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pm = t
        .call(
            "POST",
            "/api/v1/admin/global-roles",
            Some(&admin),
            Some(json!({"name": "PM", "permissions": ["projects.create"]})),
        )
        .await
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (holder, _) = t.user(&admin, "holder").await;
    let assigned = t
        .call(
            "PUT",
            &format!("/api/v1/admin/users/{holder}/global-roles"),
            Some(&admin),
            Some(json!({"role_ids": [pm]})),
        )
        .await;
    assert_eq!(assigned.data()["role"], "PM");
    let before = t.event_count().await;
    let cases = [
        (
            "POST",
            "/api/v1/projects".to_string(),
            Some(admin.clone()),
            json!({"name": ""}),
            400,
            "PROJECT_NAME_INVALID",
        ),
        (
            "POST",
            "/api/v1/projects".to_string(),
            Some(admin.clone()),
            json!({"name": "x", "task_id_prefix": "PA-CA"}),
            400,
            "PROJECT_PREFIX_INVALID",
        ),
        (
            "POST",
            "/api/v1/projects".to_string(),
            Some(user.clone()),
            json!({"name": "mine"}),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/api/v1/projects".to_string(),
            None,
            json!({"name": "anon"}),
            401,
            "AUTH_MISSING_TOKEN",
        ),
        (
            "POST",
            "/api/v1/admin/users".to_string(),
            Some(admin.clone()),
            json!({"username": "alice", "password": "whatever1", "full_name": "A"}),
            409,
            "USER_USERNAME_TAKEN",
        ),
        (
            "POST",
            "/api/v1/admin/users".to_string(),
            Some(admin.clone()),
            json!({"username": "bob", "password": "short", "full_name": "B"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v1/admin/global-roles".to_string(),
            Some(admin.clone()),
            json!({"name": "USER", "permissions": []}),
            409,
            "ROLE_NAME_TAKEN",
        ),
        (
            "DELETE",
            "/api/v1/admin/global-roles/70616361-0000-0000-0000-000000000003".to_string(),
            Some(admin.clone()),
            json!({}),
            409,
            "ROLE_IS_SYSTEM",
        ),
        (
            "DELETE",
            format!("/api/v1/admin/global-roles/{pm}"),
            Some(admin.clone()),
            json!({}),
            409,
            "ROLE_IN_USE",
        ),
        (
            "POST",
            format!("/api/v1/projects/{project}/roles"),
            Some(admin.clone()),
            json!({"role_name": "Editor", "permissions": []}),
            409,
            "ROLE_NAME_TAKEN",
        ),
        (
            "POST",
            format!("/api/v1/projects/{project}/roles"),
            Some(admin.clone()),
            json!({"role_name": "QA", "permissions": ["Not A Permission"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v1/projects/{project}/members"),
            Some(admin.clone()),
            json!({"user_id": user_id}),
            400,
            "ROLE_REQUIRED",
        ),
        (
            "POST",
            format!("/api/v1/projects/{project}/members"),
            Some(admin.clone()),
            json!({"user_id": user_id, "project_role_id": uuid::Uuid::nil()}),
            404,
            "ROLE_NOT_FOUND",
        ),
        (
            "PATCH",
            format!("/api/v1/projects/{project}"),
            Some(user.clone()),
            json!({"name": "stolen"}),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/api/v1/users/me/api-keys".to_string(),
            Some(admin.clone()),
            json!({"name": ""}),
            400,
            "API_KEY_NAME_INVALID",
        ),
        (
            "POST",
            "/api/v1/users/me/api-keys".to_string(),
            Some(admin.clone()),
            json!({"name": "x".repeat(101)}),
            400,
            "API_KEY_NAME_TOO_LONG",
        ),
        (
            "PATCH",
            "/api/v1/users/me/password".to_string(),
            Some(user.clone()),
            json!({"current_password": "wrong-pass", "new_password": "another-pass"}),
            422,
            "USER_INVALID_CURRENT_PASSWORD",
        ),
    ];
    for (method, path, token, body, status, code) in cases {
        let reply = t
            .call(method, &path, token.as_deref(), Some(body.clone()))
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
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_writers_lose_nothing(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let project = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Race"})),
        )
        .await
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Ten users, each added to the same project stream concurrently: every
    // add must land (server-side retry on version conflicts).
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(t.user(&admin, &format!("u{i}")).await.0);
    }
    let roles = t
        .call(
            "GET",
            &format!("/api/v1/projects/{project}/roles"),
            Some(&admin),
            None,
        )
        .await;
    let viewer = roles
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role_name"] == "Viewer")
        .unwrap()["id"]
        .clone();
    let path = format!("/api/v1/projects/{project}/members");
    let adds = users.iter().map(|u| {
        t.call(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"user_id": u, "project_role_id": viewer})),
        )
    });
    let replies = futures_util::future::join_all(adds).await;
    assert!(
        replies.iter().all(|r| r.status == 201),
        "{:?}",
        replies.iter().map(|r| r.body.clone()).collect::<Vec<_>>()
    );
    let members = t.call("GET", &path, Some(&admin), None).await;
    assert_eq!(members.data().as_array().unwrap().len(), 11);

    // The same role name created concurrently: exactly one wins.
    let creates = (0..6).map(|_| {
        t.call(
            "POST",
            "/api/v1/admin/global-roles",
            Some(&admin),
            Some(json!({"name": "PM", "permissions": ["projects.create"]})),
        )
    });
    let replies = futures_util::future::join_all(creates).await;
    let ok = replies.iter().filter(|r| r.status == 201).count();
    let taken = replies
        .iter()
        .filter(|r| r.code() == "ROLE_NAME_TAKEN")
        .count();
    assert_eq!((ok, taken), (1, 5));
}

#[sqlx::test(migrations = "../migrations")]
async fn secrets_never_enter_the_log(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let (_, user) = t.user(&admin, "carol").await;
    let key = t
        .call(
            "POST",
            "/api/v1/users/me/api-keys",
            Some(&user),
            Some(json!({"name": "k"})),
        )
        .await;
    let key = key.data()["key"].as_str().unwrap().to_owned();
    let log: Vec<String> = sqlx::query_scalar("SELECT payload::text || metadata::text FROM events")
        .fetch_all(&t.pool)
        .await
        .unwrap();
    let log = log.join("\n");
    for secret in [
        ADMIN_PASSWORD,
        "initial-pass",
        "fresh-pass-1",
        key.as_str(),
        &key[5..],
        "$argon2",
    ] {
        assert!(
            !log.contains(secret),
            "secret {secret:?} found in the event log"
        );
    }
    // ... yet the log records that they changed.
    assert!(
        log.contains("api_key_created")
            || sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM events WHERE event_type = 'user.api_key_created'"
            )
            .fetch_one(&t.pool)
            .await
            .unwrap()
                == 1
    );
    let changed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE event_type = 'user.password_changed'",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(changed, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn rebuild_then_verify_after_mixed_history(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let (uid, _) = t.user(&admin, "dave").await;
    let p = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "History", "is_public": true})),
        )
        .await;
    let p = p.data()["id"].as_str().unwrap().to_owned();
    t.call(
        "PATCH",
        &format!("/api/v1/projects/{p}"),
        Some(&admin),
        Some(json!({"description": "changed", "settings": {"a": 1}})),
    )
    .await;
    let role = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/roles"),
            Some(&admin),
            Some(json!({"role_name": "QA", "permissions": {"tasks.read": true}})),
        )
        .await;
    let role = role.data()["id"].as_str().unwrap().to_owned();
    t.call(
        "POST",
        &format!("/api/v1/projects/{p}/members"),
        Some(&admin),
        Some(json!({"user_id": uid, "project_role_id": role})),
    )
    .await;
    t.call(
        "PATCH",
        &format!("/api/v1/admin/users/{uid}"),
        Some(&admin),
        Some(json!({"full_name": "Dave D"})),
    )
    .await;
    let before = t
        .call("GET", &format!("/api/v1/projects/{p}/members"), None, None)
        .await;
    assert_eq!(
        before.status, 200,
        "public project members are readable anonymously"
    );

    let store = eventstore::EventStore::builder(t.pool.clone())
        .upcasters(commands::upcasters())
        .projector(std::sync::Arc::new(commands::write_index::WriteIndex))
        .projector(std::sync::Arc::new(projections::ReadModelProjector))
        .build();
    let report = projections::rebuild(&store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert_eq!(report.events as i64, t.event_count().await);
    assert!(
        projections::verify(&store, &|_: u64, _: u64| {})
            .await
            .unwrap()
            .is_empty()
    );
    let after = t
        .call("GET", &format!("/api/v1/projects/{p}/members"), None, None)
        .await;
    assert_eq!(before.body["data"], after.body["data"]);

    // A read model changed behind the projector's back is caught.
    sqlx::query("UPDATE rm.projects SET name = 'tampered'")
        .execute(&t.pool)
        .await
        .unwrap();
    let diffs = projections::verify(&store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].table, "projects");
}

#[sqlx::test(migrations = "../migrations")]
async fn schema_rules(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    // Every table (log, write side, read models) has a primary key.
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname IN ('public', 'rm') AND c.relname NOT LIKE '\\_sqlx%'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "tables without a primary key: {missing:?}"
    );
    // The log tables live in public, never in the read-model schema.
    let misplaced: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'rm' AND tablename IN ('events', 'streams', 'checkpoints', '_sqlx_migrations')",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(misplaced, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn password_gate_and_refresh_family(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    t.call(
        "POST",
        "/api/v1/admin/users",
        Some(&admin),
        Some(json!({"username": "erin", "password": "initial-pass", "full_name": "Erin"})),
    )
    .await;
    let erin = t.login("erin", "initial-pass").await;
    let gated = t.call("GET", "/api/v1/users/me", Some(&erin), None).await;
    assert_eq!(
        (gated.status, gated.code()),
        (403, "AUTH_PASSWORD_CHANGE_REQUIRED")
    );
    let gated = t.call("GET", "/api/v1/projects", Some(&erin), None).await;
    assert_eq!(gated.code(), "AUTH_PASSWORD_CHANGE_REQUIRED");
    let changed = t
        .call(
            "PATCH",
            "/api/v1/users/me/password",
            Some(&erin),
            Some(json!({"current_password": "initial-pass", "new_password": "brand-new-pass"})),
        )
        .await;
    assert_eq!(changed.status, 204);
    // Paca: the change "revokes the session"; every token of it stops
    // working at once, and a fresh login is past the gate.
    let old_session = t.call("GET", "/api/v1/users/me", Some(&erin), None).await;
    assert_eq!(
        (old_session.status, old_session.code()),
        (401, "AUTH_TOKEN_INVALID")
    );
    let erin = t.login("erin", "brand-new-pass").await;
    let me = t.call("GET", "/api/v1/users/me", Some(&erin), None).await;
    assert_eq!(me.status, 200, "a new session is past the gate");
    assert_eq!(me.data()["must_change_password"], false);
    // The old password no longer works.
    let old = t
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "erin", "password": "initial-pass"})),
        )
        .await;
    assert_eq!(old.code(), "AUTH_INVALID_CREDENTIALS");
    let _ = ADMIN_PASSWORD;
}

/// A database whose read models were built by older code (here: a table
/// missing, as when a release adds one) is rebuilt on start, even when
/// nobody bumped `READ_MODEL_VERSION`.
#[sqlx::test(migrations = "../migrations")]
async fn outdated_read_models_are_rebuilt_on_start(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let created = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Old"})),
        )
        .await;
    assert_eq!(created.status, 201);
    sqlx::query("DROP TABLE rm.sprint_views")
        .execute(&t.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_state SET fingerprint = 'built-by-older-code'")
        .execute(&t.pool)
        .await
        .unwrap();
    let store = eventstore::EventStore::builder(t.pool.clone())
        .upcasters(commands::upcasters())
        .projector(std::sync::Arc::new(commands::write_index::WriteIndex))
        .projector(std::sync::Arc::new(projections::ReadModelProjector))
        .build();
    let report = projections::ensure_ready(&store).await.unwrap();
    assert!(report.is_some(), "a rebuild should have run");
    assert!(
        projections::ensure_ready(&store).await.unwrap().is_none(),
        "and only once"
    );
    let views: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rm.sprint_views")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(views, 2, "the project's seeded views are back");
    let again = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "New"})),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
}
