//! The client's inbound queue: the same shape as [`crate::bridge::InboundQueue`] (a batch
//! drained at once, one wake-up byte per idle -> armed transition), generic over the item.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub struct WakeQueue<T> {
    items: Mutex<Vec<T>>,
    armed: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl<T> WakeQueue<T> {
    pub fn new() -> std::io::Result<Arc<Self>> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Arc::new(WakeQueue {
            items: Mutex::new(Vec::with_capacity(64)),
            armed: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        }))
    }

    /// The fd the host watches for readability.
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.wake_rx.as_raw_fd()
    }

    pub fn push(&self, item: T) {
        self.items.lock().push(item);
        self.wake();
    }

    /// Appends a batch (no-op when empty).
    pub fn push_many(&self, items: &mut Vec<T>) {
        if items.is_empty() {
            return;
        }
        self.items.lock().append(items);
        self.wake();
    }

    fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending: nothing is lost.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    /// Takes every queued item; clears the wake-up first so that a concurrent push re-arms it.
    pub fn drain(&self) -> Vec<T> {
        let mut buf = [0u8; 64];
        loop {
            match (&self.wake_rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.armed.store(false, Ordering::Release);
        std::mem::take(&mut *self.items.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable<T>(q: &WakeQueue<T>) -> bool {
        let mut b = [0u8; 1];
        matches!((&q.wake_rx).read(&mut b), Ok(1))
    }

    #[test]
    fn batches_with_one_wake_up() {
        let q = WakeQueue::<u32>::new().unwrap();
        assert!(!readable(&q));
        q.push(1);
        let mut more = vec![2, 3];
        q.push_many(&mut more);
        assert!(more.is_empty());
        assert!(readable(&q));
        assert!(!readable(&q));
        assert_eq!(q.drain(), vec![1, 2, 3]);
        q.push_many(&mut Vec::new());
        assert!(!readable(&q), "an empty batch does not wake");
        q.push(4);
        assert!(readable(&q));
    }
}
