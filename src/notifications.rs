//! Wiring of the notifications subscription into `paca serve`.

use std::time::Duration;

use anyhow::{Context, Result};
use commands::Commands;
use commands::notifications::{NotificationHandler, SUBSCRIPTION, stream_types};
use eventstore::{EventStore, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Notifications {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Notifications {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// A fresh subscription starts at the log's current head: an upgrade
/// notifies users of what happens from now on, not of every assignment in
/// history. Afterwards the checkpoint carries it across restarts.
async fn init_checkpoint(store: &EventStore) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (name, last_tx, last_pos)
         SELECT $1, COALESCE(MAX(tx_id::text::bigint), 0), COALESCE(MAX(global_position), 0)
         FROM (SELECT tx_id, global_position FROM events
               WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
               ORDER BY tx_id DESC, global_position DESC LIMIT 1) head
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(SUBSCRIPTION)
    .execute(store.pool())
    .await
    .context("initialising the notifications checkpoint")?;
    Ok(())
}

pub async fn start(store: &EventStore, commands: &Commands) -> Result<Notifications> {
    init_checkpoint(store).await?;
    let (shutdown, watcher) = watch::channel(false);
    let subscription = Subscription::new(
        SUBSCRIPTION,
        store.clone(),
        NotificationHandler::new(commands.clone()),
    )
    .stream_types(stream_types())
    // Under a burst of writes, batches of ~20 ms instead of a read and a
    // transaction per commit; an isolated event is still handled at once.
    .coalesce(std::time::Duration::from_millis(20));
    let task = tokio::spawn(async move {
        if let Err(error) = subscription.run(watcher).await {
            tracing::error!(%error, "notifications subscription stopped");
        }
    });
    Ok(Notifications { shutdown, task })
}
