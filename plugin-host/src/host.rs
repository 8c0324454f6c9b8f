//! The `paca` host module (PLUGIN-ABI.md §2) and a minimal
//! `wasi_snapshot_preview1` (no args, no env, no files; stdout/stderr go to
//! the server log under the plugin's name).
//!
//! Calling convention: pointers and lengths are i64; "out" arguments are
//! guest addresses where the host writes a little-endian u32 pointer and a
//! u32 length of bytes it allocated in the guest through `paca_malloc`
//! (`(0, 0)` for nothing). Every function runs on the blocking thread of
//! the export call and blocks on the server's runtime for its I/O, bounded
//! by the call's deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, FunctionType, Memory, RuntimeError, Store, Type,
    TypedFunction, Value as W,
};

use crate::cache::Cache;
use crate::core::{Caller, Core};
use crate::db::PluginDb;
use crate::fetch::Fetcher;
use crate::manifest::Backend;

/// Marker in the trap message of a host function that refused to start
/// after the call's deadline.
pub const DEADLINE_MESSAGE: &str = "plugin call deadline exceeded";

/// Largest single argument a guest may pass to a host function.
const MAX_ARG_BYTES: u64 = 16 << 20;

/// What a plugin's host functions reach: its own database role, cache
/// namespace, outbound policy, core reads and the event log.
pub struct PluginServices {
    pub name: String,
    pub id: Uuid,
    pub backend: Backend,
    /// The manifest's top-level `permissions` (orchestration capabilities).
    pub permissions: Vec<String>,
    pub db: PluginDb,
    pub cache: Arc<dyn Cache>,
    pub fetcher: Arc<Fetcher>,
    pub core: Core,
    /// Values `config_get` may return (when the manifest allows the key).
    pub config: Arc<BTreeMap<String, String>>,
    pub rt: tokio::runtime::Handle,
}

/// The request an export call serves (absent for `Init`, `HandleEvent`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub caller: Caller,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CallContext {
    pub deadline: Instant,
    pub request: Option<RequestInfo>,
    /// The event a `HandleEvent` call delivers (causation of what it emits).
    pub event_id: Option<Uuid>,
}

impl CallContext {
    pub fn system(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            request: None,
            event_id: None,
        }
    }
}

pub struct HostEnv {
    pub services: Arc<PluginServices>,
    pub memory: Option<Memory>,
    pub malloc: Option<TypedFunction<i32, i32>>,
    pub call: Option<CallContext>,
}

impl HostEnv {
    pub fn new(services: Arc<PluginServices>) -> Self {
        Self {
            services,
            memory: None,
            malloc: None,
            call: None,
        }
    }
}

type Env<'a> = FunctionEnvMut<'a, HostEnv>;
type HostFn = fn(&mut Env, &[W]) -> Result<Vec<W>, RuntimeError>;
/// Accepted `(params, results)` of one import.
type Signatures = Vec<(Vec<Type>, Vec<Type>)>;

use Type::{I32, I64};

/// The accepted signatures of each `paca` import (the Go SDK's, plus the
/// multi-value forms Paca's host registers for core reads and request
/// accessors).
fn signatures(name: &str) -> Option<(HostFn, Signatures)> {
    let in_out = || (vec![I64; 4], vec![]);
    Some(match name {
        "log" => (log, vec![(vec![I32, I64, I64], vec![])]),
        "db_query" => (db_query, vec![(vec![I64; 6], vec![])]),
        "db_query2" => (db_query, vec![(vec![I64; 8], vec![])]),
        "db_exec" => (db_exec, vec![(vec![I64; 7], vec![])]),
        "storage_get" => (storage_get, vec![in_out()]),
        "storage_set" => (storage_set, vec![(vec![I64; 4], vec![I32])]),
        "storage_delete" => (storage_delete, vec![(vec![I64; 2], vec![I32])]),
        "cache_get" => (cache_get, vec![in_out()]),
        "cache_set" => (cache_set, vec![(vec![I64, I64, I64, I64, I32], vec![I32])]),
        "cache_delete" => (cache_delete, vec![(vec![I64; 2], vec![I32])]),
        "config_get" => (config_get, vec![in_out()]),
        "fetch" => (fetch, vec![in_out()]),
        "settings_get" => (settings_get, vec![(vec![I64; 2], vec![])]),
        "event_emit" => (event_emit, vec![(vec![I64; 4], vec![I32])]),
        "event_subscribe" => (event_subscribe, vec![(vec![I64; 2], vec![I32])]),
        "activity_record" => (activity_record, vec![(vec![I64; 2], vec![I32])]),
        "permission_check" => (permission_check, vec![(vec![I64; 2], vec![I32])]),
        "tasks_list" | "task_get" | "project_get" | "members_list" => {
            (noop, vec![in_out(), (vec![I64; 2], vec![I64, I64])])
        }
        "http_request_body" | "http_request_headers" | "http_caller_identity" => {
            (noop, vec![(vec![], vec![I64, I64]), (vec![I64; 2], vec![])])
        }
        "http_respond" => (noop, vec![(vec![I32, I64, I64], vec![])]),
        "send_email" | "password_set_token_issue" => (unavailable, vec![(vec![I64; 2], vec![I32])]),
        n if crate::orchestrate::FUNCTIONS.contains(&n) => (noop, vec![in_out()]),
        _ => return None,
    })
}

