//! GraphQL at `/api/graphql` (async-graphql): POST queries and mutations,
//! GraphiQL on GET, `graphql-ws` subscriptions on the WebSocket upgrade.
//!
//! Same authentication as REST (cookie, Bearer, API key; on WebSocket also
//! `connectionParams.token`) and the same permission checks (the REST
//! access functions, per project and permission). Mutations call the same
//! command handlers with the same input types as the REST routes, so they
//! append the same events. Read models are typed objects
//! (`crate::graphql_types`, plus `Project` and `Task` here) whose fields are
//! the REST `data` fields in camelCase, deserialized from the very JSON REST
//! sends (one contract for both); `Project.data` and `Task.data` still carry
//! the whole REST object. Subscriptions are fed by this node's realtime hub,
//! i.e. by the same relay as Socket.IO.
//!
//! Limits: depth 10, complexity 1,000 per operation. Activities of many
//! tasks load through a DataLoader (one query per batch, not per task).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::http::GraphiQLSource;
use async_graphql::runtime::{TokioSpawner, TokioTimer};
use async_graphql::{
    ComplexObject, Context, Data, ErrorExtensions, ID, Json, Object, Schema, SimpleObject,
    Subscription,
};
use async_graphql_actix_web::{GraphQLRequest, GraphQLResponse, GraphQLSubscription};
use domain::permissions::{global, project as perms};
use domain::view::ViewContext;
use futures_util::Stream;
use projections::history::{AsOf, HistoryEntry as HistoryEntryView};
use projections::queries_tasks::{self as q, ActivityView};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{MaybeAuth, Principal, Via, project_access};
use crate::error::ApiError;
use crate::graphql_types::{
    Activity, Comment, CustomField, Doc, DocSummary, HistoryEntry, Member, Role, Sprint,
    TaskStatus, TaskType, User, View,
};
use crate::openapi::Routes;
use crate::realtime::Room;
use crate::rest::sprints as rest_sprints;
use crate::rest::tasks as rest_tasks;
use crate::rest::views as rest_views;

pub type PacaSchema = Schema<Query, Mutation, SubscriptionRoot>;

const MAX_DEPTH: usize = 10;
const MAX_COMPLEXITY: usize = 1_000;

pub fn schema(state: web::Data<AppState>) -> PacaSchema {
    Schema::build(Query, Mutation::default(), SubscriptionRoot)
        .data(state)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The caller of one operation (absent: anonymous).
#[derive(Clone)]
struct Caller(Option<Principal>);

fn gql_error(error: ApiError) -> async_graphql::Error {
    let code = error.code;
    async_graphql::Error::new(error.message.clone()).extend_with(|_, e| {
        e.set("code", code.as_str());
        e.set("status", code.http_status());
    })
}

type GqlResult<T> = async_graphql::Result<T>;

trait IntoGql<T> {
    fn gql(self) -> GqlResult<T>;
}

impl<T, E: Into<ApiError>> IntoGql<T> for Result<T, E> {
    fn gql(self) -> GqlResult<T> {
        self.map_err(|e| gql_error(e.into()))
    }
}

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<web::Data<AppState>>().get_ref()
}

fn caller<'a>(ctx: &Context<'a>) -> Option<&'a Principal> {
    ctx.data_opt::<Caller>().and_then(|c| c.0.as_ref())
}

fn principal<'a>(ctx: &Context<'a>) -> GqlResult<&'a Principal> {
    caller(ctx).ok_or_else(|| {
        gql_error(ApiError::new(
            domain::ErrorCode::AUTH_MISSING_TOKEN,
            "authentication required",
        ))
    })
}

fn uuid(id: &ID, name: &str) -> GqlResult<Uuid> {
    id.parse()
        .map_err(|_| gql_error(ApiError::bad_request(format!("{name} is not a UUID"))))
}

/// The caller may `permission` in `project_id` (reads open on public
/// projects, as in REST).
async fn allow(ctx: &Context<'_>, project_id: Uuid, permission: &str) -> GqlResult<()> {
    project_access(state(ctx), caller(ctx), project_id, permission)
        .await
        .map(|_| ())
        .gql()
}

fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    gql_error(ApiError::internal(e))
}

/// The typed object of a read model: deserialized from the JSON value REST
/// sends for it, so that its fields never disagree with the REST `data`.
fn typed<T: DeserializeOwned>(view: impl serde::Serialize) -> GqlResult<T> {
    from_rest(serde_json::to_value(view).map_err(internal)?)
}

