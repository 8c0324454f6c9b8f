//! Replay equivalence end to end: random sequences of real commands (over
//! the REST API, so through the real command handlers, the fused and
//! transactional appends and the inline read-model projector) write the
//! read models live; then `projections::verify` replays the whole log in
//! batches (`render_batch`: merged multi-row statements) into a scratch
//! schema and compares it with the live tables. No table may differ.
//!
//! The values are hostile on purpose: quotes, backslashes, `$n`, SQL
//! comment markers, control characters and non-BMP text in titles, tags,
//! comments, JSON descriptions, custom fields, sprint goals, view configs
//! and group keys; extreme floats in view positions; sub-second timestamps.
//!
//! Seeds: `REPLAY_E2E_SEED=n` runs that seed only; `REPLAY_E2E_SEEDS=n`
//! runs seeds 1..=n (default 6). A failure names its seed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::common::{self, app};

const OPERATIONS: usize = 90;
const DEFAULT_SEEDS: u64 = 6;

/// SplitMix64: a seeded generator without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }
}

const HOSTILE: &[&str] = &[
    "'",
    "''",
    "\\",
    "\\'",
    "'; DROP TABLE rm.tasks; --",
    "$1",
    "$10",
    "$$",
    "$tag$",
    "--",
    "/*",
    "*/",
    ";",
    "\n",
    "\t",
    "\u{1}",
    "\u{7f}",
    "NULL",
    "\"",
    "{}",
    "v.c1",
    " WHERE id = $1",
    "::text",
    "E'\\x41'",
    "é",
    "🦀",
    "\u{202e}",
    "𝕏",
    "  ",
];

fn hostile(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..1 + rng.below(4) {
        out.push_str(HOSTILE[rng.below(HOSTILE.len())]);
    }
    out
}

/// Non-empty, short, hostile.
fn title(rng: &mut Rng) -> String {
    format!("t{}{}", rng.below(1000), hostile(rng))
}

fn json_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth >= 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64 / (1 + rng.below(1_000_000) as i64)),
        3 => json!(f64::from(rng.below(1_000_000) as u32) / 7.0),
        4 => json!(hostile(rng)),
        5 => Value::Array(
            (0..rng.below(3))
                .map(|_| json_value(rng, depth + 1))
                .collect(),
        ),
        _ => json_object(rng, depth + 1),
    }
}

fn json_object(rng: &mut Rng, depth: u32) -> Value {
    Value::Object(
        (0..rng.below(3))
            .map(|_| (hostile(rng), json_value(rng, depth + 1)))
            .collect(),
    )
}

/// An RFC 3339 timestamp with a microsecond fraction, or a plain date.
fn timestamp(rng: &mut Rng) -> String {
    let day = 1 + rng.below(28);
    let month = 1 + rng.below(12);
    if rng.chance(30) {
        format!("2026-{month:02}-{day:02}")
    } else {
        format!(
            "2026-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000)
        )
    }
}

fn date(rng: &mut Rng) -> String {
    format!(
        "20{:02}-{:02}-{:02}",
        20 + rng.below(20),
        1 + rng.below(12),
        1 + rng.below(28)
    )
}

fn float(rng: &mut Rng) -> f64 {
    const SPECIAL: &[f64] = &[
        0.0,
        -0.0,
        0.1,
        1.0 / 3.0,
        1e300,
        -1e-300,
        5e-324,
        1e15 + 0.5,
    ];
    if rng.chance(40) {
        SPECIAL[rng.below(SPECIAL.len())]
    } else {
        (rng.next() % 2_000_000) as f64 / 64.0 - 10_000.0
    }
}

fn data_id(reply: &common::Reply) -> Option<String> {
    reply.data()["id"].as_str().map(str::to_owned)
}

