//! `CheckpointIdCounter`: a 64-bit, strictly increasing checkpoint-id counter.
//!
//! Starts at 1. `get_and_increment` is a compare-and-set loop over the backend's
//! counter storage, so concurrent callers never see the same value; every write is
//! fenced. After an unknown outcome an id may be skipped, never repeated, and
//! `set_count` never moves it back: an id handed out is never handed out again.

use std::sync::Arc;

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
}

impl std::fmt::Debug for CheckpointIdCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointIdCounter").finish_non_exhaustive()
    }
}

impl CheckpointIdCounter {
    /// Wraps a backend counter driver.
    pub fn new(driver: Arc<dyn CheckpointIdCounterDriver>) -> Self {
        Self { driver }
    }

    /// The next id that `get_and_increment` would return.
    pub async fn get(&self) -> Result<u64> {
        Ok(self.driver.read().await?.map_or(INITIAL_CHECKPOINT_ID, |v| v.value))
    }

    /// Returns the current value and advances the counter by one.
    pub async fn get_and_increment(&self, fence: &Fence) -> Result<u64> {
        fence.check_valid("counter")?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.driver.read().await?;
            let (value, version) = current.map_or((INITIAL_CHECKPOINT_ID, None), |v| (v.value, Some(v.version)));
            let next = value
                .checked_add(1)
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
