//! The process's allocator, and memory freed after a burst going back to
//! the operating system once the server is quiet.
//!
//! [`Allocator`] serves small blocks from mimalloc and large ones from the
//! system allocator. Under `bench http`'s `PATCH` load glibc's allocator
//! was 23 % of the server's instructions (callgrind, 400 `PATCH`es and
//! what the log's consumers did for them: 970–974k instructions per
//! `PATCH` with glibc alone, 784–795k with this split); mimalloc's
//! per-thread free lists take no lock and need no consolidation. It is
//! built without transparent huge pages (`no_thp`): with them every
//! thread's heap touched 2 MiB pages and the server idled 20–50 MB
//! larger. Blocks of [`LARGE`] and more (Argon2's 19 MiB per password
//! check, a big upload's buffer) stay with glibc, which maps each one on
//! its own and unmaps it on free, so a login never leaves its hash's
//! memory resident; mimalloc would keep such a block in its arena until a
//! later purge.
//!
//! Freed memory stays with the allocators for reuse, so a server that
//! handled a few thousand writes would stay at its peak resident size
//! while idle. After a quiet spell, and only when enough happened since the
//! last time to be worth it, the trimmer hands every whole free page back:
//! mimalloc's (`mi_collect(true)`, which purges its arenas now rather than
//! on the next allocation) and glibc's (`malloc_trim(0)`,
//! `madvise(MADV_DONTNEED)` inside the heap too since glibc 2.8). Both
//! walk and lock their heaps, so they run on a thread of their own.
//!
//! [`configure`] sets glibc up before any thread starts, so that large
//! blocks never stay behind in the first place.

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Duration;

/// Blocks at least this large come from the system allocator (whose mmap
/// threshold [`configure`] pins at the same size), smaller ones from
/// mimalloc.
pub const LARGE: usize = 1 << 20;

/// The global allocator: see the module's documentation.
pub struct Allocator;

impl Allocator {
    fn small(size: usize) -> bool {
        size < LARGE
    }
}

// SAFETY: every block goes back to the allocator that made it: the choice
// depends only on the layout's size, which `dealloc` and `realloc` receive
// unchanged from the caller (GlobalAlloc's contract); a `realloc` that
// crosses `LARGE` moves the block between the two.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::small(layout.size()) {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::small(layout.size()) {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::small(layout.size()) {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (Self::small(layout.size()), Self::small(new_size)) {
            (true, true) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // Across allocators: a new block, the contents, the old
                // block freed where it came from.
                let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
                    return std::ptr::null_mut();
                };
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

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

/// Blocks at least this large (those [`Allocator`] hands to glibc) get
/// pages of their own and return them when freed. glibc's default threshold starts at 128 KiB but rises to the
/// size of every mapped block freed (up to 32 MiB), so after the first
/// password hash (Argon2 takes 19 MiB per hash or verification, on a
/// blocking thread) every later one came from an arena and its 19 MiB
/// stayed resident (69 MB at start instead of 50 in `bench http`; three
/// logins on a fresh server kept 58 MB). Fixing the threshold keeps those
/// blocks out of the arenas. Blocks this large are rare on request paths
/// (bodies stream, batches are smaller): `bench http` measured no slower.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = LARGE as libc::c_int;
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
                        // SAFETY: neither takes a pointer; each only locks
                        // and walks its allocator's own heaps. mimalloc's
                        // purge would otherwise wait for the next
                        // allocation on an idle server.
                        #[allow(unsafe_code)]
                        unsafe {
                            libmimalloc_sys::mi_collect(true);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// Small blocks are mimalloc's and large ones glibc's, and a block
    /// keeps its contents when `realloc` moves it between the two, both
    /// ways; each allocator frees only what it made (a mixup would abort
    /// the test process).
    #[test]
    #[allow(unsafe_code)]
    fn blocks_keep_their_contents_across_the_threshold() {
        let align = 16;
        let small = Layout::from_size_align(1000, align).unwrap();
        let large = Layout::from_size_align(3 * LARGE, align).unwrap();
        // SAFETY: every pointer is used within the layout it was allocated
        // with and freed once, with that layout.
        unsafe {
            let p = Allocator.alloc(small);
            assert!(!p.is_null());
            assert!(libmimalloc_sys::mi_is_in_heap_region(p.cast()));
            for i in 0..small.size() {
                *p.add(i) = pattern(i);
            }

            let grown = Allocator.realloc(p, small, large.size());
            assert!(!grown.is_null());
            assert!(!libmimalloc_sys::mi_is_in_heap_region(grown.cast()));
            assert_eq!(grown as usize % align, 0);
            assert!((0..small.size()).all(|i| *grown.add(i) == pattern(i)));
            *grown.add(large.size() - 1) = 1;

            let shrunk = Allocator.realloc(grown, large, 500);
            assert!(!shrunk.is_null());
            assert!(libmimalloc_sys::mi_is_in_heap_region(shrunk.cast()));
            assert!((0..500).all(|i| *shrunk.add(i) == pattern(i)));
            Allocator.dealloc(shrunk, Layout::from_size_align(500, align).unwrap());

            let zeroed = Allocator.alloc_zeroed(large);
            assert!(!zeroed.is_null());
            assert!(
                std::slice::from_raw_parts(zeroed, large.size())
                    .iter()
                    .all(|b| *b == 0)
            );
            Allocator.dealloc(zeroed, large);
        }
    }
}
