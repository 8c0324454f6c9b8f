//! `rebuild`: replaying the whole log into the real read models.
//!
//! The log holds real domain events, built with the domain's own types
//! (`DomainEvent::event_type` / `to_payload`, so the payloads are exactly
//! what the commands store) and bulk-inserted (generation is not what is
//! measured): the seeded global roles, one user per 100 projects, and per
//! project `project.created` + 3 `project.role_created` +
//! `project.member_added` (one append, as `create_project` writes them,
//! minus its task-configuration seeds) followed by 5 `project.updated`
//! written in rounds over all projects, so consecutive updates hit
//! different projects.
//!
//! Ours: `projections::rebuild` as `paca projections rebuild` runs it
//! (gap-safe `read_all` batches replayed into a fresh schema, final
//! catch-up under the appenders' lock, schema swap), after
//! `projections::ensure_ready` created the live read models. The read
//! models are then checked row by row against the generated history.
//! `projections::verify` (a second replay into a scratch schema, then a
//! table-by-table comparison with the live tables) and `read_all` alone
//! are timed for information.
//!
//! Baseline: a raw keyset scan of the same columns
//! (`WHERE global_position > $1 ORDER BY global_position LIMIT 5000`),
//! rows fetched but not decoded: the read ceiling.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use domain::DomainEvent;
use domain::change::FieldChange;
use domain::global_role::GlobalRoleEvent;
use domain::project::{ProjectEvent, ProjectField};
use domain::user::UserEvent;
use eventstore::{Actor, EventStore, GlobalPosition, Metadata};
use serde_json::{Value, json};
use sqlx::{Executor, PgPool, Row};
use uuid::Uuid;

use crate::Settings;
use crate::db::{ScratchDb, reset_log};
use crate::report::{Report, Target};

const BATCH: i64 = 5_000;
/// Events per generated project: created, 3 roles, member, 5 updates.
const EVENTS_PER_PROJECT: u64 = 10;
const UPDATES: u64 = 5;
const PROJECTS_PER_USER: u64 = 100;
/// Events per bulk-insert statement (each its own transaction).
const GENERATE_CHUNK: usize = 10_000;

/// What was generated, to check the rebuilt read models against.
pub(crate) struct History {
    pub(crate) events: u64,
    pub(crate) projects: u64,
    users: u64,
    roles: u64,
}

pub async fn run(db: &ScratchDb, settings: &Settings) -> Result<Report> {
    let pool = db.pool(4).await?;
    let store = EventStore::builder(pool.clone()).build();
    reset_log(&pool).await?;
    // As on a server's first start: the live read models, empty.
    projections::ensure_ready(&store)
        .await
        .map_err(|e| anyhow!("ensure_ready: {e}"))?;

    let started = Instant::now();
    let history = generate(&pool, settings.events).await?;
    let generated_in = started.elapsed();
    let events = history.events;
    let mut report = Report::new(format!(
        "rebuild ({events} domain events: {} projects, {} users, {} global roles; \
         projections::rebuild)",
        history.projects, history.users, history.roles
    ));
    report.note(format!(
        "generated {events} events in {:.1} s (bulk insert, not measured)",
        generated_in.as_secs_f64()
    ));
    // One untimed pass so every measured pass reads a warm cache.
    keyset_scan(&pool).await?;

    let no_progress = |_: u64, _: u64| {};
    for run in 1..=settings.runs {
        println!("rebuild: run {run}/{}", settings.runs);
        let t = Instant::now();
        let rebuilt = projections::rebuild(&store, &no_progress)
            .await
            .map_err(|e| anyhow!("projections::rebuild: {e}"))?;
        let ours = rebuilt.events as f64 / t.elapsed().as_secs_f64();
        anyhow::ensure!(
            rebuilt.events == events,
            "rebuild replayed {} of {events} events",
            rebuilt.events
        );
        check_read_models(&pool, &history).await?;

        let t = Instant::now();
        let diffs = projections::verify(&store, &no_progress)
            .await
            .map_err(|e| anyhow!("projections::verify: {e}"))?;
        let verify_rate = events as f64 / t.elapsed().as_secs_f64();
        anyhow::ensure!(
            diffs.is_empty(),
            "verify found differences after a rebuild: {:?}",
            diffs.iter().map(|d| &d.table).collect::<Vec<_>>()
        );

        let t = Instant::now();
        let read = read_only(&store, events).await?;
        let read_rate = read as f64 / t.elapsed().as_secs_f64();

        let t = Instant::now();
        let scanned = keyset_scan(&pool).await?;
        let base = scanned as f64 / t.elapsed().as_secs_f64();
        anyhow::ensure!(scanned == events, "keyset scan saw {scanned} of {events}");

        report.add(
            "projections::rebuild",
            "events/s",
            ours,
            base,
            Some(Target::AtLeast(25_000.0)),
        );
        report.add(
            "projections::verify (info)",
            "events/s",
            verify_rate,
            base,
            None,
        );
        report.add("read_all only (info)", "events/s", read_rate, base, None);
    }
    report.note(
        "ours: projections::rebuild - read_all (xid8 horizon, decode) + ReadModelProjector \
         replay in 5k batches into a fresh schema, catch-up under lock, schema swap; read \
         models checked against the generated history after every run",
    );
    report.note("verify: a second replay into a scratch schema + EXCEPT ALL per table (0 diffs)");
    report.note("baseline: raw keyset scan of the same columns, rows not decoded");
    pool.close().await;
    Ok(report)
}

