//! Memory freed after a burst goes back to the operating system once the
//! server is quiet.
//!
//! glibc's allocator keeps what a burst of requests freed in its arenas
//! for reuse, so a server that handled a few thousand writes stays at its
//! peak resident size while idle. `malloc_trim(0)` hands every whole free
//! page back (`madvise(MADV_DONTNEED)`; glibc ≥ 2.8 does this inside the
//! heap too, not only at its top). It walks and locks every arena, so it
//! runs only after a spell with (almost) no requests and statements, and
//! only when enough happened since the last trim to be worth it.

use std::time::Duration;

/// How often the activity counter is sampled; a sample with little
/// activity counts as quiet.
const SAMPLE: Duration = Duration::from_secs(2);
/// At most this much activity (requests plus statements) in a sample is
/// still quiet: the log's consumers poll and move checkpoints while idle.
const QUIET: u64 = 40;
/// Activity since the last trim that makes another worth it.
const WORTH: u64 = 500;

/// Starts the trimmer on a thread of its own (it blocks while trimming,
/// which must not stall a runtime worker). A no-op where the allocator is
/// not glibc's.
pub fn start_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("memory-trim".to_owned())
            .spawn(|| {
                let mut last = gateways::metrics::activity();
                let mut since_trim = 0u64;
                loop {
                    std::thread::sleep(SAMPLE);
                    let now = gateways::metrics::activity();
                    let recent = now.saturating_sub(last);
                    last = now;
                    since_trim += recent;
                    if recent <= QUIET && since_trim >= WORTH {
                        since_trim = 0;
                        let before = resident_mb();
                        // SAFETY: malloc_trim takes no pointers; it only
                        // locks and walks the allocator's own arenas.
                        #[allow(unsafe_code)]
                        unsafe {
                            libc::malloc_trim(0)
                        };
                        tracing::debug!(
                            before_mb = before,
                            after_mb = resident_mb(),
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
