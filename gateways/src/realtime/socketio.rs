//! The Socket.IO v4 gateway (seed page 17) on the API port.
//!
//! socketioxide is a tower/hyper service and actix-web is neither, so the
//! actix routes `/socket.io/*` and `/ws/socket.io/*` hand requests over:
//! long-polling requests are converted to `http::Request`s and called on
//! the tower service; a WebSocket upgrade is answered by actix (101 with
//! the accept key), after which the raw connection bytes are pumped through
//! an in-memory duplex pipe whose other end socketioxide serves as an
//! already-upgraded stream (its documented `(stream, request)` service).
//!
//! Auth: `handshake.auth.token` (access JWT) or the `access_token` cookie,
//! checked against the in-memory directory (revoked sessions refused);
//! otherwise the connection is refused with `invalid or expired token`.
//! A socket whose login ends later (logout, password change, user deleted)
//! is disconnected as soon as the log says so ([`sweep`]).
//! Every socket joins `user:<id>:notifications`; `join`/`leave`
//! `{projectId}` manage `project:<id>:tasks` (tasks.read, or a public
//! project) and `project:<id>:docs` (docs.read), silently nothing for
//! others.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BodyStream, MessageBody};
use actix_web::{HttpRequest, HttpResponse, web};
use commands::Commands;
use commands::directory::{Directory, ProjectAccess, Refusal, UserAccess};
use domain::permissions::project::{DOCS_READ, TASKS_READ};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, Extension, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::service::SocketIoService;
use socketioxide::socket::DisconnectReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::recovery;
use crate::AppState;

pub type Service = SocketIoService<NotFound>;

/// What socketioxide answers for paths outside its own (never reached:
/// only socket.io paths are routed to it).
#[derive(Clone, Debug)]
pub struct NotFound;

impl tower_service::Service<http::Request<Full<web::Bytes>>> for NotFound {
    type Response = http::Response<Full<web::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Full<web::Bytes>>) -> Self::Future {
        let mut response = http::Response::new(Full::new(web::Bytes::new()));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        std::future::ready(Ok(response))
    }
}

/// The path socketioxide serves; `/ws/socket.io` is rewritten to it.
pub(crate) const PATH: &str = "/socket.io";
/// Largest polling POST body read into memory (socketioxide's own
/// `max_payload` default is 100 kB).
pub(crate) const MAX_POLL_BODY: usize = 1 << 20;

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid or expired token")
    }
}

/// The authenticated user of a socket.
#[derive(Clone)]
struct Caller(UserAccess);

