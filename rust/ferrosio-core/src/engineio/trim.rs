//! Giving freed memory back to the OS after a large free.
//!
//! glibc's malloc keeps freed chunks in its arenas: after a slow client's backlog of
//! mid-sized frames (below the mmap threshold) is dropped, the process's RSS stays where it
//! peaked until something else reuses that memory. `malloc_trim` returns the free pages.
//! It walks every arena, so it runs only after a large free and at most once per
//! [`MIN_INTERVAL`]; other allocators (musl, macOS) need nothing here.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Less than this freed since the last trim is left to the allocator.
pub const LARGE_FREE: usize = 1 << 20;
/// Trims at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only releases free pages; it takes the arena locks itself.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// A trim is scheduled (see [`after_free`]).
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Held by the scheduled trim's task: clears [`SCHEDULED`] when dropped.
struct Scheduled;

impl Drop for Scheduled {
    fn drop(&mut self) {
        SCHEDULED.store(false, Ordering::Relaxed);
    }
}

/// Call after dropping `bytes` of buffers: returns free memory to the OS once at least
/// [`LARGE_FREE`] bytes were freed since the last trim, at most once per [`MIN_INTERVAL`].
/// A free that comes too soon after the last trim is not lost: on a tokio runtime, one trim
/// is scheduled for the end of the interval (so the end of a wave of frees is trimmed too).
pub fn after_free(bytes: usize) {
    static FREED: AtomicUsize = AtomicUsize::new(0);
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let freed = FREED.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if freed < LARGE_FREE {
        return;
    }
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
    let last = LAST_MS.load(Ordering::Relaxed);
    let interval = MIN_INTERVAL.as_millis() as u64;
    if last != 0 && now < last + interval {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            if !SCHEDULED.swap(true, Ordering::Relaxed) {
                let wait = Duration::from_millis(last + interval - now);
                // Cleared however the task ends (a runtime shutting down drops it unpolled).
                let scheduled = Scheduled;
                rt.spawn(async move {
                    tokio::time::sleep(wait).await;
                    drop(scheduled);
                    after_free(0);
                });
            }
        }
        return;
    }
    if LAST_MS
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        FREED.store(0, Ordering::Relaxed);
        trim();
    }
}
