//! The crash-safe intake against a real Redis (127.0.0.1:6379, db 12, a
//! stream name of its own per run).

use std::time::Duration;

use agent_runner::bus::connect;
use agent_runner::intake::Intake;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Value};

const URL: &str = "redis://127.0.0.1:6379/12";

async fn raw(client: &Client, cmd: &'static str, args: Vec<String>) -> Value {
    client
        .custom(
            CustomCommand::new_static(cmd, ClusterHash::FirstKey, false),
            args,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_consumers_entries_are_reclaimed_and_acked_only_when_done() {
    let stream = format!("test:intake:{}", uuid::Uuid::new_v4());
    let admin = connect(URL).await.unwrap();
    let a = Intake::new(
        connect(URL).await.unwrap(),
        &stream,
        "g",
        "worker-a".into(),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    for n in 0..3 {
        raw(
            &admin,
            "XADD",
            vec![stream.clone(), "*".into(), "n".into(), n.to_string()],
        )
        .await;
    }
    // Worker A takes two entries and "dies" without acknowledging them.
    let taken = a.next(2, Duration::from_millis(100)).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].fields["n"], "0");
    drop(a);

    let b = Intake::new(
        connect(URL).await.unwrap(),
        &stream,
        "g",
        "worker-b".into(),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    // Before A's entries are idle long enough, B only gets the new one.
    let fresh = b.next(10, Duration::from_millis(50)).await.unwrap();
    assert_eq!(
        fresh
            .iter()
            .map(|d| d.fields["n"].as_str())
            .collect::<Vec<_>>(),
        ["2"]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reclaimed = b.next(10, Duration::from_millis(50)).await.unwrap();
    let mut ids: Vec<&str> = reclaimed.iter().map(|d| d.fields["n"].as_str()).collect();
    ids.sort();
    // A's two, and B's own unacknowledged one: a runner restarted under the
    // same consumer name takes its own pending entries back the same way.
    assert_eq!(ids, ["0", "1", "2"]);
    // Nothing is acknowledged until the caller says so.
    let pending = raw(&admin, "XPENDING", vec![stream.clone(), "g".into()]).await;
    assert_eq!(pending.into_array()[0].as_i64(), Some(3));
    for d in reclaimed.iter().chain(&fresh) {
        b.ack(&d.id).await.unwrap();
    }
    let pending = raw(&admin, "XPENDING", vec![stream.clone(), "g".into()]).await;
    assert_eq!(pending.into_array()[0].as_i64(), Some(0));
    // An empty stream blocks for the given time and returns nothing.
    assert!(
        b.next(10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    raw(&admin, "DEL", vec![stream]).await;
}