fn cookie_token(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == "access_token" && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// The login a socket was opened with, checked again whenever the log may
/// have revoked it (see [`sweep`]).
#[derive(Clone, Copy, Debug)]
struct Session {
    user_id: Uuid,
    family: Uuid,
}

/// The user behind an access JWT, or `None`.
pub async fn user_for_token(commands: &Commands, token: &str) -> Option<UserAccess> {
    session_for_token(commands, token)
        .await
        .map(|(user, _)| user)
}

async fn session_for_token(commands: &Commands, token: &str) -> Option<(UserAccess, Session)> {
    let claims = commands.auth.verify_access(token).ok()?;
    let session = Session {
        user_id: claims.sub,
        family: claims.sid,
    };
    let directory = &commands.directory;
    match directory.session(claims.sub, claims.sid) {
        Ok(user) => Some(user),
        Err(Refusal::UnknownUser) => {
            directory.sync().await.ok()?;
            directory.session(claims.sub, claims.sid).ok()
        }
        Err(_) => None,
    }
    .filter(|u| !u.must_change_password)
    .map(|user| (user, session))
}

/// Disconnects every socket whose login has ended since it connected
/// (logout, password change, user deleted): a socket is authenticated once,
/// at connect, so without this a revoked session kept receiving its rooms'
/// messages until the client went away.
pub fn sweep(io: &SocketIo, directory: &Directory) -> usize {
    // The namespace is gone once the hub closed (shutdown); `io.sockets()`
    // would panic on it.
    let Some(namespace) = io.of("/") else {
        return 0;
    };
    let mut closed = 0;
    for socket in namespace.sockets() {
        let Some(session) = socket.extensions.get::<Session>() else {
            continue;
        };
        if directory.session(session.user_id, session.family).is_err() {
            tracing::info!(user = %session.user_id, socket = %socket.id, "realtime: session ended, socket disconnected");
            if socket.disconnect().is_ok() {
                closed += 1;
            }
        }
    }
    closed
}

/// Can `user` read `permission` in `project_id`? Unknown projects first
/// catch the directory up with the log.
pub async fn may_read(
    directory: &Directory,
    user: &UserAccess,
    project_id: Uuid,
    permission: &str,
) -> bool {
    let mut project = directory.project(project_id, Some(user.id));
    if project.as_ref().is_none_or(|p| p.member.is_none()) && directory.sync().await.is_ok() {
        project = directory.project(project_id, Some(user.id));
    }
    project.is_some_and(|p: ProjectAccess| p.is_public || Directory::grants(user, &p, permission))
}

fn project_id_of(data: &Value) -> Option<Uuid> {
    data.get("projectId")
        .or_else(|| data.get("project_id"))
        .and_then(Value::as_str)
        .or_else(|| data.as_str())
        .and_then(|s| s.trim().parse().ok())
}

/// The handlers hold the command side weakly: socketioxide keeps its
/// namespaces (and so their closures) alive through internal reference
/// cycles after the `SocketIo` is dropped, which leaked every dropped
/// server's connection pool (seen as `too many clients` when tests build
/// one app each). The [`super::Hub`] owns the strong reference.
pub fn build(commands: &Arc<Commands>) -> (Service, SocketIo, recovery::Sessions) {
    let commands = Arc::downgrade(commands);
    let (svc, io) = SocketIo::builder()
        .req_path(PATH)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .build_with_inner_svc(NotFound);
    let sessions = recovery::Sessions::default();
    let parked = sessions.clone();
    let auth_commands = commands.clone();
    let auth_sessions = sessions.clone();
    let auth = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let commands = auth_commands.upgrade();
        let sessions = auth_sessions.clone();
        async move {
            let commands = commands.ok_or(Refused)?;
            let auth = auth.ok().unwrap_or(Value::Null);
            let field = |name: &str| auth.get(name).and_then(Value::as_str).map(str::to_owned);
            let token = field("token")
                .filter(|t| !t.is_empty())
                .or_else(|| cookie_token(&s.req_parts().headers));
            let token = token.ok_or(Refused)?;
            let (user, session) =
                session_for_token(&commands, token.trim_start_matches("Bearer ").trim())
                    .await
                    .ok_or(Refused)?;
            // Connection-state recovery: socket.io-client sends back the
            // `pid` it was given (and its last offset) when it reconnects.
            let recovering = match field("pid") {
                Some(pid) => {
                    let offset = field("offset").and_then(|o| recovery::parse_offset(&o));
                    sessions
                        .claim(&pid, user.id, offset)
                        .await
                        .map(|recovering| (pid, recovering))
                }
                None => None,
            };
            let pid = match recovering {
                Some((pid, recovering)) => {
                    s.extensions.insert(recovering);
                    pid
                }
                None => Uuid::new_v4().simple().to_string(),
            };
            s.extensions.insert(socketioxide::ConnectPid(pid));
            s.extensions.insert(Caller(user));
            s.extensions.insert(session);
            Ok::<(), Refused>(())
        }
    };
    let on_connect = move |s: SocketRef, Extension(Caller(user)): Extension<Caller>| {
        let commands = commands.clone();
        let sessions = sessions.clone();
        async move {
            let commands = commands.clone();
            s.join(format!("user:{}:notifications", user.id));
            let park_user = user.id;
            s.on_disconnect(move |s: SocketRef, reason: DisconnectReason| {
                let sessions = sessions.clone();
                async move {
                    // A deliberate disconnect (either side, a revoked
                    // session, shutdown) ends the session for good.
                    if matches!(
                        reason,
                        DisconnectReason::ClientNSDisconnect
                            | DisconnectReason::ServerNSDisconnect
                            | DisconnectReason::ClosingServer
                    ) {
                        return;
                    }
                    let (Some(pid), Some(started)) = (
                        s.extensions.get::<socketioxide::ConnectPid>(),
                        s.extensions.get::<recovery::StartedAt>(),
                    ) else {
                        return;
                    };
                    let rooms = s
                        .rooms()
                        .into_iter()
                        .map(|r| r.to_string())
                        .filter(|r| r.starts_with("project:"))
                        .collect();
                    sessions.park(pid.0, park_user, rooms, started.0).await;
                }
            });
            let join_commands = commands.clone();
            s.on(
                "join",
                move |s: SocketRef,
                      Data(data): Data<Value>,
                      ack: AckSender,
                      Extension(Caller(user)): Extension<Caller>| {
                    let commands = join_commands.upgrade();
                    async move {
                        let Some(commands) = commands else {
                            return;
                        };
                        let Some(project_id) = project_id_of(&data) else {
                            let _ = ack.send(&serde_json::json!({"tasks": false, "docs": false}));
                            return;
                        };
                        let directory = &commands.directory;
                        tracing::debug!(%project_id, user = %user.id, "realtime join");
                        let tasks = may_read(directory, &user, project_id, TASKS_READ).await;
                        if tasks {
                            s.join(format!("project:{project_id}:tasks"));
                        }
                        let docs = may_read(directory, &user, project_id, DOCS_READ).await;
                        if docs {
                            s.join(format!("project:{project_id}:docs"));
                        }
                        // Paca's clients emit without an ack; one that asks
                        // learns which rooms it got (and that it is in them).
                        let _ = ack.send(&serde_json::json!({"tasks": tasks, "docs": docs}));
                    }
                },
            );
            s.on(
                "leave",
                |s: SocketRef, Data(data): Data<Value>, ack: AckSender| async move {
                    if let Some(project_id) = project_id_of(&data) {
                        s.leave([
                            format!("project:{project_id}:tasks"),
                            format!("project:{project_id}:docs"),
                        ]);
                    }
                    let _ = ack.send(&serde_json::json!({"left": true}));
                },
            );
            // Only once the handlers are in place: a client emits `join`
            // as soon as it sees CONNECT, and an event that arrives before
            // its handler is registered is dropped.
            if let Some(strong) = commands.upgrade() {
                resume_or_start(&s, &strong, &user).await;
            }
        }
    };
    io.ns("/", on_connect.with(auth));
    (svc, io, parked)
}

