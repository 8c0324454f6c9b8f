//! Task attachments and doc files through presigned URLs (seed page 15,
//! CONTRACT-NOTES §12), and the local backend's own signed upload and
//! download endpoint (`/api/v1/storage/...`).
//!
//! `initiate-upload` registers a pending upload and answers with one
//! presigned PUT (below 5 MiB) or a multipart upload with a presigned URL
//! per part; the client uploads the bytes straight to storage, then calls
//! `complete-upload`, which checks what arrived (size, parts) and appends
//! the attachment event.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use commands::files::{DOC, FileRow, TASK};
use domain::ErrorCode;
use futures_util::StreamExt;
use projections::queries_files as q;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{ProjectAuth, ProjectRead, perm};
use crate::error::{ApiError, ApiResult, created, no_content, ok};
use crate::extract::Json;
use crate::openapi::Routes;
use crate::storage::{
    self, Grant, MAX_PARTS, PART_SIZE, Part, SINGLE_PUT_MAX, Storage, StorageError,
};

pub fn task_routes<R: Routes>(r: &mut R) {
    const A: &str = "/projects/{project_id}/tasks/{task_id}/attachments";
    r.get(A, list_task).returns_items::<q::AttachmentView>();
    r.post(&format!("{A}/initiate-upload"), initiate_task)
        .created()
        .returns_json(crate::rest::upload_schema());
    r.post(&format!("{A}/complete-upload"), complete_task)
        .created()
        .returns::<q::AttachmentView>();
    r.get(
        &format!("{A}/{{attachment_id}}/download-url"),
        download_task,
    )
    .returns_json(crate::rest::download_url_schema());
    // The file itself, as uploaded.
    r.get(&format!("{A}/{{attachment_id}}/content"), content_task)
        .raw("*/*", serde_json::json!({}));
    r.delete(&format!("{A}/{{attachment_id}}"), delete_task);
}

pub fn doc_routes<R: Routes>(r: &mut R) {
    const F: &str = "/projects/{project_id}/docs/{doc_id}/files";
    r.get(F, list_doc).returns_items::<q::AttachmentView>();
    r.post(&format!("{F}/initiate-upload"), initiate_doc)
        .created()
        .returns_json(crate::rest::upload_schema());
    r.post(&format!("{F}/complete-upload"), complete_doc)
        .created()
        .returns::<q::AttachmentView>();
    r.get(&format!("{F}/{{file_id}}/download-url"), download_doc)
        .returns_json(crate::rest::download_url_schema());
    r.get(&format!("{F}/{{file_id}}/content"), content_doc)
        .raw("*/*", serde_json::json!({}));
    r.delete(&format!("{F}/{{file_id}}"), delete_doc);
}

pub fn storage_routes<R: Routes>(r: &mut R) {
    // Signed URLs: a bad or expired signature is a 403.
    r.put("/storage/{key:.*}", local_put)
        .empty()
        .error(403)
        .error(413);
    r.get("/storage/{key:.*}", local_get)
        .raw("*/*", serde_json::json!({}))
        .error(403);
}

fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::Invalid(message) => ApiError::new(ErrorCode::ATTACHMENT_INVALID, message),
        other => ApiError::internal(other),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ATTACHMENT_INVALID, message)
}

/// This API's origin as the client reached it (local storage URLs point
/// back here unless `PUBLIC_URL` says otherwise).
fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

// ----------------------------------------------------------------- initiate

#[derive(Deserialize, schemars::JsonSchema)]
pub struct InitiateBody {
    file_name: Option<String>,
    content_type: Option<String>,
    file_size: Option<i64>,
}

