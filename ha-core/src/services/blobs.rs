//! `BlobStore`: HA copies of job blobs (jars, libraries) in payload storage.
//!
//! Blobs live under `<storageDir>/<cluster-id>/blobs/<job>/<key>`. Blob keys are
//! content-derived by the caller, so writes are idempotent and need no fence: a
//! stale leader re-uploading a blob writes the same bytes.

use bytes::Bytes;

use crate::error::Result;
use crate::ids::JobId;
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

    /// Deletes blob `key` of `job`.
    pub async fn delete(&self, job: &JobId, key: &str) -> Result<()> {
        self.storage.delete_prefix(&path(job, key)).await
    }

    /// Deletes every blob of `job`.
    pub async fn delete_all(&self, job: &JobId) -> Result<()> {
        self.storage.delete_prefix(&format!("blobs/{job}")).await
    }
}
