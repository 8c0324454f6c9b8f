//! A stand-in for the OpenHands agent-server (../shared/AGENT-SERVER.md §1)
//! that plays scripted runs, for tests and `bench agents`: the runner drives
//! it through the same REST endpoints and WebSocket as the real server.
//!
//! The script is chosen by the first user message: `scenario:<name>`
//! anywhere in its text (default `success`):
//!
//! - `success`: messages, an action and its observation, then `finished`;
//! - `slow`: like success with 12 steps 700 ms apart (for kill tests);
//! - `error`: a `ConversationErrorEvent` then `error`;
//! - `stuck`: ends `stuck`;
//! - `hang`: runs forever, and pause/interrupt/delete requests never answer;
//! - `wsdrop`: closes every WebSocket after the first event and refuses new
//!   ones (the runner must finish over REST);
//! - `dup`: every WebSocket frame is sent twice.
//!
//! Event ids are derived from the conversation id and the step, so a re-run
//! of the same conversation (a runner that crashed and was replaced) plays
//! the same ids, as a resumed agent-server conversation would.
//!
//! Plain HTTP/1.1 (one request per connection) on tokio, WebSocket through
//! tungstenite: no web framework, so the binary stays small enough to pack
//! into an image with its shared libraries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, frame::coding::CloseCode};
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Frame {
    Event(Value),
    Drop,
}

struct Conv {
    uuid: Uuid,
    status: String,
    script: Option<String>,
    events: Vec<Value>,
    agent: Value,
    user_messages: usize,
    frames: broadcast::Sender<Frame>,
    run: Option<tokio::task::JoinHandle<()>>,
    ws_refused: bool,
}

struct State {
    key: Option<String>,
    ready_at: Instant,
    convs: Mutex<HashMap<String, Conv>>,
}

type Shared = Arc<State>;

fn now() -> String {
    // RFC 3339 without a date crate: seconds since the epoch are enough for
    // ordering in tests, rendered in the SDK's ISO shape.
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let bind = std::env::var("BIND").unwrap_or_else(|_| "0.0.0.0".into());
    let ready_delay = std::env::var("STANDIN_READY_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let key = std::env::var("OH_SESSION_API_KEYS_0")
        .ok()
        .or_else(|| std::env::var("SESSION_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let state = Arc::new(State {
        key,
        ready_at: Instant::now() + Duration::from_millis(ready_delay),
        convs: Mutex::new(HashMap::new()),
    });
    let listener = TcpListener::bind((bind.as_str(), port))
        .await
        .expect("bind the stand-in agent-server");
    eprintln!("stand-in agent-server on {bind}:{port}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = connection(state, stream).await;
        });
    }
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let query = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    }))
}

async fn respond(stream: &mut TcpStream, status: u16, body: Value) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn connection(state: Shared, mut stream: TcpStream) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    if let Some(id) = request.path.strip_prefix("/sockets/events/") {
        return websocket(state, stream, id.to_owned(), request).await;
    }
    let (status, body) = route(&state, &request).await;
    respond(&mut stream, status, body).await
}

fn info(id: &str, conv: &Conv) -> Value {
    json!({"id": id, "execution_status": conv.status, "agent": conv.agent})
}

fn is_hang(state: &Shared, id: &str) -> bool {
    let convs = state.convs.lock().unwrap();
    convs
        .get(id)
        .is_some_and(|c| c.script.as_deref() == Some("hang"))
}

