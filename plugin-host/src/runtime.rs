//! The WASM side: compiling a plugin's module with limits, instantiating it
//! with the `paca` host module and a minimal `wasi_snapshot_preview1`, and
//! calling its exports (PLUGIN-ABI.md §1).
//!
//! Limits that hold against a hostile guest:
//! - **CPU**: wasmer's metering middleware charges every operator; each
//!   export call gets a fresh budget and a guest that exhausts it traps, so
//!   an endless loop ends (the instance is then discarded).
//! - **Memory**: a module middleware clamps every memory's maximum to the
//!   configured page count before compilation, so `memory.grow` past it
//!   fails inside the guest; a module whose *initial* memory is larger is
//!   refused at load.
//! - **Wall clock**: host functions refuse to start work after the call's
//!   deadline and bound their own I/O (statement timeout, fetch timeout) by
//!   it; the caller stops waiting at the deadline regardless. A runaway
//!   pure-compute guest is then stopped by the CPU budget.
//! - **Serialisation**: one [`Slot`] (store + instance) is used by one call
//!   at a time; a plugin has a fixed number of slots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmer::sys::{
    CompilerConfig, FunctionMiddleware, MiddlewareError, ModuleMiddleware, Singlepass,
};
use wasmer::{
    Engine, ExternType, FunctionEnv, Imports, Instance, LocalFunctionIndex, Memory, ModuleInfo,
    Pages, RuntimeError, Store, TypedFunction,
};
use wasmer_middlewares::Metering;
use wasmer_middlewares::metering::{MeteringPoints, get_remaining_points, set_remaining_points};

use crate::host::{self, CallContext, HostEnv, PluginServices};

/// Per-plugin resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Instances per plugin serving calls in parallel (each serialised).
    pub instances: usize,
    /// Linear-memory cap in 64 KiB pages (Paca: 1024 = 64 MiB).
    pub memory_pages: u32,
    /// Wall-clock limit per export call (Paca: 5 s).
    pub call_timeout: Duration,
    /// Metering points per export call (one per executed operator).
    pub cpu_budget: u64,
    /// Largest `HandleRequest` input envelope (Paca: 1 MiB).
    pub max_request_bytes: usize,
    /// Largest response envelope a guest may return.
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            instances: 2,
            memory_pages: 1024,
            call_timeout: Duration::from_secs(5),
            // About 2-4 s of tight guest loop on this class of machine
            // (measured by the endless-loop test), under the call timeout.
            cpu_budget: 4_000_000_000,
            max_request_bytes: 1 << 20,
            max_response_bytes: 10 << 20,
        }
    }
}

/// Why an export call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin exceeded its CPU budget")]
    CpuBudget,
    #[error("plugin call exceeded its time limit of {0:?}")]
    Timeout(Duration),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin response exceeds {0} bytes")]
    ResponseTooLarge(usize),
    #[error("request envelope exceeds {0} bytes")]
    RequestTooLarge(usize),
    #[error("plugin does not export {0}")]
    MissingExport(&'static str),
    #[error("plugin instance unavailable: {0}")]
    Unavailable(String),
}

/// One metering point per operator: the budget is an instruction count.
fn cost(_: &wasmer::sys::wasmparser::Operator) -> u64 {
    1
}

/// Clamps every memory the module defines to `pages` before compilation.
#[derive(Debug)]
struct MemoryCap {
    pages: u32,
}

#[derive(Debug)]
struct PassThrough;

impl<'a> FunctionMiddleware<'a> for PassThrough {}

impl ModuleMiddleware for MemoryCap {
    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        Box::new(PassThrough)
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let cap = Pages(self.pages);
        for (_, memory) in info.memories.iter_mut() {
            if memory.minimum > cap {
                return Err(MiddlewareError::new(
                    "MemoryCap",
                    format!(
                        "the module's initial memory ({} pages) exceeds the limit of {} pages",
                        memory.minimum.0, self.pages
                    ),
                ));
            }
            memory.maximum = Some(memory.maximum.map_or(cap, |m| m.min(cap)));
        }
        Ok(())
    }
}