/// `(file_name, content_type, file_size)` checked: names and types are
/// single-line text (they end up in headers and signed strings).
fn check_initiate(body: InitiateBody, max: i64) -> ApiResult<(String, String, i64)> {
    let file_name = body.file_name.unwrap_or_default().trim().to_owned();
    if file_name.is_empty()
        || file_name.chars().count() > 255
        || file_name.chars().any(char::is_control)
    {
        return Err(invalid(
            "file_name is required (1-255 characters, one line)",
        ));
    }
    let content_type = body.content_type.unwrap_or_default().trim().to_owned();
    let well_formed = content_type.len() <= 255
        && content_type
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && content_type
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ');
    if !well_formed {
        return Err(invalid(
            "content_type is required (a MIME type such as text/plain)",
        ));
    }
    let file_size = body.file_size.unwrap_or(0);
    if file_size < 1 {
        return Err(invalid("file_size must be at least 1"));
    }
    if file_size > max {
        return Err(ApiError::new(
            ErrorCode::ATTACHMENT_TOO_LARGE,
            format!("file_size exceeds the limit of {max} bytes"),
        ));
    }
    Ok((file_name, content_type, file_size))
}

async fn initiate(
    state: &AppState,
    req: &HttpRequest,
    principal: &crate::auth::Principal,
    project_id: Uuid,
    kind: &'static str,
    owner_id: Uuid,
    body: InitiateBody,
) -> ApiResult<HttpResponse> {
    let store: &Storage = &state.storage;
    let (file_name, content_type, file_size) = check_initiate(body, store.max_file_size)?;
    let file_id = Uuid::now_v7();
    let key = format!("{kind}/{owner_id}/{file_id}");
    let base = origin(req);
    let multipart = file_size >= SINGLE_PUT_MAX;
    let mut upload_id = None;
    let mut response = json!({"file_id": file_id, "is_multipart": multipart});
    if multipart {
        let part_size = PART_SIZE.max((file_size + MAX_PARTS - 1) / MAX_PARTS);
        let count = (file_size + part_size - 1) / part_size;
        let id = store
            .create_multipart(&key, &content_type)
            .await
            .map_err(storage_error)?;
        let mut parts = Vec::new();
        for n in 1..=count {
            let len = part_size.min(file_size - (n - 1) * part_size);
            let number = i32::try_from(n).map_err(ApiError::internal)?;
            let url = store
                .presign_part(&base, &key, &id, number, len)
                .await
                .map_err(storage_error)?;
            parts.push(json!({"part_number": number, "upload_url": url, "size": len}));
        }
        response["multipart"] = json!({"upload_id": id, "part_size": part_size, "parts": parts});
        upload_id = Some(id);
    } else {
        response["upload_url"] = json!(
            store
                .presign_put(&base, &key, &content_type, file_size)
                .await
                .map_err(storage_error)?
        );
    }
    state
        .commands
        .register_upload(&FileRow {
            id: file_id,
            project_id,
            owner_kind: kind.into(),
            owner_id,
            file_name,
            content_type,
            file_size,
            storage_key: key,
            bucket: store.bucket().to_owned(),
            upload_id,
            status: "pending".into(),
            created_by: Some(principal.id()),
        })
        .await?;
    created(response)
}

async fn live_task(state: &AppState, project_id: Uuid, task_id: Uuid) -> ApiResult<()> {
    projections::queries_tasks::task(&state.pool, project_id, task_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TASK_NOT_FOUND, "task not found"))?;
    Ok(())
}

pub async fn initiate_task(
    state: web::Data<AppState>,
    req: HttpRequest,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<InitiateBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    live_task(&state, project_id, task_id).await?;
    initiate(
        &state,
        &req,
        &principal,
        project_id,
        TASK,
        task_id,
        body.into_inner(),
    )
    .await
}

pub async fn initiate_doc(
    state: web::Data<AppState>,
    req: HttpRequest,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<InitiateBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    crate::rest::docs::live_doc(&state, project_id, doc_id).await?;
    initiate(
        &state,
        &req,
        &principal,
        project_id,
        DOC,
        doc_id,
        body.into_inner(),
    )
    .await
}

// ----------------------------------------------------------------- complete

#[derive(Deserialize, schemars::JsonSchema)]
pub struct PartBody {
    part_number: Option<i32>,
    etag: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "FileCompleteBody")]
