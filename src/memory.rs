//! Memory freed after a burst goes back to the operating system once the
//! server is quiet.
//!
//! glibc's allocator keeps what a burst of requests freed in its arenas
//! for reuse, so a server that handled a few thousand writes stays at its
//! peak resident size while idle. `malloc_trim(0)` hands every whole free
//! page back (`madvise(MADV_DONTNEED)`; glibc ≥ 2.8 does this inside the
//! heap too, not only at its top). It walks and locks every arena, so it
//! runs only after a quiet spell, and only when enough happened since the
//! last trim to be worth it.
//!
//! [`configure`] sets the allocator up before any thread starts, so that
//! large blocks never stay behind in the first place.

use std::time::Duration;

/// How often the activity counters are sampled: often enough that a pause
/// of a second is used.
const SAMPLE: Duration = Duration::from_millis(500);
/// A sample with at most this many requests and statements is quiet. An
/// idle server still runs ~40 statements a second (the log's consumers
/// poll and move their checkpoints) and answers health checks and
/// scrapes; a loaded one runs thousands.
const QUIET_REQUESTS: u64 = 2;
const QUIET_STATEMENTS: u64 = 100;
/// Requests, or statements, since the last trim that make another worth it.
const WORTH_REQUESTS: u64 = 200;
const WORTH_STATEMENTS: u64 = 10_000;

/// Blocks at least this large get pages of their own and return them when
/// freed. glibc's default threshold starts at 128 KiB but rises to the
/// size of every mapped block freed (up to 32 MiB), so after the first
/// password hash (Argon2 takes 19 MiB per hash or verification, on a
/// blocking thread) every later one came from an arena and its 19 MiB
/// stayed resident (69 MB at start instead of 50 in `bench http`; three
/// logins on a fresh server kept 58 MB). Fixing the threshold keeps those
/// blocks out of the arenas. Blocks this large are rare on request paths
/// (bodies stream, batches are smaller): `bench http` measured no slower.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;
/// Arenas in all (glibc's default is eight per CPU): every thread that
/// allocates gets one, and each keeps what a burst freed in it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 2;

/// Sets the allocator's thresholds. Call it first thing in `main`, before
/// any thread is started. An operator's `MALLOC_ARENA_MAX` or
/// `MALLOC_MMAP_THRESHOLD_` in the environment wins (glibc read it at
/// start-up). A no-op where the allocator is not glibc's.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            (
                "MALLOC_MMAP_THRESHOLD_",
                libc::M_MMAP_THRESHOLD,
                MMAP_THRESHOLD,
            ),
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENA_MAX),
        ];
        for (variable, param, value) in settings {
            if std::env::var_os(variable).is_none() {
                // SAFETY: mallopt takes two integers and changes only the
                // allocator's own settings; no thread is allocating yet.
                #[allow(unsafe_code)]
                unsafe {
                    libc::mallopt(param, value)
                };
            }
        }
    }
}

/// Starts the trimmer on a thread of its own (it blocks while trimming,
/// which must not stall a runtime worker). A no-op where the allocator is
/// not glibc's.
pub fn start_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("memory-trim".to_owned())
            .spawn(|| {
                let (mut requests, mut statements) = gateways::metrics::activity();
                let (mut requests_since, mut statements_since) = (0u64, 0u64);
                loop {
                    std::thread::sleep(SAMPLE);
                    let (r, s) = gateways::metrics::activity();
                    let (recent_r, recent_s) =
                        (r.saturating_sub(requests), s.saturating_sub(statements));
                    (requests, statements) = (r, s);
                    requests_since += recent_r;
                    statements_since += recent_s;
                    let quiet = recent_r <= QUIET_REQUESTS && recent_s <= QUIET_STATEMENTS;
                    let worth =
                        requests_since >= WORTH_REQUESTS || statements_since >= WORTH_STATEMENTS;
                    if quiet && worth {
                        (requests_since, statements_since) = (0, 0);
                        let before = resident_mb();
                        let started = std::time::Instant::now();
                        // SAFETY: malloc_trim takes no pointers; it only
                        // locks and walks the allocator's own arenas.
                        #[allow(unsafe_code)]
                        unsafe {
                            libc::malloc_trim(0)
                        };
                        tracing::debug!(
                            before_mb = before,
                            after_mb = resident_mb(),
                            ms = started.elapsed().as_secs_f64() * 1e3,
                            "returned freed memory to the OS"
                        );
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "memory trimmer not started");
        }
    }
}

/// Resident set size in MB, from `/proc/self/statm` (for the log line).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |pages| pages * 4096.0 / 1_048_576.0)
}
