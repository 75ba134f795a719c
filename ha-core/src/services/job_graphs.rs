//! `JobGraphStore`: the submitted jobs of the cluster, so a new leader can resume them.
//!
//! Entries are named `jobGraph-<job>` and point to payloads in [`StateStorage`].
//! Replacing a graph writes the new payload first, then swaps the pointer by
//! compare-and-set, then discards the old payload.

use std::sync::Arc;

use bytes::Bytes;

use super::cleaner::PayloadCleaner;
use crate::driver::StateHandleStore;
use crate::error::{Error, Result};
use crate::ids::{Fence, JobId};
use crate::storage::{StateHandle, StateStorage};

/// Entry-name prefix of job graphs.
pub const JOB_GRAPH_PREFIX: &str = "jobGraph-";

/// A submitted job: its id and serialized graph.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobGraph {
    /// The job.
    pub job_id: JobId,
    /// Serialized job graph.
    pub data: Bytes,
}

/// Stores job graphs.
#[derive(Clone)]
pub struct JobGraphStore {
    store: Arc<dyn StateHandleStore>,
    storage: StateStorage,
    cleaner: PayloadCleaner,
}

impl std::fmt::Debug for JobGraphStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobGraphStore").finish_non_exhaustive()
    }
}

fn key(job: &JobId) -> String {
    format!("{JOB_GRAPH_PREFIX}{job}")
}

impl JobGraphStore {
    /// Builds the store.
    pub fn new(store: Arc<dyn StateHandleStore>, storage: StateStorage, cleaner: PayloadCleaner) -> Self {
        Self {
            store,
            storage,
            cleaner,
        }
    }

    /// Adds or replaces the graph of `graph.job_id` (fenced).
    #[tracing::instrument(level = "debug", skip_all, fields(job = %graph.job_id, epoch = fence.epoch.0))]
    pub async fn put_job_graph(&self, fence: &Fence, graph: &JobGraph) -> Result<()> {
        fence.check_valid(key(&graph.job_id))?;
        let key = key(&graph.job_id);
        let handle = self.storage.store("jobgraphs", &key, graph.data.clone()).await?;
        let result = match self.store.get(&key).await {
            Ok(None) => self
                .store
                .add_and_lock(fence, &key, handle.to_bytes())
                .await
                .map(|_| None),
            Ok(Some(old)) => self
                .store
                .replace(fence, &key, old.version, handle.to_bytes())
                .await
                .map(|_| StateHandle::from_bytes(&key, &old.value).ok()),
            Err(e) => Err(e),
        };
        match result {
            Ok(old) => {
                if let Some(old) = old {
                    self.cleaner.discard(old);
                }
                Ok(())
            }
            Err(e @ Error::OutcomeUnknown { .. }) => Err(e),
            Err(e) => {
                self.cleaner.discard(handle);
                Err(e)
            }
        }
    }

    /// Reads (and locks for this process) the graph of `job`; `None` if not stored.
    pub async fn recover_job_graph(&self, job: &JobId) -> Result<Option<JobGraph>> {
        let key = key(job);
        let pointer = match self.store.get_and_lock(&key).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let handle = StateHandle::from_bytes(&key, &pointer.value)?;
        let data = self.storage.retrieve(&key, &handle).await?;
        Ok(Some(JobGraph {
            job_id: job.clone(),
            data,
        }))
    }

    /// Ids of all stored jobs, ascending.
    pub async fn job_ids(&self) -> Result<Vec<JobId>> {
        Ok(self
            .store
            .list()
            .await?
            .iter()
            .filter_map(|n| n.strip_prefix(JOB_GRAPH_PREFIX).and_then(|j| JobId::new(j).ok()))
            .collect())
    }

    /// Removes the graph of a globally terminated `job` and its payload (fenced).
    /// Returns `false` if another process still holds it locked.
    pub async fn global_cleanup(&self, fence: &Fence, job: &JobId) -> Result<bool> {
        fence.check_valid(key(job))?;
        let key = key(job);
        let pointer = self.store.get(&key).await?;
        let removed = self.store.release_and_try_remove(fence, &key).await?;
        if removed {
            if let Some(handle) = pointer.and_then(|p| StateHandle::from_bytes(&key, &p.value).ok()) {
                self.storage.discard(&handle).await?;
            }
        }
        Ok(removed)
    }

    /// Releases this process's lock on `job`'s graph, keeping the graph.
    pub async fn local_cleanup(&self, job: &JobId) -> Result<()> {
        self.store.release(&key(job)).await
    }
}