async fn route(state: &Shared, req: &Request) -> (u16, Value) {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["health"]) | ("GET", ["alive"]) => return (200, json!({"status": "ok"})),
        ("GET", ["ready"]) => {
            return if Instant::now() >= state.ready_at {
                (200, json!({"status": "ready"}))
            } else {
                (503, json!({"status": "not ready"}))
            };
        }
        _ => {}
    }
    if segments.first() != Some(&"api") {
        return (404, json!({"detail": "Not Found"}));
    }
    if let Some(key) = &state.key
        && req.headers.get("x-session-api-key") != Some(key)
    {
        return (401, json!({"detail": "Unauthorized"}));
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    match (req.method.as_str(), &segments[1..]) {
        ("POST", ["conversations"]) => create(state, &body),
        ("GET", ["conversations", id]) => {
            let convs = state.convs.lock().unwrap();
            match convs.get(*id) {
                Some(c) => (200, info(id, c)),
                None => (404, json!({"detail": "Not Found"})),
            }
        }
        ("DELETE", ["conversations", id]) => {
            if is_hang(state, id) {
                std::future::pending::<()>().await;
            }
            let removed = state.convs.lock().unwrap().remove(*id);
            if let Some(conv) = removed
                && let Some(run) = conv.run
            {
                run.abort();
            }
            (200, json!({"success": true}))
        }
        ("POST", ["conversations", id, "events"]) => message(state, id, &body),
        ("POST", ["conversations", id, "run"]) => run(state, id),
        ("POST", ["conversations", id, action @ ("pause" | "interrupt")]) => {
            if is_hang(state, id) {
                std::future::pending::<()>().await;
            }
            let mut convs = state.convs.lock().unwrap();
            let Some(conv) = convs.get_mut(*id) else {
                return (404, json!({"detail": "Not Found"}));
            };
            if let Some(run) = conv.run.take() {
                run.abort();
            }
            let kind = if *action == "pause" {
                "PauseEvent"
            } else {
                "InterruptEvent"
            };
            let n = conv.events.len();
            let event = json!({"id": Uuid::new_v5(&conv.uuid, format!("{kind}-{n}").as_bytes()).to_string(),
                "timestamp": now(), "source": "user", "kind": kind});
            conv.events.push(event.clone());
            let _ = conv.frames.send(Frame::Event(event));
            conv.status = "paused".into();
            let _ = conv.frames.send(Frame::Event(state_update(
                "full_state",
                json!({"execution_status": "paused"}),
            )));
            (200, json!({"success": true}))
        }
        ("GET", ["conversations", id, "events", "search"]) => search(state, id, &req.query),
        _ => (404, json!({"detail": "Not Found"})),
    }
}

fn create(state: &Shared, body: &Value) -> (u16, Value) {
    let id = body
        .get("conversation_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let mut convs = state.convs.lock().unwrap();
    if let Some(conv) = convs.get(&id) {
        return (200, info(&id, conv));
    }
    if body.get("agent").and_then(|a| a.get("llm")).is_none() {
        return (400, json!({"detail": "agent.llm is required"}));
    }
    let uuid = id
        .parse()
        .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, id.as_bytes()));
    // Secrets are masked in what the server shows, like the real one.
    let mut agent = body["agent"].clone();
    if agent["llm"].get("api_key").is_some() {
        agent["llm"]["api_key"] = json!("**********");
    }
    let (frames, _) = broadcast::channel(1024);
    let mut conv = Conv {
        uuid,
        status: "idle".into(),
        script: None,
        events: vec![],
        agent,
        user_messages: 0,
        frames,
        run: None,
        ws_refused: false,
    };
    conv.events.push(json!({
        "id": Uuid::new_v5(&uuid, b"system-prompt").to_string(), "timestamp": now(),
        "source": "agent", "kind": "SystemPromptEvent",
        "system_prompt": {"type": "text", "text": "You are a stand-in."}, "tools": []
    }));
    let reply = info(&id, &conv);
    convs.insert(id, conv);
    (201, reply)
}

fn message(state: &Shared, id: &str, body: &Value) -> (u16, Value) {
    let text: String = body["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    {
        let mut convs = state.convs.lock().unwrap();
        let Some(conv) = convs.get_mut(id) else {
            return (404, json!({"detail": "Not Found"}));
        };
        if conv.script.is_none() {
            let script = text
                .split("scenario:")
                .nth(1)
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect::<String>()
                })
                .unwrap_or_else(|| "success".into());
            conv.script = Some(script);
        }
        let n = conv.user_messages;
        conv.user_messages += 1;
        let event = json!({
            "id": Uuid::new_v5(&conv.uuid, format!("user-{n}").as_bytes()).to_string(),
            "timestamp": now(), "source": "user", "kind": "MessageEvent",
            "llm_message": {"role": "user", "content": [{"type": "text", "text": text}]},
            "activated_skills": [], "extended_content": []
        });
        conv.events.push(event.clone());
        let _ = conv.frames.send(Frame::Event(event));
    }
    if body["run"].as_bool() == Some(true) {
        let _ = run(state, id);
    }
    (200, json!({"success": true}))
}