pub struct CompleteBody {
    file_id: Option<Uuid>,
    upload_id: Option<String>,
    parts: Option<Vec<PartBody>>,
}

/// Checks the upload against what storage holds (finishing a multipart
/// upload first); returns the pending row.
async fn verify_upload(
    state: &AppState,
    kind: &str,
    owner_id: Uuid,
    body: CompleteBody,
) -> ApiResult<FileRow> {
    let file_id = body.file_id.ok_or_else(|| invalid("file_id is required"))?;
    let file = state
        .commands
        .upload(file_id, kind, owner_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::FILE_NOT_FOUND, "file not found"))?;
    if file.status != "pending" {
        return Err(ApiError::new(
            ErrorCode::ATTACHMENT_UPLOAD_NOT_PENDING,
            "the upload is not pending (already completed or removed)",
        ));
    }
    let store = &state.storage;
    match (&file.upload_id, body.upload_id.filter(|u| !u.is_empty())) {
        (Some(_), None) => {
            return Err(ApiError::new(
                ErrorCode::ATTACHMENT_MULTIPART_UPLOAD_ID_REQUIRED,
                "upload_id is required for a multipart upload",
            ));
        }
        (Some(expected), Some(given)) => {
            if *expected != given {
                return Err(ApiError::new(
                    ErrorCode::ATTACHMENT_UPLOAD_ID_MISMATCH,
                    "upload_id does not match the upload",
                ));
            }
            let parts = body.parts.unwrap_or_default();
            if parts.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::ATTACHMENT_MULTIPART_PARTS_EMPTY,
                    "parts must list every uploaded part",
                ));
            }
            let mut checked = Vec::new();
            for p in parts {
                let part_number = p.part_number.filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::bad_request("parts[].part_number must be at least 1")
                })?;
                let etag = p
                    .etag
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| ApiError::bad_request("parts[].etag is required"))?;
                checked.push(Part { part_number, etag });
            }
            store
                .complete_multipart(&file.storage_key, expected, &checked)
                .await
                .map_err(storage_error)?;
        }
        (None, Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::ATTACHMENT_NOT_MULTIPART_UPLOAD,
                "upload_id was given but this is a single-PUT upload",
            ));
        }
        (None, None) => {}
    }
    match store.size(&file.storage_key).await.map_err(storage_error)? {
        None => Err(invalid("nothing was uploaded for this file")),
        Some(size) if size != file.file_size => {
            // Storage holds something else than was declared: drop it, so
            // the client can upload again with a fresh initiate-upload.
            let _ = store.delete(&file.storage_key).await;
            Err(invalid(format!(
                "{size} bytes were uploaded but file_size was {}",
                file.file_size
            )))
        }
        Some(_) => Ok(file),
    }
}

pub async fn complete_task(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<CompleteBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    live_task(&state, project_id, task_id).await?;
    let file = verify_upload(&state, TASK, task_id, body.into_inner()).await?;
    let id = state
        .commands
        .complete_task_attachment(&principal.metadata(), project_id, task_id, file.id)
        .await?;
    created(task_attachment(&state, task_id, id).await?)
}

pub async fn complete_doc(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<CompleteBody>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    crate::rest::docs::live_doc(&state, project_id, doc_id).await?;
    let file = verify_upload(&state, DOC, doc_id, body.into_inner()).await?;
    state
        .commands
        .complete_doc_file(&principal.metadata(), project_id, doc_id, file.id)
        .await?;
    created(doc_file(&state, doc_id, file.id).await?)
}

// ------------------------------------------------------ list, url, delete

async fn task_attachment(
    state: &AppState,
    task_id: Uuid,
    id: Uuid,
) -> ApiResult<q::AttachmentView> {
    q::task_attachment(&state.pool, task_id, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ATTACHMENT_NOT_FOUND, "attachment not found"))
}

async fn doc_file(state: &AppState, doc_id: Uuid, id: Uuid) -> ApiResult<q::AttachmentView> {
    q::doc_file(&state.pool, doc_id, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::FILE_NOT_FOUND, "file not found"))
}