fn from_rest<T: DeserializeOwned>(value: Value) -> GqlResult<T> {
    serde_json::from_value(value).map_err(internal)
}

fn typed_list<T: DeserializeOwned, V: serde::Serialize>(views: &[V]) -> GqlResult<Vec<T>> {
    views.iter().map(typed).collect()
}

fn comment(view: ActivityView) -> GqlResult<Comment> {
    Ok(Comment {
        activity: typed(view)?,
    })
}

/// A mutation input: the REST body type, through the same checks (NUL
/// characters, date ranges) as a REST body.
fn parse_input<T: DeserializeOwned>(value: Value) -> GqlResult<T> {
    crate::extract::check_value(&value).gql()?;
    serde_json::from_value(value)
        .map_err(|e| gql_error(ApiError::bad_request(format!("invalid input: {e}"))))
}

fn metadata(principal: &Principal) -> eventstore::Metadata {
    let mut meta = principal.metadata();
    meta.source = "graphql".into();
    meta
}

// ------------------------------------------------------------------ loaders

/// Activities of tasks, batched: `project { tasks { activities } }` costs
/// one query, not one per task.
pub struct ActivitiesLoader {
    pool: sqlx::PgPool,
}

impl Loader<Uuid> for ActivitiesLoader {
    type Value = Vec<ActivityView>;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = q::activities_of_tasks(&self.pool, keys)
            .await
            .map_err(Arc::new)?;
        let mut out: HashMap<Uuid, Vec<ActivityView>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            out.entry(row.task_id).or_default().push(row);
        }
        Ok(out)
    }
}

// ------------------------------------------------------------------ queries

pub struct Query;

#[Object]
impl Query {
    /// The authenticated user (as `GET /users/me`).
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<User> {
        let p = principal(ctx)?;
        let user = projections::queries::user(&state(ctx).pool, p.id())
            .await
            .gql()?
            .ok_or_else(|| {
                gql_error(ApiError::new(
                    domain::ErrorCode::USER_NOT_FOUND,
                    "user not found",
                ))
            })?;
        typed(user)
    }

    /// The projects the caller can see (all of them with `projects.read`).
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 100)] page_size: i64,
    ) -> GqlResult<Vec<Project>> {
        let p = principal(ctx)?;
        let (page, page_size) = crate::rest::Paging::new(Some(page), Some(page_size)).resolve();
        let member_of = (!p.has_global(global::PROJECTS_READ)).then(|| p.id());
        let result = projections::queries::projects(&state(ctx).pool, member_of, page, page_size)
            .await
            .gql()?;
        result.items.iter().map(Project::of).collect()
    }

    async fn project(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Project>> {
        let id = uuid(&id, "id")?;
        // As REST's GET /projects/:id: members (or public projects).
        allow(ctx, id, perms::TASKS_READ).await?;
        let view = projections::queries::project(&state(ctx).pool, id)
            .await
            .gql()?;
        view.as_ref().map(Project::of).transpose()
    }

    /// One task, live or `asOf` a version or an RFC 3339 time.
    async fn task(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        id: ID,
        as_of: Option<String>,
    ) -> GqlResult<Option<Task>> {
        let project_id = uuid(&project_id, "projectId")?;
        let task_id = uuid(&id, "id")?;
        allow(ctx, project_id, perms::TASKS_READ).await?;
        let state = state(ctx);
        let view = match as_of {
            None => q::task(&state.pool, project_id, task_id).await.gql()?,
            Some(raw) => {
                let as_of = AsOf::parse(&raw)
                    .filter(|a| *a != AsOf::Version(0))
                    .ok_or_else(|| {
                        gql_error(ApiError::bad_request(
                            "asOf must be a version (1 or more) or an RFC 3339 time",
                        ))
                    })?;
                let events = match rest_tasks::task_events(state, project_id, task_id).await {
                    Ok(events) => events,
                    Err(e) if e.code == domain::ErrorCode::TASK_NOT_FOUND => return Ok(None),
                    Err(e) => return Err(gql_error(e)),
                };
                let upto: Vec<_> = events.into_iter().filter(|e| as_of.includes(e)).collect();
                q::task_from_events(&upto)
            }
        };
        view.map(|v| Task::of(project_id, v)).transpose()
    }
}

