//! The runner's intake from `paca:agent:triggers` (group `ai-agent-workers`,
//! consumer `worker-<hostname>`), crash-safe unlike Paca's worker:
//!
//! - entries another consumer has held longer than `claim_idle` (it died
//!   mid-conversation) are taken over with `XAUTOCLAIM` before new ones are
//!   read;
//! - an entry is `XACK`ed only when the caller says its conversation is
//!   settled, so a runner killed at any point loses no trigger.

use std::collections::BTreeMap;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value as RValue};

use crate::bus::{BusError, Delivery, ensure_group};

pub struct Intake {
    client: Client,
    stream: String,
    group: String,
    consumer: String,
    claim_idle: Duration,
}

/// `worker-<hostname>` (Paca's consumer name).
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("worker-{host}")
}

fn text(value: &RValue) -> Option<String> {
    value.as_string()
}

/// `[[id, [k, v, k, v, …]], …]` -> deliveries (entries deleted meanwhile
/// come back with nil fields and are skipped).
fn entries(value: RValue) -> Vec<Delivery> {
    value
        .into_array()
        .into_iter()
        .filter_map(|entry| {
            let mut parts = entry.into_array().into_iter();
            let id = text(&parts.next()?)?;
            let flat = parts.next()?.into_array();
            if flat.is_empty() {
                return None;
            }
            let mut fields = BTreeMap::new();
            for pair in flat.chunks(2) {
                if let [k, v] = pair {
                    fields.insert(text(k)?, text(v).unwrap_or_default());
                }
            }
            Some(Delivery { id, fields })
        })
        .collect()
}

impl Intake {
    /// `client` must be dedicated to the intake: `XREADGROUP … BLOCK` holds
    /// its connection.
    pub async fn new(
        client: Client,
        stream: &str,
        group: &str,
        consumer: String,
        claim_idle: Duration,
    ) -> Result<Self, BusError> {
        ensure_group(&client, stream, group).await?;
        Ok(Self {
            client,
            stream: stream.into(),
            group: group.into(),
            consumer,
            claim_idle,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Entries idle in other consumers' pending lists for `claim_idle`.
    pub async fn reclaim(&self, count: usize) -> Result<Vec<Delivery>, BusError> {
        let idle = self.claim_idle.as_millis().to_string();
        let count = count.max(1).to_string();
        let reply: RValue = self
            .client
            .custom(
                CustomCommand::new_static("XAUTOCLAIM", ClusterHash::FirstKey, false),
                vec![
                    self.stream.as_str(),
                    self.group.as_str(),
                    self.consumer.as_str(),
                    idle.as_str(),
                    "0-0",
                    "COUNT",
                    count.as_str(),
                ],
            )
            .await?;
        // [next-start, [entries…], [deleted ids…]]
        let mut parts = reply.into_array().into_iter();
        let _next = parts.next();
        Ok(parts.next().map(entries).unwrap_or_default())
    }

    /// Reclaimed entries first; otherwise new ones, waiting up to `block`.
    pub async fn next(&self, count: usize, block: Duration) -> Result<Vec<Delivery>, BusError> {
        let reclaimed = self.reclaim(count).await?;
        if !reclaimed.is_empty() {
            return Ok(reclaimed);
        }
        let count = count.max(1).to_string();
        let block = block.as_millis().max(1).to_string();
        let reply: RValue = self
            .client
            .custom(
                CustomCommand::new_static("XREADGROUP", ClusterHash::FirstKey, true),
                vec![
                    "GROUP",
                    self.group.as_str(),
                    self.consumer.as_str(),
                    "COUNT",
                    count.as_str(),
                    "BLOCK",
                    block.as_str(),
                    "STREAMS",
                    self.stream.as_str(),
                    ">",
                ],
            )
            .await?;
        // RESP2: [[stream, [entries…]]]; nil on timeout.
        Ok(reply
            .into_array()
            .into_iter()
            .flat_map(|stream| {
                let mut parts = stream.into_array().into_iter();
                let _name = parts.next();
                parts.next().map(entries).unwrap_or_default()
            })
            .collect())
    }

    /// Acknowledges an entry: its conversation is settled.
    pub async fn ack(&self, id: &str) -> Result<(), BusError> {
        let _: RValue = self
            .client
            .custom(
                CustomCommand::new_static("XACK", ClusterHash::FirstKey, false),
                vec![self.stream.as_str(), self.group.as_str(), id],
            )
            .await?;
        Ok(())
    }

    /// Keeps a long-running entry ours: resets its idle time so other
    /// runners do not take it over while we still work on it.
    pub async fn touch(&self, id: &str) -> Result<(), BusError> {
        let _: RValue = self
            .client
            .custom(
                CustomCommand::new_static("XCLAIM", ClusterHash::FirstKey, false),
                vec![
                    self.stream.as_str(),
                    self.group.as_str(),
                    self.consumer.as_str(),
                    "0",
                    id,
                    "JUSTID",
                ],
            )
            .await?;
        Ok(())
    }
}
