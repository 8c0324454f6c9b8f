//! `HandleEvent` delivery: one checkpointed subscription per enabled plugin
//! (`plugin:<name>` in `checkpoints`, so its lag shows in
//! `paca projections status`). At least once, in log order, retried with
//! backoff while the plugin fails; a new subscription starts at the head
//! of the log (a freshly installed plugin is not replayed the history).

use std::sync::{Arc, Weak};

use domain::plugin::{ACTIVITY_STREAM_TYPE, activity_stream_id};
use eventstore::subscription::HandlerError;
use eventstore::{RecordedEvent, Subscription, SubscriptionHandler};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use tokio::sync::watch;

use crate::host::CallContext;
use crate::{LoadedPlugin, PluginHost, runtime};

pub fn subscription_name(plugin: &str) -> String {
    format!("plugin:{plugin}")
}

struct Delivery {
    host: Weak<PluginHost>,
    name: String,
}

/// Whether `event` goes to `plugin`: its type is one of the manifest's
/// `eventSubscriptions`, and it is not the plugin's own emitted event.
pub fn deliverable(plugin: &LoadedPlugin, event: &RecordedEvent) -> bool {
    if !plugin.manifest.subscribes(&event.event_type) {
        return false;
    }
    !(event.stream_type == ACTIVITY_STREAM_TYPE
        && event.stream_id == activity_stream_id(&plugin.name))
}

/// The payload a plugin receives: the event's fields plus the ids Paca's
/// payloads carry (`task_id` for task events, `project_id`, …). Events
/// another plugin emitted arrive as Paca publishes them:
/// `{type, source, payload}`.
pub fn payload_for(event: &RecordedEvent) -> Value {
    if event.stream_type == ACTIVITY_STREAM_TYPE {
        let mut out = Map::new();
        out.insert("type".into(), Value::String(event.event_type.clone()));
        out.insert(
            "source".into(),
            event.payload.get("source").cloned().unwrap_or(Value::Null),
        );
        out.insert(
            "payload".into(),
            event
                .payload
                .get("payload")
                .cloned()
                .unwrap_or(event.payload.clone()),
        );
        return Value::Object(out);
    }
    let mut out = match &event.payload {
        Value::Object(map) => map.clone(),
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other.clone());
            m
        }
    };
    out.entry(format!("{}_id", event.stream_type))
        .or_insert_with(|| Value::String(event.stream_id.to_string()));
    if let Some(project_id) = event.project_id {
        out.entry("project_id")
            .or_insert_with(|| Value::String(project_id.to_string()));
    }
    out.entry("event_id")
        .or_insert_with(|| Value::String(event.event_id.to_string()));
    out.entry("occurred_at")
        .or_insert_with(|| Value::String(event.recorded_at.to_rfc3339()));
    Value::Object(out)
}

#[async_trait::async_trait]
impl SubscriptionHandler for Delivery {
    /// Calls the plugin; its host calls write through commands of their own.
    fn transactional(&self) -> bool {
        false
    }

    async fn handle(
        &self,
        _tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let host = self.host.upgrade().ok_or("plugin host stopped")?;
        let plugin = host
            .plugin(&self.name)
            .ok_or_else(|| format!("plugin {} is not loaded", self.name))?;
        let Some(instances) = &plugin.instances else {
            return Ok(());
        };
        for event in events {
            if !deliverable(&plugin, event) {
                continue;
            }
            let topic = event.event_type.clone();
            let payload = serde_json::to_vec(&payload_for(event))?;
            let ctx = CallContext {
                deadline: runtime::deadline(instances.limits()),
                request: None,
                event_id: Some(event.event_id),
            };
            instances
                .call(move |slot, limits| slot.handle_event(&topic, &payload, ctx, limits))
                .await
                .map_err(|e| format!("HandleEvent({}) of {}: {e}", event.event_type, self.name))?;
        }
        Ok(())
    }
}

/// Starts the delivery of `name`, at the log's head when it never ran.
pub async fn start(host: &Arc<PluginHost>, name: &str) {
    let sub_name = subscription_name(name);
    let store = host.store().clone();
    match store.head().await {
        Ok((head, _)) => {
            let inserted = sqlx::query(
                "INSERT INTO checkpoints (name, last_tx, last_pos) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&sub_name)
            .bind(head.tx_id)
            .bind(head.position)
            .execute(store.pool())
            .await;
            if let Err(error) = inserted {
                tracing::error!(plugin = %name, %error, "cannot create the delivery checkpoint");
                return;
            }
        }
        Err(error) => {
            tracing::error!(plugin = %name, %error, "cannot read the log head");
            return;
        }
    }
    let (stop, stopped) = watch::channel(false);
    host.register_delivery(name, stop);
    let subscription = Subscription::new(
        sub_name,
        store,
        Delivery {
            host: Arc::downgrade(host),
            name: name.to_owned(),
        },
    )
    .batch_size(100)
    .poll_interval(std::time::Duration::from_millis(500));
    let plugin = name.to_owned();
    tokio::spawn(async move {
        if let Err(error) = subscription.run(stopped).await {
            tracing::error!(plugin = %plugin, %error, "event delivery stopped");
        }
    });
}
