//! `CheckpointIdCounter`: a 64-bit, strictly increasing checkpoint-id counter.
//!
//! Starts at 1. `get_and_increment` is a compare-and-set loop over the backend's
//! counter storage, so concurrent callers never see the same value; every write is
//! fenced. After an unknown outcome an id may be skipped, never repeated, and
//! `set_count` never moves it back: an id handed out is never handed out again.
//!
//! Concurrent `get_and_increment` calls on one counter (this value and its clones)
//! with the same fence are coalesced: one fenced compare-and-set of +n serves the n
//! callers waiting, in the order they called, each with a distinct id of the range.
//! A failed CAS, or one whose outcome is unknown, fails every caller it served: no
//! id of a range that may not have been committed is handed out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::driver::CheckpointIdCounterDriver;
use crate::error::{Error, Result};
use crate::ids::Fence;

use super::JobStatus;

/// The first id handed out.
pub const INITIAL_CHECKPOINT_ID: u64 = 1;

const MAX_CAS_ATTEMPTS: u32 = 10_000;

/// The checkpoint-id counter of one job.
#[derive(Clone)]
pub struct CheckpointIdCounter {
    driver: Arc<dyn CheckpointIdCounterDriver>,
    increments: Arc<Mutex<Increments>>,
}

/// `get_and_increment` calls waiting for an id, and whether a task serves them.
#[derive(Default)]
struct Increments {
    waiting: VecDeque<Waiter>,
    serving: bool,
}

struct Waiter {
    fence: Fence,
    reply: oneshot::Sender<Result<u64>>,
}

impl std::fmt::Debug for CheckpointIdCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointIdCounter").finish_non_exhaustive()
    }
}

impl CheckpointIdCounter {
    /// Wraps a backend counter driver.
    pub fn new(driver: Arc<dyn CheckpointIdCounterDriver>) -> Self {
        Self {
            driver,
            increments: Arc::default(),
        }
    }

    /// The next id that `get_and_increment` would return.
    pub async fn get(&self) -> Result<u64> {
        Ok(self.driver.read().await?.map_or(INITIAL_CHECKPOINT_ID, |v| v.value))
    }

    /// Returns the current value and advances the counter by one. Concurrent calls
    /// with the same fence share one compare-and-set (see the module docs).
    pub async fn get_and_increment(&self, fence: &Fence) -> Result<u64> {
        fence.check_valid("counter")?;
        let (reply, id) = oneshot::channel();
        let start = {
            let mut inc = lock(&self.increments);
            inc.waiting.push_back(Waiter {
                fence: fence.clone(),
                reply,
            });
            !std::mem::replace(&mut inc.serving, true)
        };
        if start {
            tokio::spawn(self.clone().serve());
        }
        id.await.unwrap_or_else(|_| {
            Err(Error::OutcomeUnknown {
                op: "get_and_increment",
                key: "counter".into(),
                source: "the task serving the increment ended before it replied".into(),
            })
        })
    }

    /// Serves waiting increments, one batch (the longest-waiting caller's fence) per
    /// compare-and-set, until none is left.
    async fn serve(self) {
        let _reset = ResetOnPanic(&self.increments);
        loop {
            let batch = {
                let mut inc = lock(&self.increments);
                inc.waiting.retain(|w| !w.reply.is_closed());
                let Some(fence) = inc.waiting.front().map(|w| w.fence.clone()) else {
                    inc.serving = false;
                    return;
                };
                let (batch, rest) = std::mem::take(&mut inc.waiting)
                    .into_iter()
                    .partition::<Vec<_>, _>(|w| w.fence == fence);
                inc.waiting = rest.into();
                batch
            };
            match self.advance(&batch[0].fence, batch.len() as u64).await {
                Ok(first) => {
                    for (id, w) in (first..).zip(batch) {
                        let _ = w.reply.send(Ok(id));
                    }
                }
                Err(e) => {
                    for w in batch {
                        let _ = w.reply.send(Err(copy(&e)));
                    }
                }
            }
        }
    }

