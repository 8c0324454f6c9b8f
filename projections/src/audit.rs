//! Who did what: the log read as an audit trail (`paca audit`,
//! `GET /admin/audit`, `GET /projects/:id/audit`, and the events one request
//! caused).
//!
//! Items come straight from the log, newest first, with the actor's and the
//! object's current names looked up in the read models (a deleted object
//! keeps its event but loses its label). Pages are keyset pages over the
//! log's order `(tx_id, global_position)`, below the gap-safe horizon: an
//! event that commits late cannot appear behind a cursor already handed
//! out. The log holds no secrets, so neither does this.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// What to show. Every field narrows; none set shows everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Matches the actor's user, member, agent, API key or plugin id.
    pub actor_id: Option<Uuid>,
    /// user, agent, plugin, system
    pub actor_kind: Option<String>,
    pub project_id: Option<Uuid>,
    /// An event type (`task.updated`) or a prefix ending at a dot (`task`,
    /// `task.`, `task.*` all mean every `task.…` type).
    pub event_type: Option<String>,
    pub stream_id: Option<Uuid>,
    pub source: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A request (or correlation) id.
    pub request_id: Option<String>,
}

/// RFC 3339 (`2026-12-03T10:00:00Z`) or a time ago: `45s`, `30m`, `2h`,
/// `7d`, `1w`.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    let unit = text.chars().last()?;
    let amount: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if amount < 0 {
        return None;
    }
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    now.checked_sub_signed(chrono::Duration::try_seconds(amount.checked_mul(seconds)?)?)
}

/// Where the next page starts: the last item's place in the log's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    tx_id: i64,
    position: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.tx_id, self.position)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (tx, pos) = text.split_once('.')?;
        let cursor = Self {
            tx_id: tx.parse().ok()?,
            position: pos.parse().ok()?,
        };
        (cursor.tx_id > 0 && cursor.position > 0).then_some(cursor)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct AuditActor {
    /// user, agent, plugin, system
    pub kind: String,
    /// The user, agent or plugin id (for an agent, its agent id).
    pub id: Option<Uuid>,
    /// username, `@handle`, plugin name, `cli:<os user>` or `system`.
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct AuditObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    /// `PROJ-42`, a name or title; None when the object is gone.
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct AuditItem {
    pub position: i64,
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i64,
    pub project_id: Option<Uuid>,
    pub actor: AuditActor,
    pub source: String,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<Uuid>,
    pub summary: String,
    pub object: AuditObject,
    pub payload: Value,
    #[serde(skip)]
    cursor: Cursor,
}

pub struct AuditPage {
    pub items: Vec<AuditItem>,
    pub next_cursor: Option<String>,
}

const COLUMNS: &str = "e.global_position, e.tx_id::text::bigint AS tx_id, e.stream_type, \
     e.stream_id, e.version, e.event_id, e.event_type, e.project_id, e.payload, e.metadata, \
     e.recorded_at";

/// A row of [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct EventRow {
    global_position: i64,
    tx_id: i64,
    stream_type: String,
    stream_id: Uuid,
    version: i64,
    event_id: Uuid,
    event_type: String,
    project_id: Option<Uuid>,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
}

/// `task`, `task.` and `task.*` mean every `task.…` type; anything else is
/// one exact type.
fn type_pattern(event_type: &str) -> (String, Option<String>) {
    let base = event_type
        .strip_suffix(".*")
        .or_else(|| event_type.strip_suffix('.'))
        .unwrap_or(event_type);
    let escaped = base
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    (base.to_owned(), Some(format!("{escaped}.%")))
}