fn ids(reply: &common::Reply) -> Vec<String> {
    let list = reply.data();
    list.get("items")
        .unwrap_or(list)
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What the random walk has created so far in its project.
#[derive(Default)]
struct World {
    project: String,
    statuses: Vec<String>,
    types: Vec<String>,
    roles: Vec<String>,
    /// Users and their membership id, if members.
    users: Vec<(String, Option<String>)>,
    /// The creator's membership.
    admin_member: String,
    tasks: Vec<String>,
    comments: Vec<(String, String)>,
    links: Vec<(String, String)>,
    sprints: Vec<String>,
    views: Vec<String>,
    /// Successful and refused calls by operation.
    outcomes: BTreeMap<&'static str, (u32, u32)>,
    /// Refusals by operation and error code.
    refusals: BTreeMap<String, u32>,
}

impl World {
    /// Membership ids (what `assignee_ids` hold).
    fn members(&self) -> Vec<String> {
        let mut out: Vec<String> = self.users.iter().filter_map(|(_, m)| m.clone()).collect();
        out.push(self.admin_member.clone());
        out
    }
}

/// A random task body (create) or partial body (patch).
fn task_fields(rng: &mut Rng, w: &World, create: bool) -> Value {
    // Each field with some chance (a create always has a title).
    let mut body = serde_json::Map::new();
    if create || rng.chance(40) {
        body.insert("title".into(), json!(title(rng)));
    }
    if rng.chance(40) {
        let v = if rng.chance(80) {
            json!([{
                "type": "paragraph",
                "props": json_object(rng, 0),
                "content": [{"type": "text", "text": hostile(rng), "styles": {}}],
            }])
        } else {
            Value::Null
        };
        body.insert("description".into(), v);
    }
    if rng.chance(30) {
        body.insert("importance".into(), json!(rng.below(6)));
    }
    if rng.chance(30) {
        let v = if rng.chance(80) {
            json!(rng.below(100))
        } else {
            Value::Null
        };
        body.insert("story_points".into(), v);
    }
    if rng.chance(30) {
        let tags: Vec<String> = (0..rng.below(3)).map(|_| hostile(rng)).collect();
        body.insert("tags".into(), json!(tags));
    }
    if rng.chance(30) {
        let fields = json!({"pts": rng.below(1000), "note": hostile(rng)});
        body.insert("custom_fields".into(), fields);
    }
    if rng.chance(30)
        && let Some(s) = rng.pick(&w.statuses)
    {
        body.insert("status_id".into(), json!(s));
    }
    if rng.chance(20)
        && let Some(ty) = rng.pick(&w.types)
    {
        body.insert("task_type_id".into(), json!(ty));
    }
    if rng.chance(30) {
        let v = rng.pick(&w.sprints).map_or(Value::Null, Value::from);
        body.insert("sprint_id".into(), v);
    }
    if rng.chance(30) {
        let members = w.members();
        let n = rng.below(3);
        let mut assignees: Vec<String> = (0..n).filter_map(|_| rng.pick(&members)).collect();
        assignees.sort();
        assignees.dedup();
        body.insert("assignee_ids".into(), json!(assignees));
    }
    for key in ["start_date", "due_date"] {
        if rng.chance(20) {
            let v = if rng.chance(80) {
                json!(date(rng))
            } else {
                Value::Null
            };
            body.insert(key.into(), v);
        }
    }
    if body.is_empty() {
        body.insert("title".into(), json!(title(rng)));
    }
    Value::Object(body)
}

/// One random operation: (name, method, path, body), or None when the
/// world has nothing to apply it to yet.
fn operation(
    rng: &mut Rng,
    w: &World,
) -> Option<(&'static str, &'static str, String, Option<Value>)> {
    let p = format!("/api/v1/projects/{}", w.project);
    Some(match rng.below(22) {
        0..=3 => (
            "task.create",
            "POST",
            format!("{p}/tasks"),
            Some(task_fields(rng, w, true)),
        ),
        4..=7 => {
            let task = rng.pick(&w.tasks)?;
            (
                "task.patch",
                "PATCH",
                format!("{p}/tasks/{task}"),
                Some(task_fields(rng, w, false)),
            )
        }
        8 => {
            let task = rng.pick(&w.tasks)?;
            ("task.delete", "DELETE", format!("{p}/tasks/{task}"), None)
        }
        9 | 10 => {
            let task = rng.pick(&w.tasks)?;
            let content = json!({"text": hostile(rng), "meta": json_value(rng, 0)});
            (
                "comment.add",
                "POST",
                format!("{p}/tasks/{task}/activities/comments"),
                Some(json!({ "content": content })),
            )
        }
        11 => {
            let (task, comment) = rng.pick(&w.comments)?;
            (
                "comment.edit",
                "PATCH",
                format!("{p}/tasks/{task}/activities/comments/{comment}"),
                Some(json!({"content": {"text": hostile(rng)}})),
            )
        }
        12 => {
            let (task, comment) = rng.pick(&w.comments)?;
            (
                "comment.delete",
                "DELETE",
                format!("{p}/tasks/{task}/activities/comments/{comment}"),
                None,
            )
        }
        13 => {
            let from = rng.pick(&w.tasks)?;
            let to = rng.pick(&w.tasks).filter(|to| *to != from)?;
            let kind = ["blocks", "duplicates", "relates_to"][rng.below(3)];
            (
                "link.add",
                "POST",
                format!("{p}/tasks/{from}/links"),
                Some(json!({"target_task_id": to, "link_type": kind})),
            )
        }
        14 => {
            let (task, link) = rng.pick(&w.links)?;
            (
                "link.remove",
                "DELETE",
                format!("{p}/tasks/{task}/links/{link}"),
                None,
            )
        }
        15 => {
            let mut body = json!({"name": format!("S{}{}", rng.below(100), hostile(rng))});
            if rng.chance(60) {
                body["start_date"] = json!(timestamp(rng));
            }
            if rng.chance(60) {
                body["end_date"] = json!(timestamp(rng));
            }
            if rng.chance(60) {
                body["goal"] = json!(hostile(rng));
            }
            ("sprint.create", "POST", format!("{p}/sprints"), Some(body))
        }
        16 => {
            let sprint = rng.pick(&w.sprints)?;
            let mut body = json!({});
            match rng.below(4) {
                0 => body["name"] = json!(format!("S{}", hostile(rng))),
                1 => body["start_date"] = json!(timestamp(rng)),
                2 => {
                    body["end_date"] = if rng.chance(70) {
                        json!(timestamp(rng))
                    } else {
                        Value::Null
                    }
                }
                _ => {
                    body["goal"] = if rng.chance(70) {
                        json!(hostile(rng))
                    } else {
                        Value::Null
                    }
                }
            }
            if rng.chance(20) {
                body["status"] = json!("active");
            }
            (
                "sprint.patch",
                "PATCH",
                format!("{p}/sprints/{sprint}"),
                Some(body),
            )
        }
        17 => {
            let sprint = rng.pick(&w.sprints)?;
            if rng.chance(50) {
                let body = rng
                    .pick(&w.sprints)
                    .filter(|other| *other != sprint)
                    .map_or(json!({}), |other| json!({"move_to_sprint_id": other}));
                (
                    "sprint.complete",
                    "POST",
                    format!("{p}/sprints/{sprint}/complete"),
                    Some(body),
                )
            } else {
                (
                    "sprint.delete",
                    "DELETE",
                    format!("{p}/sprints/{sprint}"),
                    None,
                )
            }
        }
        18 => {
            if rng.chance(50) || w.views.is_empty() {
                let body = json!({
                    "name": format!("V{}", hostile(rng)),
                    "view_type": "board",
                    "config": json_object(rng, 0),
                });
                (
                    "view.create",
                    "POST",
                    format!("{p}/views?context=backlog"),
                    Some(body),
                )
            } else {
                let view = rng.pick(&w.views)?;
                let body = match rng.below(3) {
                    0 => json!({"name": format!("V{}", hostile(rng))}),
                    1 => json!({"position": float(rng)}),
                    _ => json!({"config": json_object(rng, 0)}),
                };
                (
                    "view.patch",
                    "PATCH",
                    format!("{p}/views/{view}"),
                    Some(body),
                )
            }
        }
        19 => {
            let view = rng.pick(&w.views)?;
            if rng.chance(85) {
                let task = rng.pick(&w.tasks)?;
                let mut body = json!({"position": float(rng)});
                if rng.chance(60) {
                    body["group_key"] = json!(hostile(rng));
                }
                (
                    "view.position",
                    "PUT",
                    format!("{p}/views/{view}/task-positions/{task}"),
                    Some(body),
                )
            } else {
                ("view.delete", "DELETE", format!("{p}/views/{view}"), None)
            }
        }
        20 => {
            let (user, member) = rng.pick(&w.users)?;
            match member {
                None => {
                    let role = rng.pick(&w.roles)?;
                    (
                        "member.add",
                        "POST",
                        format!("{p}/members"),
                        Some(json!({"user_id": user, "project_role_id": role})),
                    )
                }
                Some(member) if rng.chance(30) => {
                    let role = rng.pick(&w.roles)?;
                    (
                        "member.role",
                        "PATCH",
                        format!("{p}/members/{member}"),
                        Some(json!({"project_role_id": role})),
                    )
                }
                Some(member) => (
                    "member.remove",
                    "DELETE",
                    format!("{p}/members/{member}"),
                    None,
                ),
            }
        }
        _ => {
            let body = if rng.chance(50) {
                json!({"description": hostile(rng)})
            } else {
                json!({"settings": json_object(rng, 0)})
            };
            ("project.patch", "PATCH", p.clone(), Some(body))
        }
    })
}

/// Records what a successful call created or removed.
fn observe(w: &mut World, name: &str, path: &str, body: Option<&Value>, reply: &common::Reply) {
    let segment = |n: usize| path.split(['/', '?']).nth(n).unwrap_or_default().to_owned();
    // "/api/v1/projects/{p}/tasks/{task}/…" split on '/': the id after
    // `projects` is segment 4, the next ones 6, 8 and 9.
    match name {
        "task.create" => w.tasks.extend(data_id(reply)),
        "task.delete" => {
            let task = segment(6);
            w.tasks.retain(|t| *t != task);
            w.comments.retain(|(t, _)| *t != task);
            w.links.retain(|(t, _)| *t != task);
        }
        "comment.add" => {
            if let Some(id) = data_id(reply) {
                w.comments.push((segment(6), id));
            }
        }
        "comment.delete" => {
            let comment = segment(9);
            w.comments.retain(|(_, c)| *c != comment);
        }
        "link.add" => {
            if let Some(id) = data_id(reply) {
                w.links.push((segment(6), id));
            }
        }
        "link.remove" => {
            let link = segment(8);
            w.links.retain(|(_, l)| *l != link);
        }
        "sprint.create" => w.sprints.extend(data_id(reply)),
        "sprint.complete" | "sprint.delete" => {
            let sprint = segment(6);
            w.sprints.retain(|s| *s != sprint);
        }
        "view.create" => w.views.extend(data_id(reply)),
        "view.delete" => {
            let view = segment(6);
            w.views.retain(|v| *v != view);
        }
        "member.add" => {
            let user = body.and_then(|b| b["user_id"].as_str()).unwrap_or_default();
            let member = data_id(reply);
            for (u, m) in &mut w.users {
                if u == user {
                    *m = member.clone();
                }
            }
        }
        "member.remove" => {
            let member = segment(6);
            for (_, m) in &mut w.users {
                if m.as_deref() == Some(member.as_str()) {
                    *m = None;
                }
            }
        }
        _ => {}
    }
}

async fn walk<S, B>(t: &common::TestApp<S>, admin: &str, users: &[String], seed: u64) -> World
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut rng = Rng(seed);
    let project = t
        .call(
            "POST",
            "/api/v1/projects",
            Some(admin),
            Some(json!({
                "name": format!("Replay {seed}"),
                "description": hostile(&mut rng),
                "settings": json_object(&mut rng, 0),
            })),
        )
        .await;
    assert_eq!(project.status, 201, "{}", project.body);
    let mut w = World {
        project: data_id(&project).unwrap(),
        users: users.iter().map(|u| (u.clone(), None)).collect(),
        ..World::default()
    };
    let p = format!("/api/v1/projects/{}", w.project);
    let me = t.call("GET", "/api/v1/users/me", Some(admin), None).await;
    let me = data_id(&me).unwrap();
    let members = t
        .call("GET", &format!("{p}/members"), Some(admin), None)
        .await;
    w.admin_member = members
        .data()
        .as_array()
        .or_else(|| members.data()["items"].as_array())
        .and_then(|list| list.iter().find(|m| m["user_id"] == me.as_str()))
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("the creator is not a member: {}", members.body))
        .to_owned();
    w.statuses = ids(&t
        .call("GET", &format!("{p}/task-statuses"), Some(admin), None)
        .await);
    w.types = ids(&t
        .call("GET", &format!("{p}/task-types"), Some(admin), None)
        .await);
    w.roles = ids(&t
        .call("GET", &format!("{p}/roles"), Some(admin), None)
        .await);
    assert!(!w.statuses.is_empty() && !w.types.is_empty() && !w.roles.is_empty());
    for (key, kind) in [("pts", "number"), ("note", "text")] {
        let r = t
            .call(
                "POST",
                &format!("{p}/custom-fields"),
                Some(admin),
                Some(json!({"field_key": key, "display_name": format!("F {}", hostile(&mut rng)), "field_type": kind})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let mut done = 0;
    while done < OPERATIONS {
        let Some((name, method, path, body)) = operation(&mut rng, &w) else {
            continue;
        };
        done += 1;
        let reply = t.call(method, &path, Some(admin), body.clone()).await;
        let ok = (200..300).contains(&reply.status);
        assert!(
            reply.status < 500,
            "seed {seed}: {name} {method} {path} {body:?} -> {} {}",
            reply.status,
            reply.body
        );
        let entry = w.outcomes.entry(name).or_default();
        if ok {
            entry.0 += 1;
            observe(&mut w, name, &path, body.as_ref(), &reply);
        } else {
            entry.1 += 1;
            *w.refusals
                .entry(format!("{name} {}", reply.code()))
                .or_default() += 1;
        }
    }
    w
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("REPLAY_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("REPLAY_E2E_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=n).collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn random_command_sequences_replay_to_the_live_read_models(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let started = std::time::Instant::now();
    let t = app(options).await;
    let admin = t.admin().await;
    let mut users = Vec::new();
    for name in ["rita", "sam", "tom"] {
        let r = t
            .call(
                "POST",
                "/api/v1/admin/users",
                Some(&admin),
                Some(json!({"username": name, "password": "initial-pass", "full_name": format!("{name} O'Brien \\ $1")})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        users.push(data_id(&r).unwrap());
    }
    let mut totals: BTreeMap<&'static str, (u32, u32)> = BTreeMap::new();
    let mut refusals: BTreeMap<String, u32> = BTreeMap::new();
    for seed in seeds() {
        let w = walk(&t, &admin, &users, seed).await;
        for (why, n) in &w.refusals {
            *refusals.entry(why.clone()).or_default() += n;
        }
        for (name, (ok, refused)) in &w.outcomes {
            let entry = totals.entry(name).or_default();
            entry.0 += ok;
            entry.1 += refused;
        }
        let diffs = projections::verify(&t.commands.store, &|_: u64, _: u64| {})
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: verify failed: {e}"));
        assert!(
            diffs.is_empty(),
            "seed {seed}: the live read models differ from a batched replay of the log \
             (rerun: REPLAY_E2E_SEED={seed}): {diffs:#?}"
        );
    }
    let stats = t.commands.store.stats();
    eprintln!(
        "{} events, {:.1?}; calls by operation (ok, refused): {totals:?}; \
         refusals: {refusals:?}; fused appends: {}, declined: {}",
        t.event_count().await,
        started.elapsed(),
        stats.fused.load(Ordering::Relaxed),
        stats.fused_declined.load(Ordering::Relaxed),
    );
    // The walk must have exercised the projector, not just been refused.
    let ok: u32 = totals.values().map(|(ok, _)| ok).sum();
    let all: u32 = totals.values().map(|(ok, refused)| ok + refused).sum();
    assert!(ok * 10 >= all * 6, "too many refused calls: {totals:?}");
    for name in [
        "task.create",
        "task.patch",
        "comment.add",
        "sprint.create",
        "view.position",
    ] {
        assert!(
            totals.get(name).is_some_and(|(ok, _)| *ok > 0),
            "no successful {name}: {totals:?}"
        );
    }

    // The check itself can fail: a read model changed behind the
    // projector's back is reported.
    sqlx::query(
        "UPDATE rm.task_activities SET content = content || '{\"tampered\": true}'
         WHERE id = (SELECT id FROM rm.task_activities ORDER BY id LIMIT 1)",
    )
    .execute(&t.pool)
    .await
    .unwrap();
    let diffs = projections::verify(&t.commands.store, &|_: u64, _: u64| {})
        .await
        .unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].table, "task_activities");
    t.pool.close().await;
}