/// A project, as `GET /projects/:id` returns it (the typed fields and the
/// whole object in `data`), and its parts, each behind the permission REST
/// requires for it.
#[derive(SimpleObject, Deserialize)]
#[graphql(complex)]
pub struct Project {
    id: ID,
    name: String,
    description: String,
    /// The prefix of task keys (`PROJ-12`).
    task_id_prefix: String,
    is_public: bool,
    /// Project settings; free-form.
    settings: Json<Value>,
    created_by: Option<ID>,
    created_at: String,
    #[graphql(skip)]
    #[serde(skip)]
    key: Uuid,
    #[graphql(skip)]
    #[serde(skip)]
    raw: Value,
}

impl Project {
    fn of(view: &projections::queries::ProjectView) -> GqlResult<Self> {
        let raw = serde_json::to_value(view).map_err(internal)?;
        let project: Project = from_rest(raw.clone())?;
        Ok(Project {
            key: view.id,
            raw,
            ..project
        })
    }
}

#[ComplexObject]
impl Project {
    /// The project as `GET /projects/:id` returns it.
    async fn data(&self) -> Json<Value> {
        Json(self.raw.clone())
    }

    /// `GET /projects/:id/members` (needs `members.read`).
    async fn members(&self, ctx: &Context<'_>) -> GqlResult<Vec<Member>> {
        allow(ctx, self.key, perms::MEMBERS_READ).await?;
        typed_list(
            &projections::queries::members(&state(ctx).pool, self.key)
                .await
                .gql()?,
        )
    }

    /// `GET /projects/:id/roles` (needs `roles.read`).
    async fn roles(&self, ctx: &Context<'_>) -> GqlResult<Vec<Role>> {
        allow(ctx, self.key, perms::ROLES_READ).await?;
        typed_list(
            &projections::queries::project_roles(&state(ctx).pool, self.key)
                .await
                .gql()?,
        )
    }

    /// `GET /projects/:id/task-types`.
    async fn task_types(&self, ctx: &Context<'_>) -> GqlResult<Vec<TaskType>> {
        allow(ctx, self.key, perms::TASKS_READ).await?;
        typed_list(
            &projections::queries::task_types(&state(ctx).pool, self.key)
                .await
                .gql()?,
        )
    }

    /// `GET /projects/:id/task-statuses`.
    async fn statuses(&self, ctx: &Context<'_>) -> GqlResult<Vec<TaskStatus>> {
        allow(ctx, self.key, perms::TASKS_READ).await?;
        typed_list(
            &projections::queries::task_statuses(&state(ctx).pool, self.key)
                .await
                .gql()?,
        )
    }

    /// `GET /projects/:id/custom-fields`.
    async fn custom_fields(&self, ctx: &Context<'_>) -> GqlResult<Vec<CustomField>> {
        allow(ctx, self.key, perms::TASKS_READ).await?;
        typed_list(
            &projections::queries::custom_fields(&state(ctx).pool, self.key)
                .await
                .gql()?,
        )
    }

    /// `GET /projects/:id/sprints` (needs `sprints.read`).
    async fn sprints(&self, ctx: &Context<'_>) -> GqlResult<Vec<Sprint>> {
        allow(ctx, self.key, perms::SPRINTS_READ).await?;
        typed_list(
            &projections::queries_sprints::sprints(&state(ctx).pool, self.key)
                .await
                .gql()?,
        )
    }