/// One page, newest first, of the events matching `filter` that come
/// before `before` in the log's order.
pub async fn page(
    pool: &PgPool,
    filter: &AuditFilter,
    before: Option<Cursor>,
    limit: i64,
) -> Result<AuditPage, sqlx::Error> {
    let (exact, prefix) = match filter.event_type.as_deref() {
        Some(t) => {
            let (exact, prefix) = type_pattern(t);
            (Some(exact), prefix)
        }
        None => (None, None),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events e
         WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
           AND ($1::bigint IS NULL OR (e.tx_id, e.global_position) < ($1::text::xid8, $2))
           AND ($3::uuid IS NULL OR e.project_id = $3)
           AND ($4::text IS NULL OR e.event_type = $4 OR e.event_type LIKE $5)
           AND ($6::uuid IS NULL OR e.stream_id = $6)
           AND ($7::text IS NULL OR e.metadata->>'source' = $7)
           AND ($8::timestamptz IS NULL OR e.recorded_at >= $8)
           AND ($9::timestamptz IS NULL OR e.recorded_at < $9)
           AND ($10::text IS NULL OR e.metadata->>'correlation_id' = $10
                OR e.metadata->>'request_id' = $10)
           AND ($11::text IS NULL OR e.metadata->'actor'->>'kind' = $11)
           AND ($12::text IS NULL OR $12 IN (e.metadata->'actor'->>'user_id',
                e.metadata->'actor'->>'member_id', e.metadata->'actor'->>'agent_id',
                e.metadata->'actor'->>'api_key_id', e.metadata->'actor'->>'plugin_id'))
         ORDER BY e.tx_id DESC, e.global_position DESC
         LIMIT $13"
    );
    let mut rows = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql))
        .bind(before.map(|c| c.tx_id))
        .bind(before.map_or(0, |c| c.position))
        .bind(filter.project_id)
        .bind(exact)
        .bind(prefix)
        .bind(filter.stream_id)
        .bind(filter.source.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.request_id.as_deref())
        .bind(filter.actor_kind.as_deref())
        .bind(filter.actor_id.map(|id| id.to_string()))
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items = items(pool, rows).await?;
    let next_cursor = if more {
        items.last().map(|i| i.cursor.encode())
    } else {
        None
    };
    Ok(AuditPage { items, next_cursor })
}

/// Every event one request caused, oldest first: those recorded under its
/// request (correlation) id, and transitively those whose `causation_id`
/// names one of them (a consumer's notification, an agent conversation, …).
pub async fn request(
    pool: &PgPool,
    request_id: &str,
    limit: i64,
) -> Result<Vec<AuditItem>, sqlx::Error> {
    let sql = format!(
        "WITH RECURSIVE caused(event_id) AS (
             SELECT e.event_id FROM events e WHERE e.metadata->>'correlation_id' = $1
             UNION
             SELECT e.event_id FROM events e
             JOIN caused c ON e.metadata->>'causation_id' = c.event_id::text
             WHERE e.metadata ? 'causation_id'
         )
         SELECT {COLUMNS} FROM events e
         WHERE e.event_id IN (SELECT event_id FROM caused)
            OR e.metadata->>'request_id' = $1
         ORDER BY e.tx_id, e.global_position
         LIMIT $2"
    );
    let rows = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql))
        .bind(request_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    items(pool, rows).await
}

