//! `/projects/:id/docs`: folders, documents, versions (snapshots, their
//! diffs and restores), the doc feed and doc comments (seed page 15,
//! CONTRACT-NOTES §11). Doc files are in `files.rs`.

use actix_web::{HttpResponse, web};
use commands::docs::{DocPatch, NewDoc};
use domain::ErrorCode;
use domain::doc::DocCommand;
use projections::queries_docs as q;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ProjectAuth, ProjectRead, perm};
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;
use crate::openapi::Routes;
use crate::rest::task_config::three_state;
use crate::rest::tasks::line_diff;

pub fn routes<R: Routes>(r: &mut R) {
    const D: &str = "/projects/{project_id}/docs";
    r.get(&format!("{D}/folders"), list_folders)
        .returns_items::<q::FolderView>();
    r.post(&format!("{D}/folders"), create_folder)
        .created()
        .returns::<q::FolderView>();
    r.patch(&format!("{D}/folders/{{folder_id}}"), patch_folder)
        .returns::<q::FolderView>();
    r.delete(&format!("{D}/folders/{{folder_id}}"), delete_folder);
    r.get(&format!("{D}/search"), search)
        .returns_items::<q::SearchHit>();
    r.get(D, list).returns_items::<q::DocView>();
    r.post(D, create).created().returns::<q::DocView>();
    r.get(&format!("{D}/{{doc_id}}"), get)
        .returns::<q::DocView>();
    r.patch(&format!("{D}/{{doc_id}}"), patch)
        .returns::<q::DocView>();
    r.delete(&format!("{D}/{{doc_id}}"), delete);
    r.get(&format!("{D}/{{doc_id}}/snapshots"), snapshots)
        .returns_items::<q::SnapshotView>();
    r.get(&format!("{D}/{{doc_id}}/snapshots/diff"), diff)
        .returns_json(crate::rest::doc_diff_schema());
    r.get(
        &format!("{D}/{{doc_id}}/snapshots/{{snapshot_id}}"),
        snapshot,
    )
    .returns::<q::SnapshotView>();
    r.post(
        &format!("{D}/{{doc_id}}/snapshots/{{snapshot_id}}/restore"),
        restore,
    )
    .returns::<q::DocView>();
    r.get(&format!("{D}/{{doc_id}}/activities"), activities)
        .returns_items::<q::DocActivityView>();
    r.post(&format!("{D}/{{doc_id}}/comments"), add_comment)
        .created()
        .returns::<q::DocActivityView>();
    r.patch(
        &format!("{D}/{{doc_id}}/comments/{{comment_id}}"),
        edit_comment,
    )
    .returns::<q::DocActivityView>();
    r.delete(
        &format!("{D}/{{doc_id}}/comments/{{comment_id}}"),
        delete_comment,
    );
    crate::rest::files::doc_routes(r);
}

fn doc_not_found() -> ApiError {
    ApiError::new(ErrorCode::DOC_NOT_FOUND, "document not found")
}

fn folder_not_found() -> ApiError {
    ApiError::new(ErrorCode::DOC_FOLDER_NOT_FOUND, "folder not found")
}

pub(crate) async fn live_doc(
    state: &AppState,
    project_id: Uuid,
    doc_id: Uuid,
) -> ApiResult<q::DocView> {
    q::doc(&state.pool, project_id, doc_id)
        .await?
        .ok_or_else(doc_not_found)
}

// ------------------------------------------------------------------ folders