    /// Views of a context (`sprint` needs `sprintId`, as in REST).
    async fn views(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "String::from(\"backlog\")")] context: String,
        sprint_id: Option<ID>,
    ) -> GqlResult<Vec<View>> {
        allow(ctx, self.key, perms::SPRINTS_READ).await?;
        let context = ViewContext::parse(&context)
            .ok_or_else(|| gql_error(ApiError::bad_request("invalid context")))?;
        let sprint_id = match (context, sprint_id) {
            (ViewContext::Sprint, Some(id)) => Some(uuid(&id, "sprintId")?),
            (ViewContext::Sprint, None) => {
                return Err(gql_error(ApiError::bad_request("sprintId is required")));
            }
            _ => None,
        };
        typed_list(
            &projections::queries_sprints::views(&state(ctx).pool, self.key, context, sprint_id)
                .await
                .gql()?,
        )
    }

    /// A page of tasks; `filter` takes the REST list's parameter names
    /// (`status_ids`, `assignee_id`, `sprint_id`, `view_id`, ...), and
    /// `cursor` is the previous page's `nextCursor`.
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        filter: Option<Json<HashMap<String, Value>>>,
        cursor: Option<String>,
        page_size: Option<i64>,
    ) -> GqlResult<TaskPage> {
        allow(ctx, self.key, perms::TASKS_READ).await?;
        let mut params: HashMap<String, String> = filter
            .map(|f| f.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    Value::Null => "null".into(),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        if let Some(cursor) = cursor {
            params.insert("cursor".into(), cursor);
        }
        if let Some(n) = page_size {
            params.insert("page_size".into(), n.to_string());
        }
        let page = rest_tasks::list_page(state(ctx), self.key, &params)
            .await
            .gql()?;
        let items = page
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|data| Task::from_rest(self.key, data))
            .collect::<GqlResult<_>>()?;
        Ok(TaskPage {
            items,
            next_cursor: page
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// Project documents, as `GET /projects/:id/docs` lists them (without
    /// content); `folderId` is a folder's id or `root` for the top level.
    async fn docs(
        &self,
        ctx: &Context<'_>,
        folder_id: Option<String>,
    ) -> GqlResult<Vec<DocSummary>> {
        allow(ctx, self.key, perms::DOCS_READ).await?;
        let folder = match folder_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("root" | "null") => Some(None),
            Some(raw) => Some(Some(uuid(&ID::from(raw), "folderId")?)),
        };
        typed_list(
            &projections::queries_docs::docs(&state(ctx).pool, self.key, folder)
                .await
                .gql()?,
        )
    }

    /// One document with its content (`GET /projects/:id/docs/:docId`).
    async fn doc(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Doc> {
        allow(ctx, self.key, perms::DOCS_READ).await?;
        let doc_id = uuid(&id, "id")?;
        let view = crate::rest::docs::live_doc(state(ctx), self.key, doc_id)
            .await
            .gql()?;
        let raw = serde_json::to_value(view).map_err(internal)?;
        Ok(Doc {
            content: raw
                .get("content")
                .filter(|c| !c.is_null())
                .cloned()
                .map(Json),
            summary: from_rest(raw)?,
        })
    }
}

#[derive(SimpleObject)]
pub struct TaskPage {
    items: Vec<Task>,
    next_cursor: Option<String>,
}

/// A task, as `GET /projects/:id/tasks/:taskId` returns it (the typed
/// fields and the whole object in `data`), with its activity feed and
/// history.
#[derive(SimpleObject, Deserialize)]
#[graphql(complex)]
pub struct Task {
    id: ID,
    project_id: ID,
    /// The number in the task's key (`PROJ-12`).
    task_number: i64,
    title: String,
    task_type_id: Option<ID>,
    status_id: Option<ID>,
    sprint_id: Option<ID>,
    parent_task_id: Option<ID>,
    /// The BlockNote document.
    description: Option<Json<Value>>,
    importance: i64,
    story_points: Option<i64>,
    /// Member ids.
    assignee_ids: Vec<ID>,
    /// The first assignee (Paca's single-assignee field).
    assignee_id: Option<ID>,
    reporter_id: Option<ID>,
    /// Values by `CustomField.fieldKey`; the value's shape depends on the
    /// field type.
    custom_fields: Json<Value>,
    /// RFC 3339 at midnight UTC.
    start_date: Option<String>,
    /// RFC 3339 at midnight UTC.
    due_date: Option<String>,
    tags: Vec<String>,
    /// The task stream's version (REST's `ETag`; `updateTask`'s
    /// `expectedVersion`).
    version: i64,
    /// The manual position in the view of the `view_id` filter.
    view_position: Option<f64>,
    /// The group of that view the position is in.
    view_group_key: Option<String>,
    created_at: String,
    updated_at: String,
    /// `{plugin, key}` when a plugin created the task under an origin key.
    origin: Option<Json<Value>>,
    /// Plugins' orchestration summaries by plugin name.
    plugin_summaries: Option<Json<Value>>,
    #[graphql(skip)]
    #[serde(skip)]
    key: Uuid,
    #[graphql(skip)]
    #[serde(skip)]
    project_key: Uuid,
    #[graphql(skip)]
    #[serde(skip)]
    raw: Value,
}

impl Task {
    fn of(project_id: Uuid, view: q::TaskView) -> GqlResult<Self> {
        let raw = serde_json::to_value(&view).map_err(internal)?;
        Task::from_rest(project_id, raw)
    }

    /// From the task's REST JSON (e.g. an item of the REST list).
    fn from_rest(project_id: Uuid, raw: Value) -> GqlResult<Self> {
        let task: Task = from_rest(raw.clone())?;
        Ok(Task {
            key: uuid(&task.id, "id")?,
            project_key: project_id,
            raw,
            ..task
        })
    }
}

#[ComplexObject]
impl Task {
    /// The task as `GET /projects/:id/tasks/:taskId` returns it.
    async fn data(&self) -> Json<Value> {
        Json(self.raw.clone())
    }

    /// The activity feed, as `GET …/tasks/:taskId/activities` lists it
    /// (batched across tasks).
    async fn activities(&self, ctx: &Context<'_>) -> GqlResult<Vec<Activity>> {
        let loader = ctx.data_unchecked::<DataLoader<ActivitiesLoader>>();
        let items = loader
            .load_one(self.key)
            .await
            .map_err(internal)?
            .unwrap_or_default();
        typed_list(&items)
    }

    /// Every version of the task, one entry per event, as
    /// `GET …/tasks/:taskId/history` lists it.
    async fn history(&self, ctx: &Context<'_>) -> GqlResult<Vec<HistoryEntry>> {
        let events = rest_tasks::task_events(state(ctx), self.project_key, self.key)
            .await
            .gql()?;
        let items: Vec<HistoryEntryView> = events.iter().map(HistoryEntryView::of).collect();
        typed_list(&items)
    }
}

// ------------------------------------------------------------------ mutations

/// Task and comment mutations.
#[derive(Default)]
pub struct TaskMutation;

/// Every mutation (task, comment, sprint, view).
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(TaskMutation, PlanningMutation);

async fn live_task(ctx: &Context<'_>, project_id: Uuid, task_id: Uuid) -> GqlResult<Task> {
    let view = rest_tasks::live_task(state(ctx), project_id, task_id)
        .await
        .gql()?;
    Task::of(project_id, view)
}

#[Object]
impl TaskMutation {
    /// `POST /projects/:id/tasks` (same input fields).
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        input: Json<Value>,
    ) -> GqlResult<Task> {
        let project_id = uuid(&project_id, "projectId")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::TASKS_WRITE).await?;
        let body: rest_tasks::CreateBody = parse_input(input.0)?;
        let fields = body.into_fields().map_err(gql_error)?;
        let state = state(ctx);
        let created = state
            .commands
            .create_task_recorded(&metadata(p), project_id, Uuid::now_v7(), fields)
            .await
            .gql()?;
        let view = rest_tasks::created_task(state, project_id, &created)
            .await
            .gql()?;
        Task::of(project_id, view)
    }

    /// `PATCH /projects/:id/tasks/:taskId` (same input fields;
    /// `expectedVersion` is REST's `If-Match`).
    async fn update_task(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        id: ID,
        input: Json<Value>,
        expected_version: Option<i64>,
    ) -> GqlResult<Task> {
        let project_id = uuid(&project_id, "projectId")?;
        let task_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::TASKS_WRITE).await?;
        let body: rest_tasks::PatchBody = parse_input(input.0)?;
        let patch = body.into_patch().map_err(gql_error)?;
        let result = state(ctx)
            .commands
            .update_task(&metadata(p), project_id, task_id, patch, expected_version)
            .await;
        match result {
            Err(commands::CommandError::Stale { .. }) => {
                return Err(gql_error(ApiError::new(
                    domain::ErrorCode::CONFLICT,
                    "the task changed since expectedVersion; reload it and retry",
                )));
            }
            other => other.gql()?,
        };
        live_task(ctx, project_id, task_id).await
    }

    async fn delete_task(&self, ctx: &Context<'_>, project_id: ID, id: ID) -> GqlResult<bool> {
        let project_id = uuid(&project_id, "projectId")?;
        let task_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::TASKS_WRITE).await?;
        state(ctx)
            .commands
            .delete_task(&metadata(p), project_id, task_id)
            .await
            .gql()?;
        Ok(true)
    }

    /// Adds a comment; returns its activity entry.
    async fn add_comment(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        task_id: ID,
        content: Json<Value>,
    ) -> GqlResult<Comment> {
        let project_id = uuid(&project_id, "projectId")?;
        let task_id = uuid(&task_id, "taskId")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::TASKS_WRITE).await?;
        let body: rest_tasks::CommentBody = parse_input(json!({ "content": content.0 }))?;
        let state = state(ctx);
        let comment_id = state
            .commands
            .add_comment(
                &metadata(p),
                project_id,
                task_id,
                p.id(),
                body.content.unwrap_or(Value::Null),
            )
            .await
            .gql()?;
        comment(
            rest_tasks::activity_or_404(state, task_id, comment_id)
                .await
                .gql()?,
        )
    }

    async fn edit_comment(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        task_id: ID,
        id: ID,
        content: Json<Value>,
    ) -> GqlResult<Comment> {
        let project_id = uuid(&project_id, "projectId")?;
        let task_id = uuid(&task_id, "taskId")?;
        let comment_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::TASKS_WRITE).await?;
        let state = state(ctx);
        rest_tasks::comment_target(state, task_id, comment_id)
            .await
            .gql()?;
        let body: rest_tasks::CommentBody = parse_input(json!({ "content": content.0 }))?;
        state
            .commands
            .edit_comment(
                &metadata(p),
                project_id,
                task_id,
                comment_id,
                p.id(),
                body.content.unwrap_or(Value::Null),
            )
            .await
            .gql()?;
        comment(
            rest_tasks::activity_or_404(state, task_id, comment_id)
                .await
                .gql()?,
        )
    }

    async fn delete_comment(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        task_id: ID,
        id: ID,
    ) -> GqlResult<bool> {
        let project_id = uuid(&project_id, "projectId")?;
        let task_id = uuid(&task_id, "taskId")?;
        let comment_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::TASKS_WRITE).await?;
        let state = state(ctx);
        rest_tasks::comment_target(state, task_id, comment_id)
            .await
            .gql()?;
        state
            .commands
            .delete_comment(&metadata(p), project_id, task_id, comment_id, p.id())
            .await
            .gql()?;
        Ok(true)
    }
}

