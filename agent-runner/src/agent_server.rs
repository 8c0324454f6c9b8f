//! A client of the OpenHands agent-server (../shared/AGENT-SERVER.md §1):
//! REST with the session key, and the event WebSocket (auth frame first).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent-server request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("agent-server answered {status} to {what}")]
    Status { what: &'static str, status: u16 },
    #[error("agent-server websocket: {0}")]
    Ws(String),
    #[error("{0}")]
    Timeout(String),
}

#[derive(Clone)]
pub struct AgentServer {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// Kinds never stored (Paca's skip list): WebSocket-only deltas, state
/// updates, the system prompt, and conversation errors (which become the
/// conversation's `error_message` instead).
pub const SKIPPED_KINDS: &[&str] = &[
    "StreamingDeltaEvent",
    "ConversationStateUpdateEvent",
    "SystemPromptEvent",
    "ConversationErrorEvent",
];

impl AgentServer {
    pub fn new(base: String, key: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { base, key, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls `/ready` (then `/health` for servers without it) until it
    /// answers 200 or `deadline` passes.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<Duration, ClientError> {
        let started = Instant::now();
        loop {
            for path in ["/ready", "/health"] {
                if let Ok(response) = self
                    .http
                    .get(self.url(path))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    if response.status().is_success() {
                        return Ok(started.elapsed());
                    }
                    if response.status().as_u16() == 503 {
                        break; // /ready exists but is not ready yet
                    }
                }
            }
            if started.elapsed() >= deadline {
                return Err(ClientError::Timeout(format!(
                    "the sandbox was not ready within {} s",
                    deadline.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn call(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
        ok: &[u16],
    ) -> Result<Value, ClientError> {
        let response = request
            .header("X-Session-API-Key", &self.key)
            .send()
            .await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) && !ok.contains(&status) {
            return Err(ClientError::Status { what, status });
        }
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    pub async fn create(&self, payload: &Value) -> Result<Value, ClientError> {
        self.call(
            "create conversation",
            self.http.post(self.url("/api/conversations")).json(payload),
            &[],
        )
        .await
    }

    pub async fn status(&self, id: &str) -> Result<String, ClientError> {
        let info = self
            .call(
                "get conversation",
                self.http.get(self.url(&format!("/api/conversations/{id}"))),
                &[],
            )
            .await?;
        Ok(info["execution_status"].as_str().unwrap_or("").to_owned())
    }

    pub async fn send_message(&self, id: &str, text: &str) -> Result<(), ClientError> {
        let body =
            json!({"role": "user", "content": [{"type": "text", "text": text}], "run": false});
        self.call(
            "send message",
            self.http
                .post(self.url(&format!("/api/conversations/{id}/events")))
                .json(&body),
            &[],
        )
        .await
        .map(|_| ())
    }

    /// 409 (already running) is fine.
    pub async fn run(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            "run",
            self.http
                .post(self.url(&format!("/api/conversations/{id}/run"))),
            &[409],
        )
        .await
        .map(|_| ())
    }

    pub async fn interrupt(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            "interrupt",
            self.http
                .post(self.url(&format!("/api/conversations/{id}/interrupt")))
                .timeout(Duration::from_secs(5)),
            &[],
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            "delete",
            self.http
                .delete(self.url(&format!("/api/conversations/{id}")))
                .timeout(Duration::from_secs(5)),
            &[404],
        )
        .await
        .map(|_| ())
    }

    /// Every event, oldest first, through `events/search` pages.
    pub async fn all_events(&self, id: &str) -> Result<Vec<Value>, ClientError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..1000 {
            let mut query = vec![
                ("limit", "100".to_owned()),
                ("sort_order", "TIMESTAMP".to_owned()),
            ];
            if let Some(p) = &page {
                query.push(("page_id", p.clone()));
            }
            let reply = self
                .call(
                    "search events",
                    self.http
                        .get(self.url(&format!("/api/conversations/{id}/events/search")))
                        .query(&query),
                    &[],
                )
                .await?;
            if let Some(items) = reply["items"].as_array() {
                out.extend(items.iter().cloned());
            }
            match reply["next_page_id"].as_str() {
                Some(next) if !next.is_empty() => page = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Opens the event WebSocket (every event resent) and authenticates.
    pub async fn socket(&self, id: &str) -> Result<Socket, ClientError> {
        let ws_base = self.base.replacen("http://", "ws://", 1);
        let url = format!("{ws_base}/sockets/events/{id}?resend_mode=all");
        let (mut socket, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .map_err(|_| ClientError::Ws("connect timed out".into()))?
        .map_err(|e| ClientError::Ws(e.to_string()))?;
        let auth = json!({"type": "auth", "session_api_key": self.key}).to_string();
        socket
            .send(Message::text(auth))
            .await
            .map_err(|e| ClientError::Ws(e.to_string()))?;
        Ok(socket)
    }
}

/// The next event from a socket: `None` when it closed or failed.
pub async fn next_event(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => {
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    return Some(value);
                }
            }
            Ok(Message::Binary(bytes)) => {
                if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                    return Some(value);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