pub fn check_signature(name: &str, ty: &FunctionType) -> Result<(), String> {
    let Some((_, accepted)) = signatures(name) else {
        return Err(format!("import paca.{name} is not provided by this host"));
    };
    if accepted
        .iter()
        .any(|(p, r)| ty.params() == p.as_slice() && ty.results() == r.as_slice())
    {
        Ok(())
    } else {
        Err(format!(
            "import paca.{name} has signature {ty}, which this host does not provide"
        ))
    }
}

pub fn paca_function(
    store: &mut Store,
    env: &FunctionEnv<HostEnv>,
    name: &str,
    ty: FunctionType,
) -> Result<Function, String> {
    check_signature(name, &ty)?;
    let (f, _) = signatures(name).expect("checked above");
    let name = name.to_owned();
    Ok(match name.as_str() {
        "tasks_list" | "task_get" | "project_get" | "members_list" => {
            Function::new_with_env(store, env, ty, move |mut env: Env, args: &[W]| {
                core_read(&mut env, &name, args)
            })
        }
        "http_request_body" | "http_request_headers" | "http_caller_identity" => {
            Function::new_with_env(store, env, ty, move |mut env: Env, args: &[W]| {
                request_info(&mut env, &name, args)
            })
        }
        n if crate::orchestrate::FUNCTIONS.contains(&n) => {
            Function::new_with_env(store, env, ty, move |mut env: Env, args: &[W]| {
                orchestrate(&mut env, &name, args)
            })
        }
        _ => Function::new_with_env(store, env, ty, move |mut env: Env, args: &[W]| {
            f(&mut env, args)
        }),
    })
}

// ---------------------------------------------------------------------------
// Guest memory helpers

fn i64_arg(args: &[W], i: usize) -> i64 {
    match args.get(i) {
        Some(W::I64(v)) => *v,
        Some(W::I32(v)) => *v as i64,
        _ => 0,
    }
}

fn trap(message: impl Into<String>) -> RuntimeError {
    RuntimeError::new(message.into())
}

fn call_ctx(env: &Env) -> Result<CallContext, RuntimeError> {
    let call = env
        .data()
        .call
        .clone()
        .ok_or_else(|| trap("host function called outside an export call"))?;
    if Instant::now() >= call.deadline {
        return Err(trap(DEADLINE_MESSAGE));
    }
    Ok(call)
}

fn services(env: &Env) -> Arc<PluginServices> {
    env.data().services.clone()
}

fn read(env: &Env, ptr: i64, len: i64) -> Result<Vec<u8>, RuntimeError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr < 0 || len < 0 || len as u64 > MAX_ARG_BYTES {
        return Err(trap(format!("invalid argument (ptr {ptr}, len {len})")));
    }
    let memory = env
        .data()
        .memory
        .clone()
        .ok_or_else(|| trap("memory not ready"))?;
    let mut out = vec![0u8; len as usize];
    memory
        .view(env)
        .read(ptr as u64, &mut out)
        .map_err(|e| trap(format!("argument out of bounds: {e}")))?;
    Ok(out)
}

fn read_string(env: &Env, ptr: i64, len: i64) -> Result<String, RuntimeError> {
    Ok(String::from_utf8_lossy(&read(env, ptr, len)?).into_owned())
}

