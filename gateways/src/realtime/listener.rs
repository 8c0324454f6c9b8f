//! A listener of its own for Socket.IO (`REALTIME_PORT`), like Paca's
//! separate realtime service (seed page 04: the gateway sends `/ws/` to
//! it).
//!
//! On the API port, Socket.IO goes through actix, which speaks neither
//! tower nor hyper: every WebSocket frame crosses an in-memory pipe and two
//! extra tasks each way (see [`super::socketio`]). Here hyper serves
//! socketioxide directly, so a frame goes from socketioxide's encoder to
//! the socket. That is what a fan-out to a thousand sockets spends its
//! time on (docs/realtime.md has the figures).
//!
//! Same service, same rooms, same auth and recovery as the API port's
//! `/ws/socket.io`: both ports can serve at once. Paths: `/socket.io/` and
//! `/ws/socket.io/` (the gateway keeps the prefix), `/healthz` and
//! `/ws/healthz`. Origins are checked against `CORS_ORIGINS` like the API
//! port does, with CORS headers on polling responses.

use std::convert::Infallible;
use std::sync::Arc;

use actix_web::web::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::socketio::{MAX_POLL_BODY, PATH, Service};
use crate::edge::Cors;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Serves Socket.IO on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    svc: Service,
    cors: Cors,
    sockets: impl Fn() -> usize + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let sockets: Arc<dyn Fn() -> usize + Send + Sync> = Arc::new(sockets);
    let cors = Arc::new(cors);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, usually: back off, keep serving.
                    tracing::warn!(%error, "realtime listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        let cors = cors.clone();
        let sockets = sockets.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                handle(req, svc.clone(), cors.clone(), sockets.clone())
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "realtime connection ended");
                    }
                }
                _ = stop.changed() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

async fn handle(
    req: Request<Incoming>,
    mut svc: Service,
    cors: Arc<Cors>,
    sockets: Arc<dyn Fn() -> usize + Send + Sync>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/ws/healthz") {
        let body = serde_json::json!({"status": "ok", "sockets": sockets()}).to_string();
        let mut response = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    let rest = path.strip_prefix("/ws").unwrap_or(&path);
    if !rest.starts_with(PATH) {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !cors.allows_websocket_from(origin.as_deref()) {
        return Ok(plain(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    if req.method() == Method::OPTIONS {
        let mut response = plain(StatusCode::NO_CONTENT, "");
        allow(&mut response, origin.as_deref());
        return Ok(response);
    }

    // socketioxide serves `/socket.io`: drop the gateway's prefix.
    let (mut parts, body) = req.into_parts();
    if rest.len() != path.len() {
        let rewritten = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        match rewritten.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "bad path")),
        }
    }
    // Polling bodies are small frames; a WebSocket upgrade has none (its
    // bytes come through hyper's upgrade, which the extensions carry).
    let bytes = match Limited::new(body, MAX_POLL_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let request = Request::from_parts(parts, Full::new(bytes));
    let response = match tower_service::Service::call(&mut svc, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let mut response = response.map(|body| {
        body.map_err(|e| std::io::Error::other(format!("{e:?}")))
            .boxed_unsync()
    });
    allow(&mut response, origin.as_deref());
    Ok(response)
}

/// CORS for a browser's polling requests from an allowed origin.
fn allow(response: &mut Response<Body>, origin: Option<&str>) {
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}