async fn read_only(store: &EventStore, expected: u64) -> Result<u64> {
    let mut after = GlobalPosition::default();
    let mut read = 0u64;
    let give_up = Instant::now() + Duration::from_secs(60);
    while read < expected {
        let events = store.read_all(after, BATCH).await?;
        let Some(last) = events.last() else {
            // The horizon is cluster-wide: a transaction open anywhere on
            // the server can hide the tail of the log for a while.
            anyhow::ensure!(
                Instant::now() < give_up,
                "read_all stalled at {read} of {expected} events (long transaction on the server?)"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        after = GlobalPosition::of(last);
        read += events.len() as u64;
    }
    Ok(read)
}

async fn keyset_scan(pool: &PgPool) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    let mut last = 0i64;
    let mut scanned = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT global_position, tx_id::text::bigint AS tx_id, stream_type, stream_id,
                    version, event_id, event_type, schema_version, project_id, payload,
                    metadata, recorded_at
             FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2",
        )
        .bind(last)
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let Some(row) = rows.last() else {
            return Ok(scanned);
        };
        last = row.get("global_position");
        scanned += rows.len() as u64;
    }
}

/// A rebuild that silently dropped, doubled or misapplied events would
/// look fast: compare the live read models with the generated history.
async fn check_read_models(pool: &PgPool, h: &History) -> Result<()> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM rm.global_roles) AS roles,
                (SELECT count(*) FROM rm.users) AS users,
                (SELECT count(*) FROM rm.projects) AS projects,
                (SELECT count(*) FROM rm.projects
                  WHERE name = 'Project ' || (settings->>'n') || ' rev ' || $1
                    AND description = 'Description rev ' || $2
                    AND is_public = ($3 % 2 = 0)) AS final_state,
                (SELECT count(*) FROM rm.project_roles) AS project_roles,
                (SELECT count(*) FROM rm.project_members) AS members",
    )
    .bind(last_revision(ProjectField::Name).to_string())
    .bind(last_revision(ProjectField::Description).to_string())
    .bind(last_revision(ProjectField::IsPublic) as i64)
    .fetch_one(pool)
    .await?;
    let got: [i64; 6] = [
        row.get("roles"),
        row.get("users"),
        row.get("projects"),
        row.get("final_state"),
        row.get("project_roles"),
        row.get("members"),
    ];
    let p = h.projects as i64;
    let want = [h.roles as i64, h.users as i64, p, p, 3 * p, p];
    anyhow::ensure!(
        got == want,
        "read models hold [global_roles, users, projects, projects in their final state, \
         project_roles, members] = {got:?}, expected {want:?}"
    );
    Ok(())
}