fn state_update(key: &str, value: Value) -> Value {
    json!({"id": Uuid::new_v4().to_string(), "timestamp": now(), "source": "environment",
        "kind": "ConversationStateUpdateEvent", "key": key, "value": value})
}

fn run(state: &Shared, id: &str) -> (u16, Value) {
    let mut convs = state.convs.lock().unwrap();
    let Some(conv) = convs.get_mut(id) else {
        return (404, json!({"detail": "Not Found"}));
    };
    if conv.status == "running" {
        return (409, json!({"detail": "already running"}));
    }
    conv.status = "running".into();
    let _ = conv.frames.send(Frame::Event(state_update(
        "execution_status",
        json!("running"),
    )));
    let state2 = state.clone();
    let id2 = id.to_owned();
    let script = conv.script.clone().unwrap_or_else(|| "success".into());
    conv.run = Some(tokio::spawn(async move {
        play(state2, id2, script).await;
    }));
    (200, json!({"success": true}))
}

fn step_event(uuid: &Uuid, n: usize, kind: &str, extra: Value) -> Value {
    let mut event = json!({
        "id": Uuid::new_v5(uuid, format!("step-{n}").as_bytes()).to_string(),
        "timestamp": now(), "kind": kind,
    });
    if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            e.insert(k.clone(), v.clone());
        }
    }
    event
}

fn agent_message(text: &str) -> Value {
    json!({"source": "agent", "llm_message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
        "activated_skills": [], "extended_content": []})
}

/// Emits one event: stored (unless WebSocket-only) and pushed.
fn emit(state: &Shared, id: &str, event: Value, stored: bool) -> bool {
    let mut convs = state.convs.lock().unwrap();
    let Some(conv) = convs.get_mut(id) else {
        return false;
    };
    if stored {
        conv.events.push(event.clone());
    }
    let twice = conv.script.as_deref() == Some("dup");
    let _ = conv.frames.send(Frame::Event(event.clone()));
    if twice {
        let _ = conv.frames.send(Frame::Event(event));
    }
    true
}

fn finish(state: &Shared, id: &str, status: &str) {
    let mut convs = state.convs.lock().unwrap();
    if let Some(conv) = convs.get_mut(id) {
        conv.status = status.into();
        let _ = conv.frames.send(Frame::Event(state_update(
            "execution_status",
            json!(status),
        )));
        let _ = conv.frames.send(Frame::Event(state_update(
            "full_state",
            json!({"execution_status": status, "id": id}),
        )));
    }
}

async fn play(state: Shared, id: String, script: String) {
    let Some(uuid) = state.convs.lock().unwrap().get(&id).map(|c| c.uuid) else {
        return;
    };
    let step_ms = if script == "slow" { 700 } else { 80 };
    let pause = || tokio::time::sleep(Duration::from_millis(step_ms));
    let mut n = 0usize;
    let mut next = |kind: &str, extra: Value| {
        let e = step_event(&uuid, n, kind, extra);
        n += 1;
        e
    };
    let steps = if script == "slow" { 5 } else { 1 };
    emit(
        &state,
        &id,
        next("MessageEvent", agent_message("Let me look at the task.")),
        true,
    );
    pause().await;
    if script == "wsdrop" {
        let mut convs = state.convs.lock().unwrap();
        if let Some(conv) = convs.get_mut(&id) {
            conv.ws_refused = true;
            let _ = conv.frames.send(Frame::Drop);
        }
    }
    if script == "hang" {
        std::future::pending::<()>().await;
    }
    for i in 0..steps {
        let call = format!("call_{i}");
        let action = next(
            "ActionEvent",
            json!({"source": "agent", "thought": [{"type": "text", "text": "list files"}],
                "action": {"kind": "TerminalAction", "command": "ls"}, "tool_name": "terminal",
                "tool_call_id": call, "tool_call": {"id": call, "name": "terminal", "arguments": "{\"command\":\"ls\"}"},
                "llm_response_id": "resp", "security_risk": "LOW"}),
        );
        let action_id = action["id"].clone();
        emit(&state, &id, action, true);
        // WebSocket-only, never persisted by the runner.
        emit(
            &state,
            &id,
            json!({"id": Uuid::new_v4().to_string(), "timestamp": now(), "source": "agent",
                "kind": "StreamingDeltaEvent", "content": "l"}),
            false,
        );
        pause().await;
        emit(
            &state,
            &id,
            next(
                "ObservationEvent",
                json!({"source": "environment", "tool_name": "terminal", "tool_call_id": call,
                    "observation": {"kind": "TerminalObservation", "content": [{"type": "text", "text": "README.md"}], "exit_code": 0},
                    "action_id": action_id}),
            ),
            true,
        );
        pause().await;
    }
    match script.as_str() {
        "error" => {
            emit(
                &state,
                &id,
                next(
                    "ConversationErrorEvent",
                    json!({"source": "environment", "code": "LLMBadRequestError", "detail": "scripted failure"}),
                ),
                true,
            );
            finish(&state, &id, "error");
        }
        "stuck" => finish(&state, &id, "stuck"),
        _ => {
            emit(
                &state,
                &id,
                next("MessageEvent", agent_message("Done: the task is complete.")),
                true,
            );
            pause().await;
            finish(&state, &id, "finished");
        }
    }
}

