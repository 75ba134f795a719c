//! Decorators on every backend store the services use: each fenced write is first
//! checked against the fence's local [`Validity`](crate::driver::Validity) (a term
//! that has run out by the clock is refused here, before anything is sent), then
//! measured through [`metrics`](crate::metrics), so every backend is guarded and
//! measured the same way without doing it itself.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::driver::{CheckpointIdCounterDriver, StateHandleStore};
use crate::error::Result;
use crate::ids::{Fence, Version, Versioned};
use crate::metrics::fenced_write;

/// A [`StateHandleStore`] that records write latency and fenced rejections.
pub(crate) struct MeteredStore(pub(crate) Arc<dyn StateHandleStore>);

#[async_trait]
impl StateHandleStore for MeteredStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version> {
        fence.check_valid(name)?;
        fenced_write("add", self.0.add_and_lock(fence, name, value)).await
    }

    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> Result<Version> {
        fence.check_valid(name)?;
        fenced_write("replace", self.0.replace(fence, name, expected, value)).await
    }

    async fn get(&self, name: &str) -> Result<Option<Versioned<Bytes>>> {
        self.0.get(name).await
    }

    async fn get_and_lock(&self, name: &str) -> Result<Versioned<Bytes>> {
        self.0.get_and_lock(name).await
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.0.list().await
    }

    async fn release(&self, name: &str) -> Result<()> {
        self.0.release(name).await
    }

    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> Result<bool> {
        fence.check_valid(name)?;
        fenced_write("remove", self.0.release_and_try_remove(fence, name)).await
    }

    async fn lock_owners(&self, name: &str) -> Result<Vec<String>> {
        self.0.lock_owners(name).await
    }
}

/// A [`CheckpointIdCounterDriver`] that records write latency and fenced rejections.
pub(crate) struct MeteredCounter(pub(crate) Arc<dyn CheckpointIdCounterDriver>);

#[async_trait]
impl CheckpointIdCounterDriver for MeteredCounter {
    async fn read(&self) -> Result<Option<Versioned<u64>>> {
        self.0.read().await
    }

    async fn compare_and_set(&self, fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version> {
        fence.check_valid("counter")?;
        fenced_write("counter_cas", self.0.compare_and_set(fence, expected, value)).await
    }

    async fn remove(&self, fence: &Fence) -> Result<()> {
        fence.check_valid("counter")?;
        fenced_write("counter_remove", self.0.remove(fence)).await
    }
}