/// Update round `k` (1-based) changes the fields `round_fields(k)`.
fn round_fields(k: u64) -> &'static [ProjectField] {
    match k % 3 {
        0 => &[ProjectField::Name],
        1 => &[ProjectField::Description],
        _ => &[ProjectField::Name, ProjectField::IsPublic],
    }
}

/// The last update round that changed `field` (0: never changed).
fn last_revision(field: ProjectField) -> u64 {
    (1..=UPDATES)
        .rev()
        .find(|k| round_fields(*k).contains(&field))
        .unwrap_or(0)
}

fn field_value(field: ProjectField, n: u64, rev: u64) -> Value {
    match field {
        ProjectField::Name => json!(format!("Project {n} rev {rev}")),
        ProjectField::Description => json!(format!("Description rev {rev}")),
        ProjectField::IsPublic => json!(rev.is_multiple_of(2)),
        _ => Value::Null,
    }
}

/// Columns of the events being generated, for one `UNNEST` insert.
#[derive(Default)]
struct Rows {
    stream_types: Vec<&'static str>,
    stream_ids: Vec<Uuid>,
    project_ids: Vec<Option<Uuid>>,
    versions: Vec<i64>,
    event_types: Vec<String>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
}

impl Rows {
    fn push<E: DomainEvent>(
        &mut self,
        stream_id: Uuid,
        project_id: Option<Uuid>,
        version: i64,
        event: &E,
        metadata: &Value,
    ) {
        self.stream_types.push(E::STREAM_TYPE);
        self.stream_ids.push(stream_id);
        self.project_ids.push(project_id);
        self.versions.push(version);
        self.event_types.push(event.event_type());
        self.payloads.push(event.to_payload());
        self.metadata.push(metadata.clone());
    }

    async fn flush_if_full(&mut self, pool: &PgPool) -> Result<()> {
        if self.versions.len() >= GENERATE_CHUNK {
            self.flush(pool).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, pool: &PgPool) -> Result<()> {
        if self.versions.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(self);
        let ids: Vec<Uuid> = (0..rows.versions.len()).map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO events (stream_type, stream_id, project_id, version, event_id,
                                 event_type, schema_version, payload, metadata)
             SELECT u.stream_type, u.stream_id, u.project_id, u.version, u.event_id,
                    u.event_type, 1, u.payload, u.metadata
             FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::int8[], $5::uuid[],
                         $6::text[], $7::jsonb[], $8::jsonb[]) WITH ORDINALITY
                  AS u(stream_type, stream_id, project_id, version, event_id, event_type,
                       payload, metadata, ord)
             ORDER BY u.ord",
        )
        .bind(&rows.stream_types)
        .bind(&rows.stream_ids)
        .bind(&rows.project_ids)
        .bind(&rows.versions)
        .bind(&ids)
        .bind(&rows.event_types)
        .bind(&rows.payloads)
        .bind(&rows.metadata)
        .execute(pool)
        .await?;
        Ok(())
    }
}

fn metadata(kind: &str, user_id: Option<Uuid>) -> Value {
    let metadata = Metadata {
        actor: Actor {
            kind: kind.into(),
            user_id,
            ..Actor::default()
        },
        source: "rest".into(),
        request_id: Some(Uuid::now_v7().to_string()),
        ..Metadata::system("bench")
    };
    serde_json::to_value(&metadata).unwrap_or_default()
}