pub async fn list_task(
    state: web::Data<AppState>,
    _: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id) = path.into_inner();
    live_task(&state, project_id, task_id).await?;
    ok(json!({ "items": q::task_attachments(&state.pool, task_id).await? }))
}

pub async fn list_doc(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id) = path.into_inner();
    crate::rest::docs::live_doc(&state, project_id, doc_id).await?;
    ok(json!({ "items": q::doc_files(&state.pool, doc_id).await? }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct DownloadQuery {
    download: Option<String>,
}

async fn download_url(
    state: &AppState,
    req: &HttpRequest,
    kind: &str,
    owner_id: Uuid,
    attachment: &q::AttachmentView,
    download: bool,
) -> ApiResult<HttpResponse> {
    let file = state
        .commands
        .upload(attachment.file_id, kind, owner_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::FILE_NOT_FOUND, "file not found"))?;
    let url = state
        .storage
        .presign_get(
            &origin(req),
            &file.storage_key,
            &file.file_name,
            &file.content_type,
            download,
        )
        .await
        .map_err(storage_error)?;
    ok(json!({ "url": url, "expires_in": storage::URL_TTL.as_secs() }))
}

fn wants_download(q: &DownloadQuery) -> bool {
    matches!(q.download.as_deref(), Some("true" | "1"))
}

pub async fn download_task(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    query: web::Query<DownloadQuery>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, id) = path.into_inner();
    live_task(&state, project_id, task_id).await?;
    let a = task_attachment(&state, task_id, id).await?;
    download_url(&state, &req, TASK, task_id, &a, wants_download(&query)).await
}

pub async fn download_doc(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
    query: web::Query<DownloadQuery>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, id) = path.into_inner();
    crate::rest::docs::live_doc(&state, project_id, doc_id).await?;
    let f = doc_file(&state, doc_id, id).await?;
    download_url(&state, &req, DOC, doc_id, &f, wants_download(&query)).await
}

async fn content(
    state: &AppState,
    kind: &str,
    owner_id: Uuid,
    attachment: &q::AttachmentView,
) -> ApiResult<HttpResponse> {
    let file = state
        .commands
        .upload(attachment.file_id, kind, owner_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::FILE_NOT_FOUND, "file not found"))?;
    let bytes = state
        .storage
        .read(&file.storage_key)
        .await
        .map_err(storage_error)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, file.content_type.clone()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            storage::content_disposition(&file.file_name, false),
        ))
        .body(bytes))
}

pub async fn content_task(
    state: web::Data<AppState>,
    _: ProjectRead<perm::TasksRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, id) = path.into_inner();
    live_task(&state, project_id, task_id).await?;
    let a = task_attachment(&state, task_id, id).await?;
    content(&state, TASK, task_id, &a).await
}

pub async fn content_doc(
    state: web::Data<AppState>,
    _: ProjectRead<perm::DocsRead>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, id) = path.into_inner();
    crate::rest::docs::live_doc(&state, project_id, doc_id).await?;
    let f = doc_file(&state, doc_id, id).await?;
    content(&state, DOC, doc_id, &f).await
}

async fn drop_object(state: &AppState, key: Option<String>) {
    if let Some(key) = key
        && let Err(error) = state.storage.delete(&key).await
    {
        // The attachment is gone from the log and the read models; an
        // orphaned object costs space only.
        tracing::warn!(%error, %key, "could not delete a removed attachment's object");
    }
}

pub async fn delete_task(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::TasksWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, task_id, id) = path.into_inner();
    let a = task_attachment(&state, task_id, id).await?;
    let key = state
        .commands
        .remove_task_attachment(&principal.metadata(), project_id, task_id, id, a.file_id)
        .await?;
    drop_object(&state, key).await;
    no_content()
}