/// Sprint and view mutations: the REST bodies and command handlers.
#[derive(Default)]
pub struct PlanningMutation;

#[Object]
impl PlanningMutation {
    /// `POST /projects/:id/sprints` (same input fields).
    async fn create_sprint(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        input: Json<Value>,
    ) -> GqlResult<Sprint> {
        let project_id = uuid(&project_id, "projectId")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        let body: rest_sprints::CreateBody = parse_input(input.0)?;
        let name = body
            .name
            .ok_or_else(|| gql_error(ApiError::bad_request("name is required")))?;
        let state = state(ctx);
        let sprint_id = state
            .commands
            .create_sprint(
                &metadata(p),
                project_id,
                commands::sprints::NewSprint {
                    name,
                    start_date: rest_sprints::date(body.start_date).gql()?,
                    end_date: rest_sprints::date(body.end_date).gql()?,
                    goal: body.goal,
                    status: body.status,
                },
            )
            .await
            .gql()?;
        typed(
            rest_sprints::sprint_view(state, project_id, sprint_id)
                .await
                .gql()?,
        )
    }

    /// `PATCH /projects/:id/sprints/:sprintId`.
    async fn update_sprint(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        id: ID,
        input: Json<Value>,
    ) -> GqlResult<Sprint> {
        let project_id = uuid(&project_id, "projectId")?;
        let sprint_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        let body: rest_sprints::PatchBody = parse_input(input.0)?;
        let patch = commands::sprints::SprintPatch {
            name: body.name,
            start_date: body.start_date.map(rest_sprints::date).transpose().gql()?,
            end_date: body.end_date.map(rest_sprints::date).transpose().gql()?,
            goal: body.goal,
            status: body.status,
        };
        let state = state(ctx);
        state
            .commands
            .update_sprint(&metadata(p), project_id, sprint_id, patch)
            .await
            .gql()?;
        typed(
            rest_sprints::sprint_view(state, project_id, sprint_id)
                .await
                .gql()?,
        )
    }