/// Writes about `events` real domain events (see the module docs) and the
/// matching `streams` rows.
pub(crate) async fn generate(pool: &PgPool, events: u64) -> Result<History> {
    let projects = (events / EVENTS_PER_PROJECT).max(1);
    let users = projects.div_ceil(PROJECTS_PER_USER);
    let mut rows = Rows::default();

    let system = metadata("system", None);
    let mut user_role = (Uuid::nil(), String::new());
    let seeded = domain::global_role::seeded();
    let roles = seeded.len() as u64;
    for (name, permissions) in seeded {
        let id = Uuid::now_v7();
        if name == domain::global_role::USER {
            user_role = (id, name.to_owned());
        }
        let event = GlobalRoleEvent::Created {
            name: name.to_owned(),
            permissions,
        };
        rows.push(id, None, 1, &event, &system);
    }

    let user_ids: Vec<Uuid> = (0..users).map(|_| Uuid::now_v7()).collect();
    for (i, &id) in user_ids.iter().enumerate() {
        let event = UserEvent::Created {
            username: format!("user{i}"),
            full_name: format!("Bench User {i}"),
            email: Some(format!("user{i}@example.com")),
            role_id: user_role.0,
            role_name: user_role.1.clone(),
            must_change_password: false,
        };
        rows.push(id, None, 1, &event, &system);
        rows.flush_if_full(pool).await?;
    }

    // Creation: one append of 5 events per project.
    let project_ids: Vec<Uuid> = (0..projects).map(|_| Uuid::now_v7()).collect();
    let creators: Vec<Uuid> = (0..projects)
        .map(|n| user_ids[(n / PROJECTS_PER_USER) as usize])
        .collect();
    for (n, (&id, &creator)) in project_ids.iter().zip(&creators).enumerate() {
        let meta = metadata("user", Some(creator));
        let project = Some(id);
        let created = ProjectEvent::Created {
            name: field_value(ProjectField::Name, n as u64, 0)
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            description: "Description rev 0".into(),
            task_id_prefix: format!("P{n}"),
            is_public: true,
            settings: json!({ "n": n.to_string() }),
            created_by: creator,
        };
        rows.push(id, project, 1, &created, &meta);
        let mut admin_role = Uuid::nil();
        for (version, (role_name, permissions)) in (2..).zip(domain::project::seeded_roles()) {
            let role_id = Uuid::now_v7();
            if version == 2 {
                admin_role = role_id;
            }
            let event = ProjectEvent::RoleCreated {
                role_id,
                role_name: role_name.into(),
                permissions: permissions.into_iter().map(String::from).collect(),
            };
            rows.push(id, project, version, &event, &meta);
        }
        let member = ProjectEvent::MemberAdded {
            member_id: Uuid::now_v7(),
            user_id: creator,
            project_role_id: admin_role,
            role_name: "Admin".into(),
            member_type: "human".into(),
        };
        rows.push(id, project, 5, &member, &meta);
        rows.flush_if_full(pool).await?;
    }

    // Updates: rounds over all projects.
    for k in 1..=UPDATES {
        for (n, (&id, &creator)) in project_ids.iter().zip(&creators).enumerate() {
            let meta = metadata("user", Some(creator));
            let changes = round_fields(k)
                .iter()
                .map(|&field| FieldChange {
                    field,
                    old: field_value(field, n as u64, last_before(field, k)),
                    new: field_value(field, n as u64, k),
                })
                .collect();
            let event = ProjectEvent::Updated { changes };
            rows.push(id, Some(id), 5 + k as i64, &event, &meta);
            rows.flush_if_full(pool).await?;
        }
    }
    rows.flush(pool).await?;

    pool.execute(
        "INSERT INTO streams (stream_id, stream_type, version)
         SELECT stream_id, min(stream_type), max(version) FROM events GROUP BY stream_id",
    )
    .await?;
    // Not in one multi-statement string: VACUUM refuses the implicit
    // transaction block those run in.
    pool.execute("VACUUM ANALYZE events").await?;
    pool.execute("ANALYZE streams").await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(History {
        events: total as u64,
        projects,
        users,
        roles,
    })
}

/// The round before `k` that last changed `field` (0: the created value).
fn last_before(field: ProjectField, k: u64) -> u64 {
    (1..k)
        .rev()
        .find(|r| round_fields(*r).contains(&field))
        .unwrap_or(0)
}