pub async fn delete_doc(
    state: web::Data<AppState>,
    ProjectAuth { principal, .. }: ProjectAuth<perm::DocsWrite>,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (project_id, doc_id, id) = path.into_inner();
    doc_file(&state, doc_id, id).await?;
    let key = state
        .commands
        .remove_doc_file(&principal.metadata(), project_id, doc_id, id)
        .await?;
    drop_object(&state, key).await;
    no_content()
}

// ------------------------------------------------- local storage endpoint

fn refused() -> ApiError {
    ApiError::new(
        ErrorCode::FORBIDDEN,
        "the storage URL is invalid or has expired",
    )
}

/// The local backend's grant for this request, verified.
fn local_grant(state: &AppState, req: &HttpRequest, ops: &[&str]) -> ApiResult<Grant> {
    let storage::Backend::Local(local) = &state.storage.backend else {
        return Err(ApiError::new(ErrorCode::NOT_FOUND, "no such route"));
    };
    let key = req.match_info().get("key").unwrap_or_default();
    let (grant, sig) = storage::grant_from_query(key, req.query_string()).ok_or_else(refused)?;
    if !ops.contains(&grant.op.as_str()) || !local.verify(&grant, &sig) {
        return Err(refused());
    }
    Ok(grant)
}

/// `PUT /api/v1/storage/<key>?…&sig=…`: stores the body (a whole file, or
/// one part of a multipart upload), at most the signed length.
pub async fn local_put(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut body: web::Payload,
) -> ApiResult<HttpResponse> {
    let grant = local_grant(&state, &req, &["put", "part"])?;
    let storage::Backend::Local(local) = &state.storage.backend else {
        return Err(refused());
    };
    if grant.op == "put" && !grant.content_type.is_empty() {
        // The type was signed: another one is refused. A body without a
        // type (a bare `curl -T`) is stored with the declared one.
        let sent = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        if sent.is_some_and(|t| t != grant.content_type) {
            return Err(ApiError::new(
                ErrorCode::FORBIDDEN,
                "Content-Type does not match the signed upload",
            ));
        }
    }
    let (dest, etag_file) = local.upload_target(&grant).map_err(storage_error)?;
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(ApiError::internal)?;
    }
    let tmp = dest.with_extension(format!("upload-{}", Uuid::new_v4().simple()));
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .map_err(ApiError::internal)?;
    let mut written: i64 = 0;
    let mut hash = Sha256::new();
    let result: ApiResult<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload failed: {e}")))?;
            written += chunk.len() as i64;
            if written > grant.len {
                return Err(ApiError::new(
                    ErrorCode::ATTACHMENT_TOO_LARGE,
                    format!("the upload exceeds the signed size of {} bytes", grant.len),
                ));
            }
            hash.update(&chunk);
            out.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        out.flush().await.map_err(ApiError::internal)?;
        Ok(())
    }
    .await;
    drop(out);
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &dest)
        .await
        .map_err(ApiError::internal)?;
    let etag = hex::encode(hash.finalize());
    if let Some(etag_file) = etag_file {
        tokio::fs::write(etag_file, &etag)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{etag}\"")))
        .insert_header((header::ACCESS_CONTROL_EXPOSE_HEADERS, "ETag"))
        .finish())
}

/// `GET /api/v1/storage/<key>?…&sig=…`: the file, with the signed type
/// and disposition.
pub async fn local_get(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let grant = local_grant(&state, &req, &["get"])?;
    let storage::Backend::Local(local) = &state.storage.backend else {
        return Err(refused());
    };
    let path = local.path(&grant.key).map_err(storage_error)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::new(ErrorCode::FILE_NOT_FOUND, "file not found"))?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    // Streamed in chunks: files can be far larger than a request body.
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = HttpResponse::Ok();
    response.no_chunking(len);
    if !grant.content_type.is_empty() {
        response.insert_header((header::CONTENT_TYPE, grant.content_type.clone()));
    }
    if !grant.disposition.is_empty() {
        response.insert_header((header::CONTENT_DISPOSITION, grant.disposition.clone()));
    }
    Ok(response.streaming(stream))
}