fn uuid_at(metadata: &Value, pointer: &str) -> Option<Uuid> {
    metadata
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn str_at(metadata: &Value, pointer: &str) -> Option<String> {
    metadata
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Names looked up once per page.
#[derive(Default)]
struct Names {
    users: HashMap<Uuid, String>,
    agents: HashMap<Uuid, String>,
    plugins: HashMap<Uuid, String>,
    objects: HashMap<Uuid, String>,
}

async fn names(pool: &PgPool, rows: &[EventRow]) -> Result<Names, sqlx::Error> {
    let mut users = HashSet::new();
    let mut agents = HashSet::new();
    let mut plugins = HashSet::new();
    let mut objects = HashSet::new();
    for row in rows {
        users.extend(uuid_at(&row.metadata, "/actor/user_id"));
        agents.extend(uuid_at(&row.metadata, "/actor/agent_id"));
        plugins.extend(uuid_at(&row.metadata, "/actor/plugin_id"));
        objects.insert(row.stream_id);
    }
    let pairs = |rows: Vec<(Uuid, String)>| -> HashMap<Uuid, String> { rows.into_iter().collect() };
    let users: Vec<Uuid> = users.into_iter().collect();
    let agents: Vec<Uuid> = agents.into_iter().collect();
    let plugins: Vec<Uuid> = plugins.into_iter().collect();
    let objects: Vec<Uuid> = objects.into_iter().collect();
    Ok(Names {
        users: pairs(
            sqlx::query_as("SELECT id, username FROM users WHERE id = ANY($1)")
                .bind(&users)
                .fetch_all(pool)
                .await?,
        ),
        agents: pairs(
            sqlx::query_as("SELECT id, '@' || handle FROM agents WHERE id = ANY($1)")
                .bind(&agents)
                .fetch_all(pool)
                .await?,
        ),
        plugins: pairs(
            sqlx::query_as("SELECT id, name FROM plugins WHERE id = ANY($1)")
                .bind(&plugins)
                .fetch_all(pool)
                .await?,
        ),
        objects: pairs(
            sqlx::query_as(
                "SELECT t.id, p.task_id_prefix || '-' || t.task_number FROM tasks t
                 JOIN projects p ON p.id = t.project_id WHERE t.id = ANY($1)
                 UNION ALL SELECT id, name FROM projects WHERE id = ANY($1)
                 UNION ALL SELECT id, name FROM sprints WHERE id = ANY($1)
                 UNION ALL SELECT id, title FROM docs WHERE id = ANY($1)
                 UNION ALL SELECT id, username FROM users WHERE id = ANY($1)
                 UNION ALL SELECT id, '@' || handle FROM agents WHERE id = ANY($1)
                 UNION ALL SELECT id, name FROM plugins WHERE id = ANY($1)",
            )
            .bind(&objects)
            .fetch_all(pool)
            .await?,
        ),
    })
}

async fn items(pool: &PgPool, rows: Vec<EventRow>) -> Result<Vec<AuditItem>, sqlx::Error> {
    let names = names(pool, &rows).await?;
    Ok(rows.into_iter().map(|row| item(row, &names)).collect())
}

fn item(row: EventRow, names: &Names) -> AuditItem {
    let EventRow {
        global_position,
        tx_id,
        stream_type,
        stream_id,
        version,
        event_id,
        event_type,
        project_id,
        payload,
        metadata,
        recorded_at,
    } = row;
    let source = str_at(&metadata, "/source").unwrap_or_default();
    let actor = actor(&metadata, &source, names);
    let label = names
        .objects
        .get(&stream_id)
        .cloned()
        .or_else(|| name_in(&payload));
    AuditItem {
        position: global_position,
        event_id,
        recorded_at,
        summary: summary(&event_type, &payload),
        event_type,
        object: AuditObject {
            kind: stream_type.clone(),
            id: stream_id,
            label,
        },
        stream_type,
        stream_id,
        version,
        project_id,
        actor,
        source,
        request_id: str_at(&metadata, "/request_id"),
        correlation_id: str_at(&metadata, "/correlation_id"),
        causation_id: uuid_at(&metadata, "/causation_id"),
        payload,
        cursor: Cursor {
            tx_id,
            position: global_position,
        },
    }
}

fn actor(metadata: &Value, source: &str, names: &Names) -> AuditActor {
    let kind = str_at(metadata, "/actor/kind").unwrap_or_else(|| "system".into());
    let user_id = uuid_at(metadata, "/actor/user_id");
    let member_id = uuid_at(metadata, "/actor/member_id");
    let agent_id = uuid_at(metadata, "/actor/agent_id");
    let api_key_id = uuid_at(metadata, "/actor/api_key_id");
    let plugin_id = uuid_at(metadata, "/actor/plugin_id");
    let (id, name) = match kind.as_str() {
        "agent" => (
            agent_id,
            agent_id.and_then(|id| names.agents.get(&id).cloned()),
        ),
        "plugin" => (
            plugin_id,
            plugin_id
                .and_then(|id| names.plugins.get(&id).cloned())
                .or_else(|| str_at(metadata, "/extra/plugin")),
        ),
        "system" if source == "cli" => (
            None,
            Some(match str_at(metadata, "/extra/os_user") {
                Some(user) => format!("cli:{user}"),
                None => "cli".into(),
            }),
        ),
        "system" => (None, Some("system".into())),
        _ => (
            user_id,
            user_id.and_then(|id| names.users.get(&id).cloned()),
        ),
    };
    AuditActor {
        kind,
        id,
        name,
        user_id,
        member_id,
        agent_id,
        api_key_id,
        plugin_id,
    }
}

fn name_in(payload: &Value) -> Option<String> {
    ["title", "name", "username", "handle"]
        .iter()
        .find_map(|key| payload.get(key).and_then(Value::as_str))
        .map(str::to_owned)
}

fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && !text.contains('\n') {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(max).collect();
    out.push('…');
    out
}

/// The text of a comment: a string, or a BlockNote document's text nodes.
fn plain_text(content: &Value) -> String {
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(text) => out.push_str(text),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => {
                if let Some(Value::String(text)) = map.get("text") {
                    out.push_str(text);
                }
                for key in ["content", "children"] {
                    if let Some(child) = map.get(key) {
                        if !out.is_empty() && !out.ends_with(' ') {
                            out.push(' ');
                        }
                        walk(child, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(content, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line saying what happened: the event's verb, the object's name when
/// the event carries it, and which fields an update touched.
pub fn summary(event_type: &str, payload: &Value) -> String {
    let (kind, verb) = event_type.split_once('.').unwrap_or(("", event_type));
    let verb = verb.replace('_', " ");
    let mut out = match name_in(payload) {
        Some(name) if verb == "created" || verb == "deleted" => {
            format!("{verb} {kind} \"{}\"", clip(&name, 60))
        }
        _ => verb,
    };
    if let Some(changes) = payload.get("changes").and_then(Value::as_array) {
        let fields: Vec<&str> = changes
            .iter()
            .filter_map(|c| c.get("field").and_then(Value::as_str))
            .collect();
        if !fields.is_empty() {
            out.push_str(": ");
            out.push_str(&fields.join(", "));
        }
    } else if let Some(content) = payload.get("content").map(plain_text)
        && !content.is_empty()
    {
        out.push_str(": ");
        out.push_str(&clip(&content, 60));
    } else if event_type.ends_with("updated")
        && let Some(object) = payload.as_object()
    {
        let fields: Vec<&str> = object
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "id" && !k.ends_with("_id"))
            .collect();
        if !fields.is_empty() {
            out.push_str(": ");
            out.push_str(&fields.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries() {
        assert_eq!(
            summary("task.created", &json!({"title": "Fix login"})),
            "created task \"Fix login\""
        );
        assert_eq!(
            summary(
                "task.updated",
                &json!({"changes": [{"field": "title"}, {"field": "status"}]})
            ),
            "updated: title, status"
        );
        assert_eq!(
            summary("task.comment_added", &json!({"content": "hi @bob\nmore"})),
            "comment added: hi @bob more"
        );
        let blocks = json!([{"type": "paragraph", "content": [{"type": "text", "text": "hey @bob"}],
                             "children": [{"content": [{"text": "look"}]}]}]);
        assert_eq!(
            summary("task.comment_added", &json!({"content": blocks})),
            "comment added: hey @bob look"
        );
        assert_eq!(
            summary("project.updated", &json!({"name": "N", "project_id": "x"})),
            "updated: name"
        );
    }

    #[test]
    fn type_patterns() {
        assert_eq!(
            type_pattern("task.*"),
            ("task".into(), Some("task.%".into()))
        );
        assert_eq!(
            type_pattern("task."),
            ("task".into(), Some("task.%".into()))
        );
        assert_eq!(
            type_pattern("task_config"),
            ("task_config".into(), Some("task\\_config.%".into()))
        );
    }

    #[test]
    fn times() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("2h", now).unwrap().to_rfc3339(),
            "2026-12-03T10:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-12-01T00:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-30T23:00:00+00:00"
        );
        for bad in ["", "h", "2x", "-2h", "yesterday", "99999999999999999w"] {
            assert_eq!(parse_time(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn cursors() {
        let c = Cursor {
            tx_id: 9,
            position: 12,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "x", "1", "1.", ".1", "a.b", "0.0", "-1.5"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