/// A recovered socket gets its rooms back (permissions checked again) and
/// what it missed replayed from the log, then joins live delivery; any
/// other socket records where its session starts.
async fn resume_or_start(s: &SocketRef, commands: &Commands, user: &UserAccess) {
    let store = &commands.store;
    let Some(recovering) = s.extensions.get::<recovery::Recovering>() else {
        match recovery::head(store).await {
            Ok(head) => {
                s.extensions.insert(recovery::StartedAt(head));
            }
            Err(error) => tracing::warn!(%error, "realtime: cannot read the log head"),
        }
        return;
    };
    let directory = &commands.directory;
    let mut rooms = recovery::permitted(directory, user, &recovering.rooms).await;
    rooms.push(format!("user:{}:notifications", user.id));
    // Replay before joining (nothing live overtakes it), join, then replay
    // what committed meanwhile: an event of that moment may come twice,
    // none is missing.
    let replayed = recovery::replay(store, directory, s, &rooms, recovering.after).await;
    for room in rooms.iter().filter(|r| r.starts_with("project:")) {
        s.join(room.clone());
    }
    let (upto, sent) = match replayed {
        Ok(Some(done)) => done,
        Ok(None) => {
            tracing::info!(user = %user.id, "realtime: too far behind to recover; session restarts");
            (recovering.after, 0)
        }
        Err(error) => {
            tracing::warn!(%error, "realtime: replay failed");
            (recovering.after, 0)
        }
    };
    let tail = recovery::replay(store, directory, s, &rooms, upto)
        .await
        .ok()
        .flatten()
        .map_or(0, |(_, n)| n);
    s.extensions.insert(recovery::StartedAt(upto));
    tracing::debug!(user = %user.id, replayed = sent + tail, "realtime: session recovered");
}