/// A compiled plugin module with the engine it was compiled for (one
/// engine per module: the metering middleware is per module).
#[derive(Clone)]
pub struct CompiledModule {
    engine: Engine,
    module: wasmer::Module,
}

impl CompiledModule {
    pub fn compile(bytes: &[u8], limits: &Limits) -> Result<Self, String> {
        let mut compiler = Singlepass::new();
        compiler.push_middleware(Arc::new(MemoryCap {
            pages: limits.memory_pages,
        }));
        compiler.push_middleware(Arc::new(Metering::new(0, cost)));
        let engine: Engine = compiler.into();
        let module = wasmer::Module::new(&engine, bytes).map_err(|e| e.to_string())?;
        let compiled = Self { engine, module };
        compiled.check_imports()?;
        let exports: Vec<String> = compiled
            .module
            .exports()
            .map(|e| e.name().to_owned())
            .collect();
        if !exports.iter().any(|e| e == "HandleRequest") {
            return Err("the module does not export HandleRequest".into());
        }
        if !exports.iter().any(|e| e == "paca_malloc" || e == "malloc") {
            return Err("the module exports neither paca_malloc nor malloc".into());
        }
        Ok(compiled)
    }

    /// Every import must be a `paca` host function we provide with the
    /// same signature, or a WASI function (unknown WASI functions are
    /// stubbed with ENOSYS).
    fn check_imports(&self) -> Result<(), String> {
        for import in self.module.imports() {
            let ExternType::Function(ty) = import.ty() else {
                return Err(format!(
                    "import {}.{} is not a function (plugins must define their own memory)",
                    import.module(),
                    import.name()
                ));
            };
            match import.module() {
                "paca" => host::check_signature(import.name(), ty)?,
                "wasi_snapshot_preview1" | "wasi_unstable" => {}
                other => {
                    return Err(format!(
                        "import {other}.{} is not provided by this host",
                        import.name()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn exports(&self, name: &str) -> bool {
        self.module.exports().any(|e| e.name() == name)
    }
}

/// One instance of a plugin: used by one call at a time.
pub struct Slot {
    store: Store,
    instance: Instance,
    env: FunctionEnv<HostEnv>,
    memory: Memory,
    malloc: TypedFunction<i32, i32>,
    /// A call trapped or ran out of budget: the guest's state (allocator,
    /// globals) may be inconsistent, so the slot is rebuilt before reuse.
    pub broken: bool,
}

impl Slot {
    /// Instantiates the module, runs `_initialize` (WASI reactors) and
    /// `Init` (non-zero or a trap fails the load).
    pub fn new(
        compiled: &CompiledModule,
        services: Arc<PluginServices>,
        limits: &Limits,
    ) -> Result<Self, String> {
        let mut store = Store::new(compiled.engine.clone());
        let env = FunctionEnv::new(&mut store, HostEnv::new(services));
        let mut imports = Imports::new();
        for import in compiled.module.imports() {
            let ExternType::Function(ty) = import.ty() else {
                continue;
            };
            let function = match import.module() {
                "paca" => host::paca_function(&mut store, &env, import.name(), ty.clone())?,
                _ => host::wasi_function(&mut store, &env, import.name(), ty.clone()),
            };
            imports.define(import.module(), import.name(), function);
        }
        let instance = Instance::new(&mut store, &compiled.module, &imports)
            .map_err(|e| format!("instantiating the module failed: {e}"))?;
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(|_| "the module does not export its memory as \"memory\"".to_owned())?
            .clone();
        let malloc = instance
            .exports
            .get_typed_function::<i32, i32>(&store, "paca_malloc")
            .or_else(|_| {
                instance
                    .exports
                    .get_typed_function::<i32, i32>(&store, "malloc")
            })
            .map_err(|e| format!("paca_malloc/malloc must be (i32) -> i32: {e}"))?;
        {
            let data = env.as_mut(&mut store);
            data.memory = Some(memory.clone());
            data.malloc = Some(malloc.clone());
        }
        let mut slot = Self {
            store,
            instance,
            env,
            memory,
            malloc,
            broken: false,
        };
        if let Ok(init) = slot
            .instance
            .exports
            .get_typed_function::<(), ()>(&slot.store, "_initialize")
        {
            slot.begin(CallContext::system(limits.call_timeout), limits);
            let result = init.call(&mut slot.store);
            slot.end();
            result.map_err(|e| format!("_initialize failed: {}", slot.describe(e)))?;
        }
        if let Ok(init) = slot
            .instance
            .exports
            .get_typed_function::<(), i32>(&slot.store, "Init")
        {
            slot.begin(CallContext::system(limits.call_timeout), limits);
            let result = init.call(&mut slot.store);
            slot.end();
            match result {
                Ok(0) => {}
                Ok(code) => return Err(format!("Init returned {code}")),
                Err(e) => return Err(format!("Init failed: {}", slot.describe(e))),
            }
        }
        Ok(slot)
    }

    fn begin(&mut self, ctx: CallContext, limits: &Limits) {
        set_remaining_points(&mut self.store, &self.instance, limits.cpu_budget);
        self.env.as_mut(&mut self.store).call = Some(ctx);
    }

    fn end(&mut self) {
        self.env.as_mut(&mut self.store).call = None;
    }

    fn exhausted(&mut self) -> bool {
        matches!(
            get_remaining_points(&mut self.store, &self.instance),
            MeteringPoints::Exhausted
        )
    }

    fn describe(&mut self, error: RuntimeError) -> String {
        if self.exhausted() {
            return CallError::CpuBudget.to_string();
        }
        error.message()
    }

    fn classify(&mut self, error: RuntimeError) -> CallError {
        self.broken = true;
        if self.exhausted() {
            return CallError::CpuBudget;
        }
        let message = error.message();
        if message.contains(host::DEADLINE_MESSAGE) {
            return CallError::Timeout(Duration::ZERO);
        }
        CallError::Trap(message)
    }

    /// Copies `bytes` into guest memory through `paca_malloc` (empty input
    /// is `(0, 0)` without an allocation).
    fn write_input(&mut self, bytes: &[u8]) -> Result<(i32, i32), CallError> {
        if bytes.is_empty() {
            return Ok((0, 0));
        }
        let len = i32::try_from(bytes.len())
            .map_err(|_| CallError::Unavailable("input too large".into()))?;
        let ptr = self
            .malloc
            .call(&mut self.store, len)
            .map_err(|e| self.classify(e))?;
        if ptr == 0 {
            self.broken = true;
            return Err(CallError::Trap("paca_malloc returned 0".into()));
        }
        self.memory
            .view(&self.store)
            .write(ptr as u32 as u64, bytes)
            .map_err(|e| {
                self.broken = true;
                CallError::Trap(format!(
                    "paca_malloc returned an out-of-bounds pointer: {e}"
                ))
            })?;
        Ok((ptr, len))
    }

    fn read_packed(&mut self, packed: i64, max: usize) -> Result<Vec<u8>, CallError> {
        if packed == 0 {
            return Ok(Vec::new());
        }
        let ptr = (packed as u64 >> 32) as u32;
        let len = (packed as u64 & 0xffff_ffff) as usize;
        if len > max {
            return Err(CallError::ResponseTooLarge(max));
        }
        let mut out = vec![0u8; len];
        self.memory
            .view(&self.store)
            .read(ptr as u64, &mut out)
            .map_err(|e| CallError::Trap(format!("result pointer out of bounds: {e}")))?;
        Ok(out)
    }

    fn reset_allocator(&mut self) {
        if let Ok(reset) = self
            .instance
            .exports
            .get_typed_function::<(), ()>(&self.store, "ResetAllocator")
            && reset.call(&mut self.store).is_err()
        {
            self.broken = true;
        }
    }

    /// `HandleRequest(ptr, len) -> i64`: the response bytes, copied out
    /// before `ResetAllocator`.
    pub fn handle_request(
        &mut self,
        input: &[u8],
        ctx: CallContext,
        limits: &Limits,
    ) -> Result<Vec<u8>, CallError> {
        let handler = self
            .instance
            .exports
            .get_typed_function::<(i32, i32), i64>(&self.store, "HandleRequest")
            .map_err(|_| CallError::MissingExport("HandleRequest"))?;
        self.begin(ctx, limits);
        let result = (|| {
            let (ptr, len) = self.write_input(input)?;
            let packed = handler
                .call(&mut self.store, ptr, len)
                .map_err(|e| self.classify(e))?;
            self.read_packed(packed, limits.max_response_bytes)
        })();
        if !self.broken {
            self.reset_allocator();
        }
        self.end();
        result
    }

    /// `HandleEvent(topicPtr, topicLen, payloadPtr, payloadLen)`; a module
    /// without the export ignores events.
    pub fn handle_event(
        &mut self,
        topic: &str,
        payload: &[u8],
        ctx: CallContext,
        limits: &Limits,
    ) -> Result<(), CallError> {
        let Ok(handler) = self
            .instance
            .exports
            .get_typed_function::<(i32, i32, i32, i32), ()>(&self.store, "HandleEvent")
        else {
            return Ok(());
        };
        self.begin(ctx, limits);
        let result = (|| {
            let (tp, tl) = self.write_input(topic.as_bytes())?;
            let (pp, pl) = self.write_input(payload)?;
            handler
                .call(&mut self.store, tp, tl, pp, pl)
                .map_err(|e| self.classify(e))
        })();
        if !self.broken {
            self.reset_allocator();
        }
        self.end();
        result
    }

    /// `HandleWakeup(payloadPtr, payloadLen)`: a wakeup the plugin
    /// scheduled came due. `Ok(false)` when the module lacks the export.
    pub fn handle_wakeup(
        &mut self,
        payload: &[u8],
        ctx: CallContext,
        limits: &Limits,
    ) -> Result<bool, CallError> {
        let Ok(handler) = self
            .instance
            .exports
            .get_typed_function::<(i32, i32), ()>(&self.store, "HandleWakeup")
        else {
            return Ok(false);
        };
        self.begin(ctx, limits);
        let result = (|| {
            let (pp, pl) = self.write_input(payload)?;
            handler
                .call(&mut self.store, pp, pl)
                .map_err(|e| self.classify(e))
        })();
        if !self.broken {
            self.reset_allocator();
        }
        self.end();
        result.map(|()| true)
    }

    /// `Shutdown()` on unload, best effort.
    pub fn shutdown(&mut self, limits: &Limits) {
        if let Ok(shutdown) = self
            .instance
            .exports
            .get_typed_function::<(), ()>(&self.store, "Shutdown")
        {
            self.begin(CallContext::system(limits.call_timeout), limits);
            let _ = shutdown.call(&mut self.store);
            self.end();
        }
    }
}

type Job = Box<dyn FnOnce(&mut Slot, &Limits) + Send>;

enum Message {
    Run(Job),
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// A plugin's instances. A wasmer `Store` is not `Send`, so each instance
/// lives on its own thread for its whole life and calls are sent to it:
/// one call at a time per instance (Paca's per-instance mutex), and
/// `limits.instances` of them in parallel. A trapped instance is rebuilt
/// on its thread before the next call.
pub struct Instances {
    limits: Limits,
    workers: Vec<std::sync::mpsc::Sender<Message>>,
    /// Indexes of idle workers; a permit guarantees one is there.
    idle: Arc<std::sync::Mutex<Vec<usize>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

fn worker(
    index: usize,
    compiled: CompiledModule,
    services: Arc<PluginServices>,
    limits: Limits,
    jobs: std::sync::mpsc::Receiver<Message>,
    ready: Option<std::sync::mpsc::Sender<Result<(), String>>>,
) {
    let mut slot: Option<Slot> = None;
    if let Some(ready) = ready {
        match Slot::new(&compiled, services.clone(), &limits) {
            Ok(s) => {
                slot = Some(s);
                let _ = ready.send(Ok(()));
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    while let Ok(message) = jobs.recv() {
        match message {
            Message::Run(job) => {
                if slot.as_ref().is_none_or(|s| s.broken) {
                    // A trapped instance is dropped and rebuilt from the module.
                    slot = None;
                    match Slot::new(&compiled, services.clone(), &limits) {
                        Ok(s) => slot = Some(s),
                        Err(e) => {
                            tracing::error!(plugin = %services.name, instance = index, error = %e, "instance rebuild failed");
                            // The job is dropped: its caller sees the reply channel close.
                            continue;
                        }
                    }
                }
                if let Some(s) = slot.as_mut() {
                    job(s, &limits);
                }
            }
            Message::Shutdown(done) => {
                if let Some(s) = slot.as_mut()
                    && !s.broken
                {
                    s.shutdown(&limits);
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

impl Instances {
    /// Starts the instance threads; the first instance is built (and its
    /// `Init` run) before this returns, so a module whose `Init` fails
    /// never replaces a working version.
    pub fn new(
        compiled: CompiledModule,
        services: Arc<PluginServices>,
        limits: Limits,
    ) -> Result<Self, String> {
        let n = limits.instances.max(1);
        let mut workers = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (c, s, l) = (compiled.clone(), services.clone(), limits.clone());
            std::thread::Builder::new()
                .name(format!("plugin-{}-{index}", services.name))
                .spawn(move || worker(index, c, s, l, rx, (index == 0).then_some(ready_tx)))
                .map_err(|e| format!("starting an instance thread: {e}"))?;
            if index == 0 {
                ready_rx
                    .recv()
                    .map_err(|_| "the instance thread died".to_owned())??;
            }
            workers.push(tx);
        }
        Ok(Self {
            limits,
            workers,
            idle: Arc::new(std::sync::Mutex::new((0..n).collect())),
            permits: Arc::new(tokio::sync::Semaphore::new(n)),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `f` on a free instance. The caller waits at most the call
    /// timeout (including the wait for a free instance); a guest still
    /// running then keeps its instance until its CPU budget stops it.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Slot, &Limits) -> Result<R, CallError> + Send + 'static,
    ) -> Result<R, CallError> {
        let started = Instant::now();
        let timeout = self.limits.call_timeout;
        let permit = tokio::time::timeout(timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| CallError::Timeout(timeout))?
            .map_err(|_| CallError::Unavailable("plugin is unloading".into()))?;
        let index = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| CallError::Unavailable("no idle instance".into()))?;
        let (reply, result) = tokio::sync::oneshot::channel();
        let idle = self.idle.clone();
        let job: Job = Box::new(move |slot, limits| {
            let _ = reply.send(f(slot, limits));
            // Free the instance before the permit, so a permit holder
            // always finds an idle index.
            idle.lock().unwrap_or_else(|e| e.into_inner()).push(index);
            drop(permit);
        });
        if self.workers[index].send(Message::Run(job)).is_err() {
            return Err(CallError::Unavailable("instance thread stopped".into()));
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, result).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Unavailable(
                "the instance could not be rebuilt".into(),
            )),
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// Calls `Shutdown` on every instance after its running call, and
    /// stops the threads.
    pub async fn shutdown(&self) {
        let mut waits = Vec::new();
        for worker in &self.workers {
            let (done, wait) = std::sync::mpsc::channel();
            if worker.send(Message::Shutdown(done)).is_ok() {
                waits.push(wait);
            }
        }
        let limit = self.limits.call_timeout * 2;
        let _ = tokio::task::spawn_blocking(move || {
            for wait in waits {
                let _ = wait.recv_timeout(limit);
            }
        })
        .await;
    }
}

/// The deadline of a call starting now.
pub fn deadline(limits: &Limits) -> Instant {
    Instant::now() + limits.call_timeout
}