    async fn delete_sprint(&self, ctx: &Context<'_>, project_id: ID, id: ID) -> GqlResult<bool> {
        let project_id = uuid(&project_id, "projectId")?;
        let sprint_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        state(ctx)
            .commands
            .delete_sprint(&metadata(p), project_id, sprint_id)
            .await
            .gql()?;
        Ok(true)
    }

    /// `POST /projects/:id/sprints/:sprintId/complete`.
    async fn complete_sprint(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        id: ID,
        move_to_sprint_id: Option<ID>,
    ) -> GqlResult<Sprint> {
        let project_id = uuid(&project_id, "projectId")?;
        let sprint_id = uuid(&id, "id")?;
        let move_to = move_to_sprint_id
            .map(|m| uuid(&m, "moveToSprintId"))
            .transpose()?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        let state = state(ctx);
        state
            .commands
            .complete_sprint(&metadata(p), project_id, sprint_id, move_to)
            .await
            .gql()?;
        typed(
            rest_sprints::sprint_view(state, project_id, sprint_id)
                .await
                .gql()?,
        )
    }

    /// `POST /projects/:id/views?context=&sprint_id=` (same input fields).
    async fn create_view(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        context: Option<String>,
        sprint_id: Option<ID>,
        input: Json<Value>,
    ) -> GqlResult<View> {
        let project_id = uuid(&project_id, "projectId")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        let scope = rest_views::ScopeQuery {
            context,
            sprint_id: sprint_id.map(|s| s.0),
        }
        .scope(project_id)
        .gql()?;
        let body: rest_views::ViewBody = parse_input(input.0)?;
        let view_type = body.view_type();
        let name = body
            .name
            .ok_or_else(|| gql_error(ApiError::bad_request("name is required")))?;
        let state = state(ctx);
        let view_id = state
            .commands
            .create_view(
                &metadata(p),
                scope,
                commands::views::NewView {
                    name,
                    view_type,
                    config: body.config,
                    position: body.position,
                },
            )
            .await
            .gql()?;
        typed(rest_views::view(state, project_id, view_id).await.gql()?)
    }

