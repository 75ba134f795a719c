//! The asynchronous payload cleaner: discards payloads of subsumed or replaced entries
//! off the write path, with retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::storage::{StateHandle, StateStorage};

const ATTEMPTS: u32 = 5;

/// Discards payloads in the background. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PayloadCleaner {
    tx: mpsc::UnboundedSender<StateHandle>,
    pending: Arc<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl PayloadCleaner {
    /// Starts the cleaner task for `storage` (needs a Tokio runtime). The task ends
    /// when every clone of the cleaner is dropped and the queue is drained.
    pub fn start(storage: StateStorage) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<StateHandle>();
        let pending = Arc::new(Pending::default());
        let p = pending.clone();
        tokio::spawn(async move {
            while let Some(handle) = rx.recv().await {
                let mut delay = Duration::from_millis(50);
                for attempt in 1..=ATTEMPTS {
                    match storage.discard(&handle).await {
                        Ok(()) => break,
                        Err(e) if attempt == ATTEMPTS => {
                            tracing::warn!(path = %handle.path, error = %e, "giving up discarding payload; it is orphaned");
                        }
                        Err(_) => {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                }
                if p.count.fetch_sub(1, Ordering::SeqCst) == 1 {
                    p.idle.notify_waiters();
                }
            }
        });
        Self { tx, pending }
    }

    /// Queues `handle`'s payload for deletion.
    pub fn discard(&self, handle: StateHandle) {
        self.pending.count.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(handle).is_err() {
            self.pending.count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits until every queued payload has been handled.
    pub async fn flush(&self) {
        loop {
            let idle = self.pending.idle.notified();
            if self.pending.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}
