//! The write side owns its state (DESIGN.md §4): commands decide from
//! aggregates and write-side indexes read under the lock that guards the
//! invariant, never from read models; and the races that reading outside
//! the transaction allowed stay closed.

use commands::users::NewUser;
use domain::ErrorCode;
use domain::task::{TaskFields, TaskPatch};
use domain::task_config::ConfigCommand;
use eventstore::Metadata;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::common::app;

fn meta() -> Metadata {
    Metadata::system("test")
}

fn code(error: commands::CommandError) -> ErrorCode {
    match error {
        commands::CommandError::Domain(e) => e.code,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

fn id(v: &Value) -> Uuid {
    v.as_str().unwrap().parse().unwrap()
}

/// With the read models swapped for empty tables (as when they are being
/// rebuilt, or lost), every command still decides exactly as it would
/// with them: numbering, parent cycles, sprint membership, status use,
/// sprint completion and role use all come from the write side. Reads are
/// what a rebuild then restores.
#[sqlx::test(migrations = "../migrations")]
async fn commands_decide_without_read_models(_: PgPoolOptions, options: PgConnectOptions) {
    let t = app(options).await;
    let admin = t.admin().await;
    let project = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin),
            Some(json!({"name": "Write side"})),
        )
        .await;
    let p = id(&project.data()["id"]);
    let statuses = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/task-statuses"),
            Some(&admin),
            None,
        )
        .await;
    let status = |name: &str| {
        id(&statuses.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["id"])
    };
    let (todo, done) = (status("Todo"), status("Done"));
    let sprint = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/sprints"),
            Some(&admin),
            Some(json!({"name": "S1"})),
        )
        .await;
    let s = id(&sprint.data()["id"]);
    let a = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&admin),
            Some(json!({"title": "A", "sprint_id": s, "status_id": todo})),
        )
        .await;
    let a = id(&a.data()["id"]);
    let b = t
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&admin),
            Some(json!({"title": "B", "parent_task_id": a, "sprint_id": s, "status_id": done})),
        )
        .await;
    let b = id(&b.data()["id"]);
    let role = t
        .commands
        .create_global_role(&meta(), "Holders".into(), vec!["projects.read".into()])
        .await
        .unwrap();
    let user = t
        .commands
        .create_user(
            &meta(),
            NewUser {
                username: "holder".into(),
                password: "holder-password".into(),
                full_name: "Holder".into(),
                email: None,
                role_id: role,
                must_change_password: false,
            },
        )
        .await
        .unwrap();

    // The read models go away; empty tables take their place.
    sqlx::raw_sql("ALTER SCHEMA rm RENAME TO rm_hidden")
        .execute(&t.pool)
        .await
        .unwrap();
    let mut conn = t.pool.acquire().await.unwrap();
    projections::rebuild::create_tables(&mut conn, "rm")
        .await
        .unwrap();
    drop(conn);

    let c = t
        .commands
        .create_task(
            &meta(),
            p,
            TaskFields {
                title: "C".into(),
                parent_task_id: Some(b),
                sprint_id: Some(s),
                ..TaskFields::default()
            },
        )
        .await
        .expect("parent and sprint are known to the write side")
        .task_id;
    let cycle = t
        .commands
        .update_task(
            &meta(),
            p,
            a,
            TaskPatch {
                parent_task_id: Some(Some(c)),
                ..TaskPatch::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(cycle), ErrorCode::TASK_PARENT_CYCLE_DETECTED);
    let in_use = t
        .commands
        .configure_tasks(&meta(), p, ConfigCommand::DeleteStatus { status_id: todo })
        .await
        .unwrap_err();
    assert_eq!(code(in_use), ErrorCode::TASK_STATUS_IN_USE);
    let role_in_use = t
        .commands
        .delete_global_role(&meta(), role)
        .await
        .unwrap_err();
    assert_eq!(code(role_in_use), ErrorCode::ROLE_IN_USE);
    let before: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'task.updated'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    t.commands
        .complete_sprint(&meta(), p, s, None)
        .await
        .expect("the sprint's tasks are known to the write side");
    let moved: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'task.updated'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(moved - before, 2, "A and C are open; B is done and stays");

    // Read models back, rebuilt from the log: they show what the commands
    // decided while they were gone.
    sqlx::raw_sql("DROP SCHEMA rm CASCADE; ALTER SCHEMA rm_hidden RENAME TO rm")
        .execute(&t.pool)
        .await
        .unwrap();
    projections::rebuild(&t.commands.store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    // The rebuilt tables come with planner statistics (this machine runs
    // PostgreSQL with autovacuum off: nothing else analyses them).
    let analysed: bool =
        sqlx::query_scalar("SELECT reltuples >= 0 FROM pg_class WHERE oid = 'rm.tasks'::regclass")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(analysed, "rebuild analyses the tables it builds");
    let c_view = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/tasks/{c}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(c_view.data()["task_number"], 3);
    assert_eq!(c_view.data()["parent_task_id"], json!(b));
    assert!(
        c_view.data().get("sprint_id").is_none(),
        "moved to the backlog"
    );
    let b_view = t
        .call(
            "GET",
            &format!("/api/v1/projects/{p}/tasks/{b}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(b_view.data()["sprint_id"], json!(s));
    let _ = user;
}

/// Deleting a global role and assigning it race: before, the holders were
/// counted outside the deleting transaction and the role was loaded
/// outside the assigning one, so a user could end up holding a deleted
/// role. Now both lock the role's stream row (exclusive / shared) and
/// decide inside their transactions.
#[sqlx::test(migrations = "../migrations")]
async fn role_delete_and_assign_race_leaves_no_holder_of_a_deleted_role(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = app(options).await;
    let base = t
        .commands
        .create_global_role(&meta(), "Base".into(), vec![])
        .await
        .unwrap();
    let user = t
        .commands
        .create_user(
            &meta(),
            NewUser {
                username: "racer".into(),
                password: "racer-password".into(),
                full_name: "Racer".into(),
                email: None,
                role_id: base,
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    let mut outcomes = (0, 0);
    for round in 0..20 {
        let role = t
            .commands
            .create_global_role(&meta(), format!("Contested {round}"), vec![])
            .await
            .unwrap();
        let (m1, m2) = (meta(), meta());
        let (assign, delete) = tokio::join!(
            t.commands.change_user_role(&m1, user, role),
            t.commands.delete_global_role(&m2, role),
        );
        let holder = t.commands.load_user(user).await.unwrap().role_id;
        let deleted = t
            .commands
            .load::<domain::global_role::GlobalRoleEvent, domain::global_role::GlobalRole>(
                role,
                domain::global_role::GlobalRole::evolve,
            )
            .await
            .unwrap()
            .state
            .deleted;
        assert!(
            !(deleted && holder == role),
            "round {round}: the user holds a deleted role ({assign:?}, {delete:?})"
        );
        match (assign, delete) {
            (Ok(()), Err(e)) => {
                assert_eq!(code(e), ErrorCode::ROLE_IN_USE);
                outcomes.0 += 1;
            }
            (Err(e), Ok(())) => {
                assert_eq!(code(e), ErrorCode::ROLE_NOT_FOUND);
                outcomes.1 += 1;
            }
            other => panic!("round {round}: exactly one may win, got {other:?}"),
        }
        // Put the user back so the next round starts the same way.
        if holder == role {
            t.commands
                .change_user_role(&meta(), user, base)
                .await
                .unwrap();
        }
    }
    assert_eq!(outcomes.0 + outcomes.1, 20);
}

/// The gap-safe horizon is cluster-wide: one open transaction anywhere
/// holds it back. A node must still let in a user another node created
/// after that transaction began (the login was refused until the
/// transaction ended, seen as flaky logins after a restart while another
/// database on the server ran a long test).
#[sqlx::test(migrations = "../migrations")]
async fn directory_sees_other_nodes_users_past_a_held_horizon(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use sqlx::Connection;
    let node1 = app(options.clone()).await;
    let node2 = app(options.clone()).await;
    let mut holder = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut holder)
        .await
        .unwrap();

    let role = node2
        .commands
        .create_global_role(&meta(), "Late".into(), vec![])
        .await
        .unwrap();
    let user = node2
        .commands
        .create_user(
            &meta(),
            NewUser {
                username: "late-comer".into(),
                password: "late-password".into(),
                full_name: "Late".into(),
                email: None,
                role_id: role,
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    // Still behind the horizon: the safe read alone would not see it.
    let safe = node1
        .commands
        .store
        .read_all(eventstore::GlobalPosition::default(), 10_000)
        .await
        .unwrap();
    assert!(
        !safe.iter().any(|e| e.stream_id == user),
        "the held transaction should hold the horizon before the user"
    );
    node1.commands.directory.sync().await.unwrap();
    let seen = node1.commands.directory.user_by_name("late-comer");
    assert_eq!(seen.map(|u| u.id), Some(user));
    node1.login("late-comer", "late-password").await;

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    node1.commands.directory.sync().await.unwrap();
    assert_eq!(
        node1.commands.directory.user(user).map(|u| u.id),
        Some(user)
    );
}

/// The directory holds every project, but whole only those a command on
/// this node used (the rest keep flags, roles and members: what access
/// checks and the relay read). A project another node configured is
/// refused to nobody while slim, and the first command here folds its
/// whole stream: it decides with the configuration made elsewhere.
#[sqlx::test(migrations = "../migrations")]
async fn projects_are_held_slim_until_a_command_here_uses_them(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let node1 = app(options.clone()).await;
    let node2 = app(options.clone()).await;
    let admin1 = node1.admin().await;
    let admin2 = node2.admin().await;
    let project = node2
        .call(
            "POST",
            "/api/v1/projects",
            Some(&admin2),
            Some(json!({"name": "Elsewhere"})),
        )
        .await;
    let p = id(&project.data()["id"]);
    let review = node2
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/task-statuses"),
            Some(&admin2),
            Some(json!({"name": "Review", "category": "inprogress"})),
        )
        .await;
    assert_eq!(review.status, 201, "{:?}", review.body);
    let review = id(&review.data()["id"]);

    let directory = &node1.commands.directory;
    directory.sync().await.unwrap();
    assert!(
        directory.project_state(p).is_none(),
        "a project no command here used is held slim"
    );
    let roster = directory
        .project_roster(p)
        .expect("every project has a roster");
    assert!(roster.is_live());
    assert_eq!(roster.roles.len(), 3, "the seeded roles stay");
    assert_eq!(roster.members.len(), 1, "the creator's membership stays");
    let creator = roster.members.first().unwrap().1.user_id;
    let access = directory.project(p, Some(creator)).expect("live project");
    assert!(
        access.member.is_some_and(|(_, perms)| !perms.is_empty()),
        "the creator's role permissions come from the slim entry"
    );

    // The first command here folds the stream and decides with the status
    // made on the other node (an unknown status would be refused).
    let task = node1
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&admin1),
            Some(json!({"title": "uses the remote status", "status_id": review})),
        )
        .await;
    assert_eq!(task.status, 201, "{:?}", task.body);
    assert_eq!(id(&task.data()["status_id"]), review);
    let whole = directory
        .project_state(p)
        .expect("held whole after a command");
    assert_eq!(whole.state.name, "Elsewhere");
    assert!(whole.state.config.statuses.get(&review).is_some());

    // A whole entry follows the other node's changes through the tail.
    let done = node2
        .call(
            "POST",
            &format!("/api/v1/projects/{p}/task-statuses"),
            Some(&admin2),
            Some(json!({"name": "Shipped", "category": "done"})),
        )
        .await;
    let shipped = id(&done.data()["id"]);
    directory.sync().await.unwrap();
    let whole = directory.project_state(p).expect("still whole");
    assert!(whole.state.config.statuses.get(&shipped).is_some());
    assert_eq!(
        whole.version,
        node1
            .commands
            .store
            .read_stream(p, 0)
            .await
            .unwrap()
            .last()
            .unwrap()
            .version
    );
}
