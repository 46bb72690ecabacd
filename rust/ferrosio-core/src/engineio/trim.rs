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

/// Bytes freed since the last trim.
static FREED: AtomicUsize = AtomicUsize::new(0);
/// When the last trim ran (ms since [`EPOCH`], plus one; 0: never).
static LAST_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// A trim is scheduled (see [`schedule`]).
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Held by the scheduled trim's task: clears [`SCHEDULED`] when dropped.
struct Scheduled;

impl Drop for Scheduled {
    fn drop(&mut self) {
        SCHEDULED.store(false, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Call after dropping `bytes` of buffers: returns free memory to the OS once at least
/// [`LARGE_FREE`] bytes were freed since the last trim, at most once per [`MIN_INTERVAL`].
/// A free that comes too soon after the last trim is not lost: on a tokio runtime, one trim
/// is scheduled for the end of the interval (so the end of a wave of frees is trimmed too).
pub fn after_free(bytes: usize) {
    let freed = FREED.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if freed < LARGE_FREE {
        return;
    }
    let now = now_ms();
    let last = LAST_MS.load(Ordering::Relaxed);
    let interval = MIN_INTERVAL.as_millis() as u64;
    if last != 0 && now < last + interval {
        schedule(Duration::from_millis(last + interval - now));
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

/// [`after_free`], but never trims in the caller: on a path that answers a client (a
/// WebSocket upgrade), the trim runs in a task of its own, after the caller yields.
pub fn after_free_soon(bytes: usize) {
    let freed = FREED.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if freed < LARGE_FREE {
        return;
    }
    let since = now_ms().saturating_sub(LAST_MS.load(Ordering::Relaxed));
    schedule(MIN_INTERVAL.saturating_sub(Duration::from_millis(since)));
}

/// One trim (through [`after_free`]) in `wait`, unless one is scheduled already or there is no
/// tokio runtime here.
fn schedule(wait: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if SCHEDULED.swap(true, Ordering::Relaxed) {
        return;
    }
    // Cleared however the task ends (a runtime shutting down drops it unpolled).
    let scheduled = Scheduled;
    rt.spawn(async move {
        tokio::time::sleep(wait).await;
        drop(scheduled);
        after_free(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_free_on_an_answering_path_is_trimmed_by_a_task_of_its_own() {
        after_free_soon(LARGE_FREE);
        // The trim (this one, or one that another test's free started meanwhile) runs once
        // the caller yields.
        for _ in 0..500 {
            if LAST_MS.load(Ordering::Relaxed) != 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no trim ran");
    }
}
