//! Backpressure on what waits for the host: a per-connection and a global bound on the bytes
//! of messages pushed to the host's queue and not yet drained by it.
//!
//! The host drains its queue whole, so "not yet drained" needs no per-item bookkeeping: each
//! drain starts a new generation, and a connection's count is only current if it was charged
//! in this generation. A transport asks [`InboundBudget::must_wait`] before it reads; when the
//! host is behind it stops reading that connection (TCP backpressure, or a held polling POST)
//! and waits for the next drain ([`InboundBudget::wait_drained`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// What one message is charged on top of its bytes: the host's per-record cost, so a flood
/// of tiny messages is bounded too.
pub const RECORD_OVERHEAD: usize = 64;

/// The smallest and largest read of a throttled connection (see [`InboundBudget::read_limit`]).
pub const MIN_READ: usize = 4 * 1024;
pub const MAX_READ: usize = 64 * 1024;

/// The bounds and the shared count.
pub struct InboundBudget {
    generation: AtomicU64,
    total: AtomicUsize,
    max_per_conn: usize,
    max_total: usize,
    drained: Notify,
}

/// One connection's count (kept in its session).
#[derive(Default)]
pub struct InboundMeter {
    generation: AtomicU64,
    bytes: AtomicUsize,
}

impl InboundBudget {
    pub fn new(max_per_conn: usize, max_total: usize) -> Self {
        InboundBudget {
            generation: AtomicU64::new(1),
            total: AtomicUsize::new(0),
            max_per_conn,
            max_total,
            drained: Notify::new(),
        }
    }

    /// No bound (the client engine's queue).
    pub fn unbounded() -> Self {
        Self::new(usize::MAX, usize::MAX)
    }

    /// Counts a message of `bytes` about to be pushed to the host. Called before the push, so
    /// a count never outlives the drain that took its message.
    pub fn charge(&self, meter: &InboundMeter, bytes: usize) {
        let cost = bytes + RECORD_OVERHEAD;
        let generation = self.generation.load(Ordering::Acquire);
        // Only the engine thread charges a given meter: load and store do not race.
        if meter.generation.load(Ordering::Relaxed) != generation {
            meter.generation.store(generation, Ordering::Relaxed);
            meter.bytes.store(cost, Ordering::Relaxed);
        } else {
            meter.bytes.fetch_add(cost, Ordering::Relaxed);
        }
        self.total.fetch_add(cost, Ordering::Relaxed);
    }

    /// `Some(generation)` when the connection must stop reading until the host drains: its own
    /// messages waiting exceed the per-connection bound, or all connections' exceed the global
    /// one and it has some waiting (a connection with nothing waiting reads on).
    pub fn must_wait(&self, meter: &InboundMeter) -> Option<u64> {
        let generation = self.generation.load(Ordering::Acquire);
        if meter.generation.load(Ordering::Relaxed) != generation {
            return None;
        }
        let mine = meter.bytes.load(Ordering::Relaxed);
        let over = mine > self.max_per_conn
            || (mine > 0 && self.total.load(Ordering::Relaxed) > self.max_total);
        over.then_some(generation)
    }

    /// How many bytes a throttled connection (one the host fell behind) may read at once: a
    /// share of what is left of its bound, so one read of tiny messages (each charged
    /// [`RECORD_OVERHEAD`] more than its bytes) cannot put much more before the host than the
    /// bound. Between [`MIN_READ`] and [`MAX_READ`].
    pub fn read_limit(&self, meter: &InboundMeter) -> usize {
        let generation = self.generation.load(Ordering::Acquire);
        let mine = if meter.generation.load(Ordering::Relaxed) == generation {
            meter.bytes.load(Ordering::Relaxed)
        } else {
            0
        };
        (self.max_per_conn.saturating_sub(mine) / 8).clamp(MIN_READ, MAX_READ)
    }

    /// The host took everything queued: every count starts over.
    pub fn drained(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// Resolves once the host drained after `generation` (at once if it already has).
    pub async fn wait_drained(&self, generation: u64) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            notified.await;
        }
    }

    /// Waits while `meter` is over its bounds (a polling POST is held here).
    pub async fn wait_ready(&self, meter: &InboundMeter) {
        while let Some(generation) = self.must_wait(meter) {
            self.wait_drained(generation).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_connection_past_its_bound_waits_until_the_next_drain() {
        let budget = InboundBudget::new(1000, usize::MAX);
        let meter = InboundMeter::default();
        assert_eq!(budget.must_wait(&meter), None, "nothing charged yet");
        budget.charge(&meter, 900);
        assert_eq!(budget.must_wait(&meter), None, "964 <= 1000");
        budget.charge(&meter, 10);
        let generation = budget.must_wait(&meter).expect("over its bound");
        assert!(budget.wait_drained(generation).now_or_never().is_none());
        budget.drained();
        assert!(budget.wait_drained(generation).now_or_never().is_some());
        assert_eq!(budget.must_wait(&meter), None, "the drain took it all");
        budget.charge(&meter, 10);
        assert_eq!(budget.must_wait(&meter), None, "counting starts over");
    }

    #[test]
    fn the_global_bound_stops_only_connections_with_messages_waiting() {
        let budget = InboundBudget::new(usize::MAX, 500);
        let (flooder, quiet) = (InboundMeter::default(), InboundMeter::default());
        budget.charge(&flooder, 600);
        assert!(budget.must_wait(&flooder).is_some());
        assert_eq!(
            budget.must_wait(&quiet),
            None,
            "a quiet connection reads on"
        );
        budget.drained();
        assert_eq!(budget.must_wait(&flooder), None);
    }

    #[test]
    fn a_throttled_read_is_a_share_of_what_is_left() {
        let budget = InboundBudget::new(64_000, usize::MAX);
        let meter = InboundMeter::default();
        assert_eq!(budget.read_limit(&meter), 8_000);
        budget.charge(&meter, 40_000 - RECORD_OVERHEAD);
        assert_eq!(budget.read_limit(&meter), 3_000_usize.max(MIN_READ));
        let big = InboundBudget::new(usize::MAX, usize::MAX);
        assert_eq!(big.read_limit(&meter), MAX_READ);
    }

    #[test]
    fn tiny_messages_are_charged_their_overhead() {
        let budget = InboundBudget::new(10 * RECORD_OVERHEAD, usize::MAX);
        let meter = InboundMeter::default();
        for _ in 0..10 {
            budget.charge(&meter, 0);
        }
        assert_eq!(budget.must_wait(&meter), None);
        budget.charge(&meter, 0);
        assert!(budget.must_wait(&meter).is_some());
    }

    #[tokio::test]
    async fn a_held_reader_resumes_when_another_thread_drains() {
        let budget = std::sync::Arc::new(InboundBudget::new(0, usize::MAX));
        let meter = InboundMeter::default();
        budget.charge(&meter, 1);
        let b = budget.clone();
        let drainer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            b.drained();
        });
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            budget.wait_ready(&meter),
        )
        .await
        .expect("resumed");
        drainer.join().unwrap();
    }
}
