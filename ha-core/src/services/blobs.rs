//! `BlobStore`: HA copies of job blobs (jars, libraries) in payload storage.
//!
//! Blobs live under `<storageDir>/<cluster-id>/blobs/<job>/<key>`. Blob keys are
//! content-derived by the caller, so writes are idempotent and need no fence: a
//! stale leader re-uploading a blob writes the same bytes.
//!
//! Deletes are fenced through the job graph: object storage has no write condition
//! tied to a leadership term, so a job's blobs are deleted only after its job graph
//! was removed under the caller's fence. Once the graph is gone no leader recovers the
//! job, so a deposed leader can never delete blobs of a job its successor runs; if
//! another process (a successor that recovered the job) still holds the graph,
//! nothing is deleted.

use bytes::Bytes;

use super::JobGraphStore;
use crate::error::Result;
use crate::ids::{Fence, JobId};
use crate::storage::StateStorage;

/// Stores job blobs.
#[derive(Clone, Debug)]
pub struct BlobStore {
    storage: StateStorage,
}

fn path(job: &JobId, key: &str) -> String {
    format!("blobs/{job}/{key}")
}

impl BlobStore {
    /// Builds the store.
    pub fn new(storage: StateStorage) -> Self {
        Self { storage }
    }

    /// Stores blob `key` of `job`.
    pub async fn put(&self, job: &JobId, key: &str, data: Bytes) -> Result<()> {
        self.storage.put_at(&path(job, key), data).await
    }

    /// Reads blob `key` of `job`; `NotFound` if absent.
    pub async fn get(&self, job: &JobId, key: &str) -> Result<Bytes> {
        self.storage.get_at(&path(job, key)).await
    }

    /// Removes `job`'s graph from `graphs` (fenced), then every blob of the job.
    /// Returns `false`, deleting nothing, if another process still holds the graph.
    pub async fn delete_all(&self, fence: &Fence, graphs: &JobGraphStore, job: &JobId) -> Result<bool> {
        if !graphs.global_cleanup(fence, job).await? {
            return Ok(false);
        }
        self.storage.delete_prefix(&format!("blobs/{job}")).await?;
        Ok(true)
    }
}