fn write_at(env: &mut Env, addr: i64, bytes: &[u8]) -> Result<(), RuntimeError> {
    if addr < 0 {
        return Err(trap(format!("invalid out pointer {addr}")));
    }
    let memory = env
        .data()
        .memory
        .clone()
        .ok_or_else(|| trap("memory not ready"))?;
    memory
        .view(env)
        .write(addr as u64, bytes)
        .map_err(|e| trap(format!("out pointer out of bounds: {e}")))
}

/// Allocates `bytes` in the guest (re-entrant `paca_malloc`).
fn alloc(env: &mut Env, bytes: &[u8]) -> Result<(u32, u32), RuntimeError> {
    if bytes.is_empty() {
        return Ok((0, 0));
    }
    let len = i32::try_from(bytes.len()).map_err(|_| trap("result too large"))?;
    let malloc = env
        .data()
        .malloc
        .clone()
        .ok_or_else(|| trap("paca_malloc not ready"))?;
    let ptr = malloc.call(env, len)?;
    if ptr == 0 {
        return Err(trap("paca_malloc returned 0"));
    }
    write_at(env, ptr as u32 as i64, bytes)?;
    Ok((ptr as u32, len as u32))
}

/// Writes `bytes` to the guest and their (ptr, len) to the out addresses.
fn write_out(
    env: &mut Env,
    ptr_addr: i64,
    len_addr: i64,
    bytes: &[u8],
) -> Result<(), RuntimeError> {
    let (ptr, len) = alloc(env, bytes)?;
    write_at(env, ptr_addr, &ptr.to_le_bytes())?;
    write_at(env, len_addr, &len.to_le_bytes())
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn remaining(call: &CallContext) -> Duration {
    call.deadline.saturating_duration_since(Instant::now())
}

/// Runs host I/O on the server's runtime, bounded by the call's deadline.
fn block<T>(
    env: &Env,
    call: &CallContext,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let rt = env.data().services.rt.clone();
    let left = remaining(call);
    rt.block_on(async move {
        match tokio::time::timeout(left, fut).await {
            Ok(result) => result,
            Err(_) => Err(DEADLINE_MESSAGE.to_owned()),
        }
    })
}

fn plugin_log(name: &str, level: i32, message: &str) {
    match level {
        0 => tracing::debug!(plugin = %name, "{message}"),
        1 => tracing::info!(plugin = %name, "{message}"),
        2 => tracing::warn!(plugin = %name, "{message}"),
        _ => tracing::error!(plugin = %name, "{message}"),
    }
}

// ---------------------------------------------------------------------------
// paca.*

fn log(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let level = match args.first() {
        Some(W::I32(l)) => *l,
        _ => 1,
    };
    let len = i64_arg(args, 2).min(64 << 10);
    let message = read_string(env, i64_arg(args, 1), len)?;
    plugin_log(&env.data().services.name, level, &message);
    Ok(vec![])
}

fn params_of(bytes: &[u8]) -> Result<Vec<Value>, String> {
    if bytes.is_empty() {
        return Ok(vec![]);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(Value::Null) => Ok(vec![]),
        Ok(_) => Err("params must be a JSON array".into()),
        Err(e) => Err(format!("params are not valid JSON: {e}")),
    }
}

/// `db_query` (6 args, writes nothing on error) and `db_query2` (8 args,
/// writes the error to its own out pair). Runs read-only.
fn db_query(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let sql = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let params = read(env, i64_arg(args, 2), i64_arg(args, 3))?;
    let svc = services(env);
    let deadline = call.deadline;
    let result = params_of(&params).and_then(|params| {
        block(env, &call, async move {
            svc.db.query(&sql, &params, deadline).await
        })
    });
    match result {
        Ok(value) => write_out(env, i64_arg(args, 4), i64_arg(args, 5), &json_bytes(&value))?,
        Err(message) if args.len() == 8 => {
            write_out(env, i64_arg(args, 6), i64_arg(args, 7), message.as_bytes())?
        }
        Err(message) => plugin_log(
            &env.data().services.name,
            2,
            &format!("db_query: {message}"),
        ),
    }
    Ok(vec![])
}

fn db_exec(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let sql = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let params = read(env, i64_arg(args, 2), i64_arg(args, 3))?;
    let svc = services(env);
    let deadline = call.deadline;
    let result = params_of(&params).and_then(|params| {
        block(env, &call, async move {
            svc.db.exec(&sql, &params, deadline).await
        })
    });
    let (rows, error) = match result {
        Ok(rows) => (rows, None),
        Err(message) => (0, Some(message)),
    };
    write_at(env, i64_arg(args, 4), &rows.to_le_bytes())?;
    match error {
        Some(message) => write_out(env, i64_arg(args, 5), i64_arg(args, 6), message.as_bytes())?,
        None => {
            write_at(env, i64_arg(args, 5), &0u32.to_le_bytes())?;
            write_at(env, i64_arg(args, 6), &0u32.to_le_bytes())?;
        }
    }
    Ok(vec![])
}

fn storage_get(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let key = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let deadline = call.deadline;
    let value = block(
        env,
        &call,
        async move { svc.db.kv_get(&key, deadline).await },
    )
    .unwrap_or_else(|e| {
        plugin_log(&env.data().services.name, 2, &format!("storage_get: {e}"));
        None
    });
    write_out(
        env,
        i64_arg(args, 2),
        i64_arg(args, 3),
        value.unwrap_or_default().as_bytes(),
    )?;
    Ok(vec![])
}

fn ok_flag(env: &Env, what: &str, result: Result<(), String>) -> Vec<W> {
    match result {
        Ok(()) => vec![W::I32(1)],
        Err(e) => {
            plugin_log(&env.data().services.name, 2, &format!("{what}: {e}"));
            vec![W::I32(0)]
        }
    }
}

fn storage_set(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let key = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let value = read_string(env, i64_arg(args, 2), i64_arg(args, 3))?;
    let svc = services(env);
    let deadline = call.deadline;
    let result = block(env, &call, async move {
        svc.db.kv_set(&key, &value, deadline).await
    });
    Ok(ok_flag(env, "storage_set", result))
}

fn storage_delete(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let key = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let deadline = call.deadline;
    let result = block(
        env,
        &call,
        async move { svc.db.kv_delete(&key, deadline).await },
    );
    Ok(ok_flag(env, "storage_delete", result))
}

/// Paca's cache namespace: `plugin:<len(name)>:<name>:<key>`.
pub fn cache_key(plugin: &str, key: &str) -> String {
    format!("plugin:{}:{plugin}:{key}", plugin.len())
}

fn cache_get(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let key = cache_key(
        &env.data().services.name,
        &read_string(env, i64_arg(args, 0), i64_arg(args, 1))?,
    );
    let svc = services(env);
    let value = block(env, &call, async move { svc.cache.get(&key).await }).unwrap_or(None);
    write_out(
        env,
        i64_arg(args, 2),
        i64_arg(args, 3),
        &value.unwrap_or_default(),
    )?;
    Ok(vec![])
}

fn cache_set(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let key = cache_key(
        &env.data().services.name,
        &read_string(env, i64_arg(args, 0), i64_arg(args, 1))?,
    );
    let value = read(env, i64_arg(args, 2), i64_arg(args, 3))?;
    let ttl = match args.get(4) {
        Some(W::I32(t)) if *t > 0 => Some(Duration::from_secs(*t as u64)),
        _ => None,
    };
    let svc = services(env);
    let result = block(
        env,
        &call,
        async move { svc.cache.set(&key, value, ttl).await },
    );
    Ok(ok_flag(env, "cache_set", result))
}

fn cache_delete(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let key = cache_key(
        &env.data().services.name,
        &read_string(env, i64_arg(args, 0), i64_arg(args, 1))?,
    );
    let svc = services(env);
    let result = block(env, &call, async move { svc.cache.delete(&key).await });
    Ok(ok_flag(env, "cache_delete", result))
}

fn config_get(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    call_ctx(env)?;
    let key = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let value = if svc.backend.allowed_config_keys.contains(&key) {
        svc.config.get(&key).cloned().unwrap_or_default()
    } else {
        plugin_log(
            &svc.name,
            2,
            &format!("config_get: key {key:?} is not in backend.allowedConfigKeys"),
        );
        String::new()
    };
    write_out(env, i64_arg(args, 2), i64_arg(args, 3), value.as_bytes())?;
    Ok(vec![])
}

fn fetch(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let request = read(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let left = remaining(&call);
    let result = block(env, &call, async move {
        Ok(svc
            .fetcher
            .plugin_fetch(&request, &svc.backend.allowed_outbound_domains, left)
            .await)
    })
    .unwrap_or_else(|e| json!({"status": 0, "error": e}));
    if let Some(error) = result.get("error").and_then(Value::as_str) {
        plugin_log(
            &env.data().services.name,
            2,
            &format!("fetch refused or failed: {error}"),
        );
    }
    write_out(
        env,
        i64_arg(args, 2),
        i64_arg(args, 3),
        &json_bytes(&result),
    )?;
    Ok(vec![])
}

fn settings_get(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    call_ctx(env)?;
    let svc = services(env);
    let settings = json!({
        "logo_url": svc.config.get("LOGO_URL").cloned().unwrap_or_default(),
        "brand_name": svc.config.get("BRAND_NAME").cloned().unwrap_or_else(|| "Paca".into()),
        "primary_color_light": "",
        "primary_color_dark": "",
    });
    write_out(
        env,
        i64_arg(args, 0),
        i64_arg(args, 1),
        &json_bytes(&settings),
    )?;
    Ok(vec![])
}

fn event_emit(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let topic = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let payload = read(env, i64_arg(args, 2), i64_arg(args, 3))?;
    let svc = services(env);
    let result = block(env, &call.clone(), async move {
        svc.core
            .emit(&svc.name, svc.id, &topic, &payload, &call)
            .await
    });
    Ok(ok_flag(env, "event_emit", result))
}

fn event_subscribe(_: &mut Env, _: &[W]) -> Result<Vec<W>, RuntimeError> {
    // Subscriptions come from the manifest's eventSubscriptions.
    Ok(vec![W::I32(1)])
}

fn activity_record(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let input = read(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let result = block(env, &call.clone(), async move {
        svc.core
            .record_activity(&svc.name, svc.id, &input, &call)
            .await
    });
    Ok(ok_flag(env, "activity_record", result))
}

fn permission_check(env: &mut Env, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let action = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let Some(request) = call.request.clone() else {
        return Ok(vec![W::I32(0)]);
    };
    let allowed = block(env, &call, async move {
        svc.core
            .can(
                &request.caller,
                request.caller.project_id,
                &action.replace(':', "."),
            )
            .await
    })
    .unwrap_or(false);
    Ok(vec![W::I32(allowed as i32)])
}

fn core_read(env: &mut Env, name: &str, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let arg = read_string(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let name = name.to_owned();
    let value = block(env, &call.clone(), async move {
        Ok(svc
            .core
            .read(&name, &arg, call.request.as_ref().map(|r| &r.caller))
            .await)
    })
    .unwrap_or_else(|e| json!({"error": e}));
    respond_bytes(env, args, 2, &json_bytes(&value))
}

/// The orchestration host functions (`orchestrate.rs`): JSON in, JSON out.
fn orchestrate(env: &mut Env, name: &str, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let input = read(env, i64_arg(args, 0), i64_arg(args, 1))?;
    let svc = services(env);
    let name = name.to_owned();
    let value = block(env, &call.clone(), async move {
        Ok(svc.core.orchestrate(&svc, &name, &input, &call).await)
    })
    .unwrap_or_else(|e| json!({"error": e, "error_code": "TIMEOUT"}));
    respond_bytes(env, args, 2, &json_bytes(&value))
}

/// Out-pointer form (two address args at `at`) or multi-value `(ptr, len)`.
fn respond_bytes(
    env: &mut Env,
    args: &[W],
    at: usize,
    bytes: &[u8],
) -> Result<Vec<W>, RuntimeError> {
    if args.len() >= at + 2 {
        write_out(env, i64_arg(args, at), i64_arg(args, at + 1), bytes)?;
        Ok(vec![])
    } else {
        let (ptr, len) = alloc(env, bytes)?;
        Ok(vec![W::I64(ptr as i64), W::I64(len as i64)])
    }
}

fn request_info(env: &mut Env, name: &str, args: &[W]) -> Result<Vec<W>, RuntimeError> {
    let call = call_ctx(env)?;
    let request = call.request.unwrap_or_default();
    let bytes = match name {
        "http_request_body" => request.body,
        "http_request_headers" => json_bytes(&json!(request.headers)),
        _ => {
            let c = &request.caller;
            json_bytes(&json!({
                "caller_id": c.member_id.map(|m| m.to_string()).unwrap_or_default(),
                "user_id": c.user_id.map(|u| u.to_string()).unwrap_or_default(),
                "caller_role": c.role,
                "project_id": c.project_id.map(|p| p.to_string()).unwrap_or_default(),
            }))
        }
    };
    respond_bytes(env, args, 0, &bytes)
}

fn noop(_: &mut Env, _: &[W]) -> Result<Vec<W>, RuntimeError> {
    Ok(vec![])
}

fn unavailable(env: &mut Env, _: &[W]) -> Result<Vec<W>, RuntimeError> {
    plugin_log(
        &env.data().services.name,
        2,
        "send_email and password_set_token_issue are not available on this host",
    );
    Ok(vec![W::I32(0)])
}

// ---------------------------------------------------------------------------
// WASI (wasi_snapshot_preview1): what reactor modules built with wasi-libc,
// Go or TinyGo import. Anything else answers ENOSYS.

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;

pub fn wasi_function(
    store: &mut Store,
    env: &FunctionEnv<HostEnv>,
    name: &str,
    ty: FunctionType,
) -> Function {
    let name_owned = name.to_owned();
    let results = ty.results().to_vec();
    Function::new_with_env(store, env, ty, move |mut env: Env, args: &[W]| {
        let errno = match name_owned.as_str() {
            "fd_write" => wasi_fd_write(&mut env, args)?,
            "args_sizes_get" | "environ_sizes_get" => {
                write_at(&mut env, i64_arg(args, 0), &0u32.to_le_bytes())?;
                write_at(&mut env, i64_arg(args, 1), &0u32.to_le_bytes())?;
                ERRNO_SUCCESS
            }
            "args_get" | "environ_get" => ERRNO_SUCCESS,
            "clock_time_get" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                write_at(&mut env, i64_arg(args, 2), &now.to_le_bytes())?;
                ERRNO_SUCCESS
            }
            "clock_res_get" => {
                write_at(&mut env, i64_arg(args, 1), &1000u64.to_le_bytes())?;
                ERRNO_SUCCESS
            }
            "random_get" => {
                let len = i64_arg(args, 1).clamp(0, 1 << 16) as usize;
                let mut bytes = vec![0u8; len];
                for chunk in bytes.chunks_mut(16) {
                    let r = Uuid::new_v4().into_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                write_at(&mut env, i64_arg(args, 0), &bytes)?;
                ERRNO_SUCCESS
            }
            "proc_exit" => {
                return Err(trap(format!(
                    "plugin called proc_exit({})",
                    i64_arg(args, 0)
                )));
            }
            "sched_yield" => ERRNO_SUCCESS,
            "fd_prestat_get"
            | "fd_prestat_dir_name"
            | "fd_close"
            | "fd_seek"
            | "fd_read"
            | "fd_fdstat_get"
            | "fd_fdstat_set_flags"
            | "path_open" => ERRNO_BADF,
            "poll_oneoff" => ERRNO_INVAL,
            _ => ERRNO_NOSYS,
        };
        Ok(results
            .iter()
            .map(|t| match t {
                Type::I64 => W::I64(errno as i64),
                _ => W::I32(errno),
            })
            .collect())
    })
}

/// `fd_write(fd, iovs, iovs_len, nwritten)`: stdout/stderr go to the log.
fn wasi_fd_write(env: &mut Env, args: &[W]) -> Result<i32, RuntimeError> {
    let fd = i64_arg(args, 0);
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    let iovs = i64_arg(args, 1);
    let count = i64_arg(args, 2).clamp(0, 1024);
    let mut text = Vec::new();
    for i in 0..count {
        let iov = read(env, iovs + i * 8, 8)?;
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]) as i64;
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]) as i64;
        text.extend(read(env, ptr, len.min(64 << 10))?);
    }
    let message = String::from_utf8_lossy(&text);
    let message = message.trim_end();
    if !message.is_empty() {
        plugin_log(
            &env.data().services.name,
            if fd == 2 { 2 } else { 1 },
            message,
        );
    }
    write_at(env, i64_arg(args, 3), &(text.len() as u32).to_le_bytes())?;
    Ok(ERRNO_SUCCESS)
}
