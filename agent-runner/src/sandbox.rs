//! One Docker container per conversation, through the Docker API (bollard):
//! labelled `paca.conversation_id` / `paca.managed=true`, reachable through a
//! host port from the pool, with a random per-container session key.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use uuid::Uuid;

pub const LABEL_CONVERSATION: &str = "paca.conversation_id";
pub const LABEL_MANAGED: &str = "paca.managed";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("{0}")]
    Other(String),
}

/// Where the Docker API is: `DOCKER_HOST` (unix://, tcp://, http://), else
/// `DOCKER_SOCKET` (a path), else nothing.
pub fn docker_endpoint() -> Option<String> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    var("DOCKER_HOST").or_else(|| {
        var("DOCKER_SOCKET").map(|s| {
            if s.contains("://") {
                s
            } else {
                format!("unix://{s}")
            }
        })
    })
}

pub fn connect(endpoint: &str) -> Result<Docker, SandboxError> {
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)?
    } else {
        let url = endpoint.replacen("tcp://", "http://", 1);
        Docker::connect_with_http(&url, 120, bollard::API_DEFAULT_VERSION)?
    };
    Ok(docker)
}

/// Host ports handed to sandboxes (`PORT_POOL_START`, `PORT_POOL_SIZE`).
#[derive(Clone)]
pub struct PortPool {
    start: u16,
    size: u16,
    used: Arc<Mutex<BTreeSet<u16>>>,
}

impl PortPool {
    pub fn new(start: u16, size: u16) -> Self {
        Self {
            start,
            size: size.max(1),
            used: Default::default(),
        }
    }

    /// A free port: not handed out by this runner, and bindable now (another
    /// runner's container or process may hold it).
    pub fn take(&self) -> Option<u16> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        for offset in 0..self.size {
            let port = self.start.saturating_add(offset);
            if used.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            used.insert(port);
            return Some(port);
        }
        None
    }

    pub fn give_back(&self, port: u16) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&port);
    }
}

pub struct SandboxSpec {
    pub conversation_id: Uuid,
    pub image: String,
    pub port: u16,
    pub session_key: String,
    pub env: Vec<(String, String)>,
}

pub fn container_name(conversation_id: Uuid) -> String {
    format!("paca-conversation-{conversation_id}")
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// Creates and starts the conversation's container; a container of the
/// same conversation left by a dead runner is removed first.
pub async fn start(docker: &Docker, spec: &SandboxSpec) -> Result<String, SandboxError> {
    let name = container_name(spec.conversation_id);
    let mut env = vec![
        format!("OH_SESSION_API_KEYS_0={}", spec.session_key),
        format!("OH_SECRET_KEY={}", random_hex(32)),
        "OPENHANDS_SUPPRESS_BANNER=1".to_owned(),
        "PORT=8000".to_owned(),
    ];
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let labels = HashMap::from([
        (
            LABEL_CONVERSATION.to_owned(),
            spec.conversation_id.to_string(),
        ),
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
    ]);
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(vec!["8000/tcp".to_owned()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8000/tcp".to_owned(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(spec.port.to_string()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    // A container of this conversation left by a runner that died (Podman
    // answers a name conflict with 500, Docker with 409: remove first).
    remove(docker, &name).await;
    let created = docker.create_container(Some(options), body).await?;
    if let Err(error) = docker.start_container(&created.id, None).await {
        remove(docker, &created.id).await;
        return Err(error.into());
    }
    Ok(created.id)
}

/// Stops (short grace) and removes a container, bounded in time whatever
/// the container or the engine does.
pub async fn stop_and_remove(docker: &Docker, id: &str, grace: Duration) {
    let stop = StopContainerOptionsBuilder::default()
        .t(grace.as_secs() as i32)
        .build();
    let _ = tokio::time::timeout(
        grace + Duration::from_secs(5),
        docker.stop_container(id, Some(stop)),
    )
    .await;
    remove(docker, id).await;
}

pub async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match tokio::time::timeout(
        Duration::from_secs(30),
        docker.remove_container(id, Some(options)),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        })) => {}
        Ok(Err(error)) => tracing::warn!(container = %id, %error, "cannot remove a sandbox"),
        Err(_) => tracing::warn!(container = %id, "removing a sandbox timed out"),
    }
}

/// Managed containers: (container id, conversation id label).
pub async fn managed(docker: &Docker) -> Result<Vec<(String, Option<Uuid>)>, SandboxError> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_MANAGED}=true")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.list_containers(Some(options)).await?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let id = c.id?;
            let conversation = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CONVERSATION))
                .and_then(|v| v.parse().ok());
            Some((id, conversation))
        })
        .collect())
}
