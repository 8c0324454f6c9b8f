//! The plugin host against a real PostgreSQL database, with plugins written
//! in WebAssembly text (compiled by the host from `backend.wat`): database
//! isolation under hostile SQL, CPU and memory limits, SSRF refusals,
//! staged upgrades that keep the old version serving on failure, and
//! `HandleEvent` delivery through the checkpointed subscription.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commands::{AuthConfig, Commands};
use domain::ErrorCode;
use eventstore::{EventStore, Metadata};
use plugin_host::{CallError, HostConfig, HostError, IncomingRequest, PluginHost};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A plugin whose behaviour is chosen by the request body's first byte:
/// `Q:<sql>` db_query2, `E:<sql>` db_exec, `F:<json>` fetch, `V:<json>`
/// event_emit("acme.ping"), `S` storage_get("last"), `L` endless loop,
/// `M` grow memory until refused (returns the pages gained, u32 LE).
/// `HandleEvent` stores the payload under "last"; `Init` returns INIT.
const RUNNER: &str = r#"
(module
  (import "paca" "db_query2" (func $db_query2 (param i64 i64 i64 i64 i64 i64 i64 i64)))
  (import "paca" "db_exec" (func $db_exec (param i64 i64 i64 i64 i64 i64 i64)))
  (import "paca" "http_request_body" (func $body (param i64 i64)))
  (import "paca" "fetch" (func $fetch (param i64 i64 i64 i64)))
  (import "paca" "event_emit" (func $emit (param i64 i64 i64 i64) (result i32)))
  (import "paca" "storage_set" (func $sset (param i64 i64 i64 i64) (result i32)))
  (import "paca" "storage_get" (func $sget (param i64 i64 i64 i64)))
  (import "paca" "log" (func $log (param i32 i64 i64)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "ok")
  (data (i32.const 1032) "acme.ping")
  (data (i32.const 1048) "last")
  (data (i32.const 1056) "runner initialised")
  (global $heap (mut i32) (i32.const 8192))
  (func $malloc (export "paca_malloc") (param $n i32) (result i32)
    (local $p i32)
    global.get $heap
    local.set $p
    global.get $heap
    local.get $n
    i32.add
    i32.const 7
    i32.add
    i32.const -8
    i32.and
    global.set $heap
    (block $ok
      (loop $grow
        global.get $heap
        memory.size
        i32.const 16
        i32.shl
        i32.le_u
        br_if $ok
        i32.const 1
        memory.grow
        i32.const -1
        i32.eq
        if
          i32.const 0
          return
        end
        br $grow))
    local.get $p)
  (func (export "ResetAllocator")
    i32.const 8192
    global.set $heap)
  (func (export "Init") (result i32)
    (call $log (i32.const 1) (i64.const 1056) (i64.const 18))
    i32.const INIT)
  (func $pack (param $p i32) (param $l i32) (result i64)
    local.get $p
    i64.extend_i32_u
    i64.const 32
    i64.shl
    local.get $l
    i64.extend_i32_u
    i64.or)
  (func (export "HandleEvent") (param i32 i32 i32 i32)
    (drop (call $sset (i64.const 1048) (i64.const 4)
      (i64.extend_i32_u (local.get 2)) (i64.extend_i32_u (local.get 3)))))
  (func (export "HandleRequest") (param i32 i32) (result i64)
    (local $b i32) (local $n i32) (local $op i32) (local $pages i32)
    ;; the body: ptr at 0, len at 4
    (call $body (i64.const 0) (i64.const 4))
    (local.set $b (i32.add (i32.load (i32.const 0)) (i32.const 2)))
    (local.set $n (i32.sub (i32.load (i32.const 4)) (i32.const 2)))
    (local.set $op (i32.load8_u (i32.load (i32.const 0))))
    ;; Q: query
    (if (i32.eq (local.get $op) (i32.const 81))
      (then
        (i32.store (i32.const 28) (i32.const 0))
        (call $db_query2 (i64.extend_i32_u (local.get $b)) (i64.extend_i32_u (local.get $n))
          (i64.const 0) (i64.const 0) (i64.const 16) (i64.const 20) (i64.const 24) (i64.const 28))
        (if (i32.gt_u (i32.load (i32.const 28)) (i32.const 0))
          (then (return (call $pack (i32.load (i32.const 24)) (i32.load (i32.const 28))))))
        (return (call $pack (i32.load (i32.const 16)) (i32.load (i32.const 20))))))
    ;; E: exec
    (if (i32.eq (local.get $op) (i32.const 69))
      (then
        (call $db_exec (i64.extend_i32_u (local.get $b)) (i64.extend_i32_u (local.get $n))
          (i64.const 0) (i64.const 0) (i64.const 32) (i64.const 24) (i64.const 28))
        (if (i32.gt_u (i32.load (i32.const 28)) (i32.const 0))
          (then (return (call $pack (i32.load (i32.const 24)) (i32.load (i32.const 28))))))
        (return (call $pack (i32.const 1024) (i32.const 2)))))
    ;; F: fetch
    (if (i32.eq (local.get $op) (i32.const 70))
      (then
        (call $fetch (i64.extend_i32_u (local.get $b)) (i64.extend_i32_u (local.get $n))
          (i64.const 16) (i64.const 20))
        (return (call $pack (i32.load (i32.const 16)) (i32.load (i32.const 20))))))
    ;; V: emit
    (if (i32.eq (local.get $op) (i32.const 86))
      (then
        (drop (call $emit (i64.const 1032) (i64.const 9)
          (i64.extend_i32_u (local.get $b)) (i64.extend_i32_u (local.get $n))))
        (return (call $pack (i32.const 1024) (i32.const 2)))))
    ;; S: storage_get("last")
    (if (i32.eq (local.get $op) (i32.const 83))
      (then
        (i32.store (i32.const 20) (i32.const 0))
        (call $sget (i64.const 1048) (i64.const 4) (i64.const 16) (i64.const 20))
        (return (call $pack (i32.load (i32.const 16)) (i32.load (i32.const 20))))))
    ;; L: endless loop
    (if (i32.eq (local.get $op) (i32.const 76))
      (then (loop $forever (br $forever))))
    ;; M: grow until refused
    (if (i32.eq (local.get $op) (i32.const 77))
      (then
        (block $done
          (loop $more
            (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
            (local.set $pages (i32.add (local.get $pages) (i32.const 1)))
            (br $more)))
        (i32.store (i32.const 64) (local.get $pages))
        (return (call $pack (i32.const 64) (i32.const 4)))))
    (i64.const 0))
)
"#;

fn runner(init: i32) -> String {
    RUNNER.replace("INIT", &init.to_string())
}

struct Env {
    host: Arc<PluginHost>,
    pool: PgPool,
    dir: PathBuf,
}

async fn env(options: PgConnectOptions, tune: impl FnOnce(&mut HostConfig)) -> Env {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", "rm,public")]))
        .await
        .unwrap();
    let store = EventStore::builder(pool.clone())
        .upcasters(commands::upcasters())
        .projector(Arc::new(commands::write_index::WriteIndex))
        .projector(Arc::new(projections::ReadModelProjector))
        .build();
    projections::ensure_ready(&store).await.unwrap();
    let commands = Commands::new(
        store,
        AuthConfig {
            jwt_secret: "test-secret".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(3600),
            refresh_session_ttl: Duration::from_secs(600),
            cookie_secure: false,
            agent_api_key: None,
        },
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("paca-plugin-test-{}", uuid::Uuid::new_v4()));
    let mut cfg = HostConfig::new(dir.join("store"));
    cfg.db_secret = b"test-secret".to_vec();
    cfg.limits.cpu_budget = 300_000_000;
    cfg.limits.call_timeout = Duration::from_secs(10);
    tune(&mut cfg);
    let host = PluginHost::new(cfg, commands).await.unwrap();
    host.start().await;
    Env { host, pool, dir }
}

impl Env {
    /// Writes a plugin directory and returns its path.
    fn plugin_dir(
        &self,
        name: &str,
        version: &str,
        wat: &str,
        extra: Value,
        migrations: &[(&str, &str)],
    ) -> PathBuf {
        let dir = self
            .dir
            .join(format!("src-{name}-{version}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        let mut manifest = json!({
            "id": name,
            "version": version,
            "displayName": name,
            "backend": {
                "routes": [{"method": "POST", "path": "/run", "middlewares": []}],
                "allowedOutboundDomains": ["api.example.com", "localhost", "127.0.0.1"]
            }
        });
        if let (Some(m), Some(e)) = (manifest["backend"].as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(dir.join("plugin.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.join("backend.wat"), wat).unwrap();
        for (file, sql) in migrations {
            std::fs::write(dir.join("migrations").join(file), sql).unwrap();
        }
        dir
    }

    async fn install(&self, dir: &Path) -> Result<(), HostError> {
        self.host
            .install_path(dir, true, &Metadata::system("test"))
            .await
            .map(|_| ())
    }

    async fn call(&self, plugin: &str, body: &str) -> Result<Vec<u8>, CallError> {
        let (p, _) = self.host.route(plugin, "POST", "run").expect("route");
        let request = IncomingRequest {
            method: "POST".into(),
            path: "run".into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        self.host.handle_request_raw(&p, request).await
    }

    async fn text(&self, plugin: &str, body: &str) -> String {
        String::from_utf8_lossy(&self.call(plugin, body).await.expect("call")).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const NOTES: &str = "CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL);";

#[sqlx::test(migrations = "../migrations")]
async fn hostile_sql_is_contained_by_the_plugin_role(_: PgPoolOptions, options: PgConnectOptions) {
    let t = env(options, |_| {}).await;
    let a = "com.test.iso-a";
    let b = "com.test.iso-b";
    t.install(&t.plugin_dir(
        a,
        "1.0.0",
        &runner(0),
        json!({}),
        &[("0001_notes.sql", NOTES)],
    ))
    .await
    .unwrap();
    t.install(&t.plugin_dir(
        b,
        "1.0.0",
        &runner(0),
        json!({}),
        &[("0001_notes.sql", NOTES)],
    ))
    .await
    .unwrap();

    // Its own tables work; the migration ran once and is recorded.
    assert_eq!(
        t.text(a, "E:INSERT INTO notes (body) VALUES ('hello')")
            .await,
        "ok"
    );
    let rows: Value = serde_json::from_str(&t.text(a, "Q:SELECT body FROM notes").await).unwrap();
    assert_eq!(rows, json!({"columns": ["body"], "rows": [["hello"]]}));
    let applied: Value = serde_json::from_str(
        &t.text(a, "Q:SELECT filename FROM plugin_schema_migrations")
            .await,
    )
    .unwrap();
    assert_eq!(applied["rows"], json!([["0001_notes.sql"]]));
    let who: Value = serde_json::from_str(
        &t.text(
            a,
            "Q:SELECT current_user::text AS c, session_user::text AS s",
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        who["rows"],
        json!([["paca_plugin_com_test_iso_a", "paca_plugin_com_test_iso_a"]])
    );

    // Core data, the log, secrets and the other plugin are out of reach.
    for sql in [
        "Q:SELECT * FROM rm.users",
        "Q:SELECT * FROM public.events",
        "Q:SELECT * FROM public.user_credentials",
        "Q:SELECT * FROM plugin_data_com_test_iso_b.notes",
        "E:DROP SCHEMA plugin_data_com_test_iso_b CASCADE",
        "E:DROP TABLE plugin_data_com_test_iso_b.notes",
        "E:CREATE TABLE public.evil (x INT)",
        "E:SET ROLE postgres",
        "Q:SELECT set_config('role', 'postgres', false)",
        "E:ALTER ROLE paca_plugin_com_test_iso_a SUPERUSER",
    ] {
        let out = t.text(a, sql).await;
        assert!(
            out.contains("permission denied")
                || out.contains("must be owner")
                || out.contains("must be superuser")
                || out.contains("must have"),
            "{sql} was not refused: {out}"
        );
    }
    // db_query is read-only.
    let out = t.text(a, "Q:DELETE FROM notes RETURNING id").await;
    assert!(out.contains("read-only"), "{out}");
    // The other plugin's data survived all of that.
    assert_eq!(
        t.text(b, "E:INSERT INTO notes (body) VALUES ('b')").await,
        "ok"
    );
    let rows: Value =
        serde_json::from_str(&t.text(b, "Q:SELECT count(*) AS n FROM notes").await).unwrap();
    assert_eq!(rows["rows"], json!([[1]]));
}

#[sqlx::test(migrations = "../migrations")]
async fn an_endless_loop_is_stopped_and_the_host_keeps_serving(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = env(options, |c| {
        c.limits.instances = 2;
        c.limits.cpu_budget = 200_000_000;
    })
    .await;
    let name = "com.test.loop";
    t.install(&t.plugin_dir(
        name,
        "1.0.0",
        &runner(0),
        json!({}),
        &[("0001_notes.sql", NOTES)],
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let err = t.call(name, "L").await.unwrap_err();
    assert!(matches!(err, CallError::CpuBudget), "{err:?}");
    eprintln!("endless loop stopped after {:?}", started.elapsed());
    // The broken instance is rebuilt; the plugin keeps answering.
    assert_eq!(
        t.text(name, "E:INSERT INTO notes (body) VALUES ('after')")
            .await,
        "ok"
    );
    // Two loops at once (both instances busy) and a normal call: all end.
    let (a, b) = tokio::join!(t.call(name, "L"), t.call(name, "L"));
    assert!(matches!(a, Err(CallError::CpuBudget)) && matches!(b, Err(CallError::CpuBudget)));
    assert_eq!(
        t.text(name, "E:INSERT INTO notes (body) VALUES ('again')")
            .await,
        "ok"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_wall_clock_limit_answers_on_time(_: PgPoolOptions, options: PgConnectOptions) {
    let t = env(options, |c| {
        c.limits.call_timeout = Duration::from_millis(300);
        c.limits.cpu_budget = 1_500_000_000;
    })
    .await;
    let name = "com.test.slow";
    t.install(&t.plugin_dir(name, "1.0.0", &runner(0), json!({}), &[]))
        .await
        .unwrap();
    let started = Instant::now();
    let err = t.call(name, "L").await.unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Host I/O is bounded by the same deadline: the slow statement is cut
    // at the deadline (the guest gets the error, or the caller's timeout
    // answers first), never after pg_sleep's two seconds.
    let started = Instant::now();
    match t.call(name, "Q:SELECT pg_sleep(2)").await {
        Ok(out) => {
            let out = String::from_utf8_lossy(&out);
            assert!(
                out.contains("deadline exceeded") || out.contains("statement timeout"),
                "{out}"
            );
        }
        Err(CallError::Timeout(_)) => {}
        Err(other) => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn memory_is_capped(_: PgPoolOptions, options: PgConnectOptions) {
    let t = env(options, |c| c.limits.memory_pages = 16).await;
    let name = "com.test.bomb";
    t.install(&t.plugin_dir(name, "1.0.0", &runner(0), json!({}), &[]))
        .await
        .unwrap();
    let out = t.call(name, "M").await.unwrap();
    let gained = u32::from_le_bytes(out[..4].try_into().unwrap());
    // Started at 2 pages (+ whatever the allocator took), never past 16.
    assert!(gained > 0 && gained <= 14, "grew {gained} pages");
    // A module whose initial memory exceeds the cap is refused at install.
    let big = runner(0).replace(
        "(memory (export \"memory\") 2)",
        "(memory (export \"memory\") 64)",
    );
    let err = t
        .install(&t.plugin_dir("com.test.big", "1.0.0", &big, json!({}), &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert!(t.host.plugin("com.test.big").is_none());
}

#[sqlx::test(migrations = "../migrations")]
async fn fetch_refuses_private_and_unlisted_hosts(_: PgPoolOptions, options: PgConnectOptions) {
    let t = env(options, |_| {}).await;
    let name = "com.test.fetch";
    t.install(&t.plugin_dir(name, "1.0.0", &runner(0), json!({}), &[]))
        .await
        .unwrap();
    for (url, why) in [
        ("https://127.0.0.1:1/", "not allowed"),
        ("https://localhost:1/", "no public address"),
        ("https://other.example.org/", "allowedOutboundDomains"),
        ("http://api.example.com/", "https"),
    ] {
        let out: Value =
            serde_json::from_str(&t.text(name, &format!("F:{}", json!({"url": url}))).await)
                .unwrap();
        assert_eq!(out["status"], 0, "{url}: {out}");
        assert!(out["error"].as_str().unwrap().contains(why), "{url}: {out}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_upgrades_keep_the_old_version_serving(_: PgPoolOptions, options: PgConnectOptions) {
    let t = env(options, |_| {}).await;
    let name = "com.test.upgrade";
    t.install(&t.plugin_dir(
        name,
        "1.0.0",
        &runner(0),
        json!({}),
        &[("0001_notes.sql", NOTES)],
    ))
    .await
    .unwrap();
    let md = Metadata::system("test");
    // Init fails in 1.1.0: refused, 1.0.0 still serves.
    let bad = t.plugin_dir(
        name,
        "1.1.0",
        &runner(7),
        json!({}),
        &[("0001_notes.sql", NOTES)],
    );
    let err = t.host.upgrade_path(&bad, &md).await.unwrap_err();
    assert!(err.to_string().contains("Init returned 7"), "{err}");
    assert_eq!(t.host.plugin(name).unwrap().version, "1.0.0");
    assert_eq!(
        t.text(name, "E:INSERT INTO notes (body) VALUES ('still here')")
            .await,
        "ok"
    );
    // Semver rules.
    let same = t.plugin_dir(name, "1.0.0", &runner(0), json!({}), &[]);
    match t.host.upgrade_path(&same, &md).await.unwrap_err() {
        HostError::Domain(e) => assert_eq!(e.code, ErrorCode::PLUGIN_ALREADY_UP_TO_DATE),
        other => panic!("{other}"),
    }
    let older = t.plugin_dir(name, "0.9.0", &runner(0), json!({}), &[]);
    match t.host.upgrade_path(&older, &md).await.unwrap_err() {
        HostError::Domain(e) => assert_eq!(e.code, ErrorCode::PLUGIN_DOWNGRADE_NOT_ALLOWED),
        other => panic!("{other}"),
    }
    // A good upgrade switches, runs only the new migration, keeps data.
    let good = t.plugin_dir(
        name,
        "1.2.0",
        &runner(0),
        json!({}),
        &[
            ("0001_notes.sql", NOTES),
            ("0002_more.sql", "ALTER TABLE notes ADD COLUMN tag TEXT;"),
        ],
    );
    t.host.upgrade_path(&good, &md).await.unwrap();
    assert_eq!(t.host.plugin(name).unwrap().version, "1.2.0");
    let rows: Value =
        serde_json::from_str(&t.text(name, "Q:SELECT body, tag FROM notes").await).unwrap();
    assert_eq!(rows["rows"], json!([["still here", null]]));
    // Installing it again is PLUGIN_NAME_TAKEN; the log has the lifecycle.
    match t.install(&good).await.unwrap_err() {
        HostError::Domain(e) => assert_eq!(e.code, ErrorCode::PLUGIN_NAME_TAKEN),
        other => panic!("{other}"),
    }
    t.host.uninstall(name, &md).await.unwrap();
    assert!(t.host.plugin(name).is_none());
    assert!(t.host.route(name, "POST", "run").is_err());
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE stream_type = 'plugin' ORDER BY global_position",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        types,
        ["plugin.installed", "plugin.upgraded", "plugin.uninstalled"]
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM plugins")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn subscribed_events_are_delivered_to_other_plugins(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let t = env(options, |_| {}).await;
    let sub = json!({"eventSubscriptions": ["acme.ping"]});
    t.install(&t.plugin_dir("com.test.emitter", "1.0.0", &runner(0), sub.clone(), &[]))
        .await
        .unwrap();
    t.install(&t.plugin_dir("com.test.listener", "1.0.0", &runner(0), sub, &[]))
        .await
        .unwrap();
    assert_eq!(t.text("com.test.emitter", r#"V:{"n":42}"#).await, "ok");
    // The emitted event is in the log, attributed to the plugin.
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata FROM events WHERE event_type = 'acme.ping'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(metadata["actor"]["kind"], "plugin");
    assert_eq!(metadata["extra"]["plugin"], "com.test.emitter");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = t.text("com.test.listener", "S").await;
        if !got.is_empty() {
            let payload: Value = serde_json::from_str(&got).unwrap();
            assert_eq!(payload["type"], "acme.ping");
            assert_eq!(payload["source"], "com.test.emitter");
            assert_eq!(payload["payload"], json!({"n": 42}));
            break;
        }
        assert!(Instant::now() < deadline, "the event was not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The emitter does not receive its own event; the delivery is checkpointed.
    assert_eq!(t.text("com.test.emitter", "S").await, "");
    let checkpoints: Vec<String> =
        sqlx::query_scalar("SELECT name FROM checkpoints WHERE name LIKE 'plugin:%' ORDER BY name")
            .fetch_all(&t.pool)
            .await
            .unwrap();
    assert_eq!(
        checkpoints,
        ["plugin:com.test.emitter", "plugin:com.test.listener"]
    );
    t.host.stop().await;
}