fn search(state: &Shared, id: &str, query: &HashMap<String, String>) -> (u16, Value) {
    let convs = state.convs.lock().unwrap();
    let Some(conv) = convs.get(id) else {
        return (404, json!({"detail": "Not Found"}));
    };
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let start: usize = query
        .get("page_id")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut events: Vec<&Value> = conv.events.iter().collect();
    if let Some(kind) = query.get("kind") {
        events.retain(|e| e["kind"].as_str() == Some(kind));
    }
    if query
        .get("sort_order")
        .is_some_and(|s| s.eq_ignore_ascii_case("TIMESTAMP_DESC"))
    {
        events.reverse();
    }
    let items: Vec<Value> = events
        .iter()
        .skip(start)
        .take(limit)
        .cloned()
        .cloned()
        .collect();
    let next = (start + limit < events.len()).then(|| (start + limit).to_string());
    (200, json!({"items": items, "next_page_id": next}))
}

async fn websocket(
    state: Shared,
    mut stream: TcpStream,
    id: String,
    request: Request,
) -> std::io::Result<()> {
    let Some(key) = request.headers.get("sec-websocket-key") else {
        return respond(&mut stream, 400, json!({"detail": "not a websocket"})).await;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    stream
        .write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        }))
    };
    // The auth frame comes first, within 10 s.
    if let Some(expected) = state.key.clone() {
        let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let ok = match first {
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                v["type"] == "auth" && v["session_api_key"].as_str() == Some(expected.as_str())
            }
            _ => false,
        };
        if !ok {
            let _ = ws.send(close(4001, "authentication failed")).await;
            return Ok(());
        }
    }
    // Decided under the lock, answered after it (no guard across an await).
    type Accepted = (Vec<Value>, broadcast::Receiver<Frame>, String);
    let decided: Result<Accepted, (u16, &str)> = {
        let convs = state.convs.lock().unwrap();
        match convs.get(&id) {
            None => Err((4004, "conversation not found")),
            Some(conv) if conv.ws_refused => Err((1011, "scripted drop")),
            Some(conv) => {
                let resend = request.query.get("resend_mode").map(String::as_str) == Some("all");
                Ok((
                    if resend { conv.events.clone() } else { vec![] },
                    conv.frames.subscribe(),
                    conv.status.clone(),
                ))
            }
        }
    };
    let (backlog, mut frames, status) = match decided {
        Ok(v) => v,
        Err((code, reason)) => {
            let _ = ws.send(close(code, reason)).await;
            return Ok(());
        }
    };
    let first = state_update("full_state", json!({"execution_status": status, "id": id}));
    if ws.send(Message::text(first.to_string())).await.is_err() {
        return Ok(());
    }
    for event in backlog {
        if ws.send(Message::text(event.to_string())).await.is_err() {
            return Ok(());
        }
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(Frame::Event(event)) => {
                    if ws.send(Message::text(event.to_string())).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(Frame::Drop) => {
                    let _ = ws.send(close(1011, "scripted drop")).await;
                    return Ok(());
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = ws.send(close(1000, "deleted")).await;
                    return Ok(());
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                _ => {}
            },
        }
    }
}