    /// `PATCH /projects/:id/views/:viewId`.
    async fn update_view(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        id: ID,
        input: Json<Value>,
    ) -> GqlResult<View> {
        let project_id = uuid(&project_id, "projectId")?;
        let view_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        let body: rest_views::ViewBody = parse_input(input.0)?;
        let patch = commands::views::ViewPatch {
            view_type: body.view_type(),
            name: body.name,
            config: body.config.filter(|c| !c.is_null()),
            position: body.position,
        };
        let state = state(ctx);
        state
            .commands
            .update_view(&metadata(p), project_id, view_id, patch)
            .await
            .gql()?;
        typed(rest_views::view(state, project_id, view_id).await.gql()?)
    }

    async fn delete_view(&self, ctx: &Context<'_>, project_id: ID, id: ID) -> GqlResult<bool> {
        let project_id = uuid(&project_id, "projectId")?;
        let view_id = uuid(&id, "id")?;
        let p = principal(ctx)?;
        allow(ctx, project_id, perms::SPRINTS_WRITE).await?;
        state(ctx)
            .commands
            .delete_view(&metadata(p), project_id, view_id)
            .await
            .gql()?;
        Ok(true)
    }
}

// ------------------------------------------------------------------ subscriptions

/// One realtime message, as Socket.IO clients receive it.
#[derive(SimpleObject, Clone)]
pub struct RealtimeEvent {
    #[graphql(name = "type")]
    kind: String,
    payload: Json<Value>,
}

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The project's `task.*`/`agent.*`/`github.*` events (with
    /// `tasks.read`, or public) and `doc.*` events (with `docs.read`).
    async fn project_events(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = RealtimeEvent> + use<>> {
        let project_id = uuid(&project_id, "projectId")?;
        let state = state(ctx);
        let tasks = project_access(state, caller(ctx), project_id, perms::TASKS_READ)
            .await
            .is_ok();
        let docs = project_access(state, caller(ctx), project_id, perms::DOCS_READ)
            .await
            .is_ok();
        if !tasks && !docs {
            return Err(gql_error(ApiError::forbidden()));
        }
        let rx = state.realtime.listen();
        Ok(filtered(rx, move |room| match room {
            Room::Tasks(p) => tasks && p == project_id,
            Room::Docs(p) => docs && p == project_id,
            Room::Notifications(_) => false,
        }))
    }

    /// The caller's `notification.*` events.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = RealtimeEvent> + use<>> {
        let user_id = principal(ctx)?.id();
        let rx = state(ctx).realtime.listen();
        Ok(filtered(rx, move |room| {
            room == Room::Notifications(user_id)
        }))
    }
}