/// `/socket.io/*` and `/ws/socket.io/*` (the gateway's prefix) on the API
/// port, plus `/ws/healthz`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/healthz", web::get().to(healthz))
        .route("/socket.io{tail:.*}", web::route().to(socket_io))
        .route("/ws/socket.io{tail:.*}", web::route().to(socket_io));
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let sockets = state.realtime.io.of("/").map_or(0, |ns| ns.sockets().len());
    HttpResponse::Ok().json(serde_json::json!({"status": "ok", "sockets": sockets}))
}

fn http_request(req: &HttpRequest) -> Option<http::request::Builder> {
    let path = req.path();
    let path = path
        .strip_prefix("/ws")
        .filter(|p| p.starts_with(PATH))
        .unwrap_or(path);
    let uri = match req.query_string() {
        "" => path.to_owned(),
        q => format!("{path}?{q}"),
    };
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(req.method().as_str().as_bytes()).ok()?)
        .uri(uri);
    for (name, value) in req.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    Some(builder)
}

pub(crate) fn origin(req: &HttpRequest) -> Option<&str> {
    req.headers().get("origin").and_then(|v| v.to_str().ok())
}

pub(crate) fn is_websocket(req: &HttpRequest) -> bool {
    req.headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn socket_io(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(builder) = http_request(&req) else {
        return Ok(HttpResponse::BadRequest().finish());
    };
    let mut svc = state.realtime.svc.clone();
    if is_websocket(&req) {
        if !state.cors.allows_websocket_from(origin(&req)) {
            return Ok(HttpResponse::Forbidden().finish());
        }
        let mut response = actix_http::ws::handshake(req.head())?;
        let request = builder
            .body(())
            .map_err(actix_web::error::ErrorBadRequest)?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tower_service::Service::call(&mut svc, (theirs, request))
            .await
            .map_err(|e| actix_web::error::ErrorBadRequest(format!("{e:?}")))?;
        let (read, mut write) = tokio::io::split(ours);
        // Client -> socketioxide: the connection's bytes after the
        // handshake arrive as the request payload.
        actix_web::rt::spawn(async move {
            let mut payload = payload;
            while let Some(Ok(chunk)) = payload.next().await {
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        });
        // socketioxide -> client: the response body.
        let outgoing = futures_util::stream::unfold(
            (read, vec![0u8; 16 * 1024]),
            |(mut read, mut buf)| async move {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        let chunk = web::Bytes::copy_from_slice(&buf[..n]);
                        Some((Ok::<_, std::io::Error>(chunk), (read, buf)))
                    }
                }
            },
        );
        let response = response.message_body(BodyStream::new(outgoing).boxed())?;
        return Ok(response.into());
    }

    let mut body = web::BytesMut::new();
    let mut payload = payload;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_POLL_BODY {
            return Ok(HttpResponse::PayloadTooLarge().finish());
        }
        body.extend_from_slice(&chunk);
    }
    let request = builder
        .body(Full::new(body.freeze()))
        .map_err(actix_web::error::ErrorBadRequest)?;
    let response = tower_service::Service::call(&mut svc, request)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(format!("{e:?}")))?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(format!("{e:?}")))?
        .to_bytes();
    let mut out = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(parts.status.as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (name, value) in &parts.headers {
        out.append_header((name.as_str(), value.as_bytes()));
    }
    Ok(out.body(bytes.to_vec()))
}