    /// Advances the counter by `n` in one fenced compare-and-set; returns the first
    /// id of the range.
    async fn advance(&self, fence: &Fence, n: u64) -> Result<u64> {
        fence.check_valid("counter")?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.driver.read().await?;
            let (value, version) = current.map_or((INITIAL_CHECKPOINT_ID, None), |v| (v.value, Some(v.version)));
            let next = value
                .checked_add(n)
                .ok_or_else(|| Error::corrupt("counter", None, "checkpoint id counter overflowed u64"))?;
            match self.driver.compare_and_set(fence, version, next).await {
                Ok(_) => return Ok(value),
                Err(Error::VersionConflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e),
            }
        }
        Err(Error::VersionConflict { key: "counter".into() })
    }

    /// Sets the counter to `value` (restore from a savepoint into a fresh job).
    ///
    /// The counter never goes back: ids below the current value may have been handed
    /// out already, and retention by id would then delete each new checkpoint. A
    /// `value` below [`get`](Self::get) is refused with
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest); the current value is a
    /// no-op.
    pub async fn set_count(&self, fence: &Fence, value: u64) -> Result<()> {
        fence.check_valid("counter")?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.driver.read().await?;
            let now = current.as_ref().map_or(INITIAL_CHECKPOINT_ID, |v| v.value);
            if value < now {
                return Err(Error::InvalidRequest {
                    key: "counter".into(),
                    message: format!(
                        "set_count({value}) would move the checkpoint id counter back from {now}; ids up to {} may have been handed out",
                        now - 1
                    ),
                });
            }
            let version = current.map(|v| v.version);
            match self.driver.compare_and_set(fence, version, value).await {
                Ok(_) => return Ok(()),
                Err(Error::VersionConflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e),
            }
        }
        Err(Error::VersionConflict { key: "counter".into() })
    }

    /// Removes the counter if `status` is globally terminal; keeps it otherwise.
    pub async fn shutdown(&self, fence: &Fence, status: JobStatus) -> Result<()> {
        if status.is_globally_terminal() {
            self.driver.remove(fence).await
        } else {
            Ok(())
        }
    }
}

fn lock(increments: &Mutex<Increments>) -> MutexGuard<'_, Increments> {
    increments.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lets the next caller start a new serving task if this one panicked (its waiters
/// see their reply dropped: an unknown outcome).
struct ResetOnPanic<'a>(&'a Mutex<Increments>);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).serving = false;
        }
    }
}

/// The same error for each caller a failed compare-and-set served (sources become
/// their text: errors are not `Clone`).
fn copy(e: &Error) -> Error {
    let source = |s: &dyn std::error::Error| -> crate::BoxError { s.to_string().into() };
    match e {
        Error::NotFound { key } => Error::NotFound { key: key.clone() },
        Error::AlreadyExists { key } => Error::AlreadyExists { key: key.clone() },
        Error::VersionConflict { key } => Error::VersionConflict { key: key.clone() },
        Error::NotLeader { key, epoch } => Error::NotLeader {
            key: key.clone(),
            epoch: *epoch,
        },
        Error::OutcomeUnknown { op, key, source: s } => Error::OutcomeUnknown {
            op,
            key: key.clone(),
            source: source(s.as_ref()),
        },
        Error::Unavailable { what, source: s } => Error::Unavailable {
            what: what.clone(),
            source: s.as_deref().map(|s| source(s)),
        },
        Error::PermissionDenied { what } => Error::PermissionDenied { what: what.clone() },
        Error::CorruptData { key, path, message } => Error::CorruptData {
            key: key.clone(),
            path: path.clone(),
            message: message.clone(),
        },
        Error::TooLarge { key, size, limit } => Error::TooLarge {
            key: key.clone(),
            size: *size,
            limit: *limit,
        },
        Error::Closed { what } => Error::Closed { what: what.clone() },
        other => Error::Other {
            message: other.to_string(),
            source: std::error::Error::source(other).map(source),
        },
    }
}