pub async fn list_folders(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    project_id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    ok(json!({ "items": q::folders(&state.pool, project_id.into_inner()).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct FolderBody {
    name: Option<String>,
    parent_id: Option<Uuid>,
    position: Option<i64>,
}

pub async fn create_folder(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    project_id: web::Path<Uuid>,
    body: Json<FolderBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let body = body.into_inner();
    let name = body
        .name
        .ok_or_else(|| ApiError::new(ErrorCode::DOC_FOLDER_NAME_INVALID, "name is required"))?;
    let id = state
        .commands
        .create_doc_folder(
            &principal.metadata(),
            project_id,
            name,
            body.parent_id,
            body.position,
        )
        .await?;
    created(
        q::folder(&state.pool, project_id, id)
            .await?
            .ok_or_else(folder_not_found)?,
    )
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct FolderPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "three_state")]
    parent_id: Option<Option<Uuid>>,
    position: Option<i64>,
}

pub async fn patch_folder(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<FolderPatch>,
) -> ApiResult<HttpResponse> {
    let (project_id, folder_id) = path.into_inner();
    let body = body.into_inner();
    state
        .commands
        .update_doc_folder(
            &principal.metadata(),
            project_id,
            folder_id,
            body.name,
            body.parent_id,
            body.position,
        )
        .await?;
    ok(q::folder(&state.pool, project_id, folder_id)
        .await?
        .ok_or_else(folder_not_found)?)
}

pub async fn delete_folder(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, folder_id) = path.into_inner();
    state
        .commands
        .delete_doc_folder(&principal.metadata(), project_id, folder_id)
        .await?;
    no_content()
}

// ---------------------------------------------------------------- documents

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    /// A folder id, or `root` for documents outside any folder.
    folder_id: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    project_id: web::Path<Uuid>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let folder = match query.into_inner().folder_id.as_deref() {
        None | Some("") => None,
        Some("root" | "null") => Some(None),
        Some(raw) => Some(Some(raw.parse::<Uuid>().map_err(|_| {
            ApiError::bad_request("folder_id must be a UUID or \"root\"")
        })?)),
    };
    ok(json!({ "items": q::docs(&state.pool, project_id.into_inner(), folder).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SearchQuery {
    q: Option<String>,
    query: Option<String>,
    search: Option<String>,
    limit: Option<i64>,
}

/// `GET /docs/search?q=…` (`query` and `search` are accepted too: the
/// parameter's name is not recorded): documents whose title or text
/// contains the words.
pub async fn search(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    project_id: web::Path<Uuid>,
    query: web::Query<SearchQuery>,
) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let text = query
        .q
        .or(query.query)
        .or(query.search)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("q (the text to search for) is required"))?;
    if text.chars().count() > 200 {
        return Err(ApiError::bad_request("q must be at most 200 characters"));
    }
    let limit = query.limit.filter(|n| (1..=100).contains(n)).unwrap_or(20);
    ok(json!({ "items": q::search(&state.pool, project_id.into_inner(), &text, limit).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "DocCreateBody")]
pub struct CreateBody {
    title: Option<String>,
    folder_id: Option<Uuid>,
    content: Option<Value>,
    position: Option<f64>,
}

pub async fn create(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    project_id: web::Path<Uuid>,
    body: Json<CreateBody>,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let new = body.into_inner().into_new()?;
    let id = state
        .commands
        .create_doc(&principal.metadata(), project_id, new)
        .await?;
    created(live_doc(&state, project_id, id).await?)
}

impl CreateBody {
    /// The command's input (shared with the plugin host's `doc_create`).
    pub(crate) fn into_new(self) -> ApiResult<NewDoc> {
        let title = self
            .title
            .ok_or_else(|| ApiError::new(ErrorCode::DOC_TITLE_INVALID, "title is required"))?;
        Ok(NewDoc {
            title,
            folder_id: self.folder_id,
            content: self.content.filter(|c| !c.is_null()),
            position: self.position,
        })
    }
}

impl PatchBody {
    pub(crate) fn into_patch(self) -> DocPatch {
        DocPatch {
            title: self.title,
            content: self.content,
            folder_id: self.folder_id,
            position: self.position,
        }
    }
}

pub async fn get(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    ok(live_doc(&state, project_id, doc_id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "DocPatchBody")]
pub struct PatchBody {
    title: Option<String>,
    #[serde(default, deserialize_with = "three_state")]
    content: Option<Option<Value>>,
    #[serde(default, deserialize_with = "three_state")]
    folder_id: Option<Option<Uuid>>,
    position: Option<f64>,
}

pub async fn patch(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<PatchBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    state
        .commands
        .update_doc(
            &principal.metadata(),
            project_id,
            doc_id,
            body.into_inner().into_patch(),
        )
        .await?;
    ok(live_doc(&state, project_id, doc_id).await?)
}

pub async fn delete(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    state
        .commands
        .doc_command(
            &principal.metadata(),
            project_id,
            doc_id,
            DocCommand::Delete,
        )
        .await?;
    no_content()
}

// ---------------------------------------------------------------- versions

pub async fn snapshots(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    live_doc(&state, project_id, doc_id).await?;
    ok(json!({ "items": q::snapshots(&state.pool, doc_id).await? }))
}

async fn snapshot_or_404(
    state: &AppState,
    doc_id: Uuid,
    snapshot_id: Uuid,
) -> ApiResult<q::SnapshotView> {
    q::snapshot(&state.pool, doc_id, snapshot_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::DOC_SNAPSHOT_NOT_FOUND, "snapshot not found"))
}

pub async fn snapshot(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, snapshot_id) = path.into_inner();
    live_doc(&state, project_id, doc_id).await?;
    ok(snapshot_or_404(&state, doc_id, snapshot_id).await?)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct DiffQuery {
    from: Option<Uuid>,
    /// Default: the latest version.
    to: Option<Uuid>,
}

/// `GET …/snapshots/diff?from=<id>&to=<id>`: what changed between two
/// versions (title, and a unified line diff of the content's text).
pub async fn diff(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<DiffQuery>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    live_doc(&state, project_id, doc_id).await?;
    let query = query.into_inner();
    let from = query
        .from
        .ok_or_else(|| ApiError::bad_request("from (a snapshot id) is required"))?;
    let from = snapshot_or_404(&state, doc_id, from).await?;
    let to = match query.to {
        Some(id) => snapshot_or_404(&state, doc_id, id).await?,
        None => q::snapshots(&state.pool, doc_id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorCode::DOC_SNAPSHOT_NOT_FOUND, "no snapshots"))?,
    };
    let side = |s: &q::SnapshotView| {
        json!({"id": s.id, "snapshot_number": s.snapshot_number, "title": s.title,
               "created_at": s.created_at})
    };
    let title = (from.title != to.title).then(|| json!({"old": from.title, "new": to.title}));
    let content_changed = from.content != to.content;
    ok(json!({
        "document_id": doc_id,
        "from": side(&from),
        "to": side(&to),
        "title": title,
        "content_changed": content_changed,
        "content_diff": if content_changed { line_diff(&from.content, &to.content) } else { String::new() },
    }))
}

/// `POST …/snapshots/:id/restore`: the snapshot's title and content become
/// a new version that names what it restores.
pub async fn restore(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, snapshot_id) = path.into_inner();
    state
        .commands
        .restore_doc_snapshot(&principal.metadata(), project_id, doc_id, snapshot_id)
        .await?;
    ok(live_doc(&state, project_id, doc_id).await?)
}

// ----------------------------------------------------- activity and comments

pub async fn activities(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    // A deleted document's feed goes with it (its events stay in the log).
    live_doc(&state, project_id, doc_id).await?;
    ok(json!({ "items": q::activities(&state.pool, doc_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "DocCommentBody")]
pub struct CommentBody {
    content: Option<Value>,
}

async fn activity_or_404(
    state: &AppState,
    doc_id: Uuid,
    id: Uuid,
) -> ApiResult<q::DocActivityView> {
    q::activity(&state.pool, doc_id, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::DOC_ACTIVITY_NOT_FOUND, "activity not found"))
}

async fn comment_target(state: &AppState, doc_id: Uuid, id: Uuid) -> ApiResult<()> {
    if activity_or_404(state, doc_id, id).await?.activity_type != "comment" {
        return Err(ApiError::new(
            ErrorCode::DOC_ACTIVITY_NOT_A_COMMENT,
            "only comments can be edited or deleted",
        ));
    }
    Ok(())
}

pub async fn add_comment(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<CommentBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    let comment_id = Uuid::now_v7();
    state
        .commands
        .doc_command(
            &principal.metadata(),
            project_id,
            doc_id,
            DocCommand::AddComment {
                comment_id,
                author_user_id: principal.id(),
                content: body.into_inner().content.unwrap_or(Value::Null),
            },
        )
        .await?;
    created(activity_or_404(&state, doc_id, comment_id).await?)
}

pub async fn edit_comment(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    body: Json<CommentBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, comment_id) = path.into_inner();
    comment_target(&state, doc_id, comment_id).await?;
    state
        .commands
        .doc_command(
            &principal.metadata(),
            project_id,
            doc_id,
            DocCommand::EditComment {
                comment_id,
                actor_user_id: principal.id(),
                content: body.into_inner().content.unwrap_or(Value::Null),
            },
        )
        .await?;
    ok(activity_or_404(&state, doc_id, comment_id).await?)
}

pub async fn delete_comment(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, comment_id) = path.into_inner();
    comment_target(&state, doc_id, comment_id).await?;
    state
        .commands
        .doc_command(
            &principal.metadata(),
            project_id,
            doc_id,
            DocCommand::DeleteComment {
                comment_id,
                actor_user_id: principal.id(),
            },
        )
        .await?;
    no_content()
}