fn filtered(
    rx: tokio::sync::broadcast::Receiver<Arc<crate::realtime::Message>>,
    allow: impl Fn(Room) -> bool + Send + 'static,
) -> impl Stream<Item = RealtimeEvent> {
    futures_util::stream::unfold((rx, allow), |(mut rx, allow)| async move {
        loop {
            match rx.recv().await {
                Ok(message) => {
                    if message.room().is_some_and(&allow) {
                        let event = RealtimeEvent {
                            kind: message.kind.clone(),
                            payload: Json(message.payload.clone()),
                        };
                        return Some((event, (rx, allow)));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "graphql subscription fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

// ------------------------------------------------------------------ HTTP

/// `POST /api/graphql`.
async fn execute(
    schema: web::Data<PacaSchema>,
    state: web::Data<AppState>,
    MaybeAuth(caller): MaybeAuth,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let request = request
        .into_inner()
        .data(Caller(caller))
        .data(DataLoader::new(
            ActivitiesLoader {
                pool: state.pool.clone(),
            },
            TokioSpawner::current(),
            TokioTimer::default(),
        ));
    schema.execute(request).await.into()
}

/// `GET /api/graphql`: GraphiQL, or the `graphql-ws` WebSocket.
async fn get(
    schema: web::Data<PacaSchema>,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    if !crate::realtime::socketio::is_websocket(&req) {
        return Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(
                GraphiQLSource::build()
                    .endpoint("/api/graphql")
                    .subscription_endpoint("/api/graphql")
                    .finish(),
            ));
    }
    if !state
        .cors
        .allows_websocket_from(crate::realtime::socketio::origin(&req))
    {
        return Ok(HttpResponse::Forbidden().finish());
    }
    // Cookie or header credentials on the upgrade request; a token in
    // `connectionParams` (graphql-ws) takes precedence.
    let from_request = match MaybeAuth::extract(&req).await {
        Ok(MaybeAuth(caller)) => caller,
        Err(_) => None,
    };
    let commands = state.commands.clone();
    let mut data = Data::default();
    data.insert(DataLoader::new(
        ActivitiesLoader {
            pool: state.pool.clone(),
        },
        TokioSpawner::current(),
        TokioTimer::default(),
    ));
    GraphQLSubscription::new(Schema::clone(&schema))
        .with_data(data)
        .on_connection_init(move |params: Value| async move {
            let mut data = Data::default();
            let token = params
                .get("token")
                .or_else(|| params.get("authToken"))
                .or_else(|| params.get("Authorization"))
                .and_then(Value::as_str)
                .map(|t| t.trim_start_matches("Bearer ").trim().to_owned());
            let caller = match token {
                Some(token) => Some(
                    principal_for_token(&commands, &token)
                        .await
                        .ok_or_else(|| async_graphql::Error::new("invalid or expired token"))?,
                ),
                None => from_request,
            };
            data.insert(Caller(caller));
            Ok(data)
        })
        .start(&req, payload)
}

async fn principal_for_token(commands: &commands::Commands, token: &str) -> Option<Principal> {
    let claims = commands.auth.verify_access(token).ok()?;
    let user = crate::realtime::socketio::user_for_token(commands, token).await?;
    Some(Principal {
        user,
        via: Via::Session { family: claims.sid },
        agent: None,
    })
}

pub fn routes<R: Routes>(r: &mut R) {
    // GraphQL answers its own `{data, errors}` shape, not the envelope.
    r.post("/api/graphql", execute)
        .raw(
            "application/json",
            json!({"type": "object", "properties": {"data": {}, "errors": {"type": "array"}}}),
        )
        .or_as("application/graphql-response+json");
    // GraphiQL, or the `graphql-ws` upgrade.
    r.get("/api/graphql", get)
        .raw("text/html", json!({"type": "string"}));
}

/// The GraphQL-over-HTTP request body.
impl crate::openapi::ApiArg for GraphQLRequest {
    fn document(op: &mut crate::openapi::Operation, _: &mut schemars::SchemaGenerator) {
        op.json_body(json!({
            "type": "object",
            "required": ["query"],
            "properties": {
                "query": {"type": "string"},
                "variables": {"type": ["object", "null"]},
                "operationName": {"type": ["string", "null"]},
            },
        }));
    }
}
