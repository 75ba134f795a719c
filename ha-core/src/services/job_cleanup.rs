//! The global cleanup of a finished job: every piece of its HA data goes, and its job
//! result is marked clean only once nothing is left.
//!
//! Order: checkpoints (pointers, then payloads), the checkpoint-id counter, the job
//! graph, then the job's blobs (only after its graph is gone, see [`BlobStore`]), and
//! last the job result, dirty → clean. Every step is fenced. An entry another live
//! process still locks stays, the attempt reports it, and the result stays dirty, so
//! a later attempt, or the next leader, finishes the cleanup.
//!
//! A [`CheckpointRetention`](super::CheckpointRetention) that retains checkpoints for
//! the job's status keeps its latest checkpoint and its counter (to resume from); the
//! rest goes and the result is marked clean as usual.

use std::time::Duration;

use super::{BlobStore, HaServices, JobStatus};
use crate::error::Result;
use crate::ids::{Fence, JobId};

/// What one cleanup attempt left behind.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[must_use = "a cleanup that left entries behind must be retried"]
pub struct JobCleanup {
    /// Entries still locked by another live process (`checkpointID-…`,
    /// `jobGraph-…`); empty when the job's HA data is gone and its result is clean.
    pub remaining: Vec<String>,
}

impl JobCleanup {
    /// Whether everything is gone and the job result is marked clean.
    pub fn is_complete(&self) -> bool {
        self.remaining.is_empty()
    }
}

/// How [`HaServices::cleanup_job_until_done`] retries.
#[derive(Clone, Copy, Debug)]
pub struct CleanupRetry {
    /// Wait after the first incomplete attempt; doubled after each one.
    pub initial_backoff: Duration,
    /// Upper bound of the wait.
    pub max_backoff: Duration,
    /// Attempts before giving up and returning what is left.
    pub max_attempts: u32,
}

impl Default for CleanupRetry {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_attempts: 60,
        }
    }
}

impl HaServices {
    /// One attempt of the global cleanup of `job`, which reached a globally terminal
    /// `status` and whose result was written as dirty. Marks the result clean only if
    /// nothing is left.
    pub async fn cleanup_job(&self, fence: &Fence, job: &JobId, status: JobStatus) -> Result<JobCleanup> {
        let mut remaining = self
            .completed_checkpoint_store(job)
            .await?
            .shutdown(fence, status)
            .await?;
        if !self.checkpoint_retention().retains(status) {
            self.checkpoint_id_counter(job).await?.shutdown(fence, status).await?;
        }
        let graphs = self.job_graph_store().await?;
        if !BlobStore::delete_all(&self.blob_store(), fence, &graphs, job).await? {
            remaining.push(format!("{}{job}", super::JOB_GRAPH_PREFIX));
        }
        if remaining.is_empty() {
            self.job_result_store().await?.mark_clean(fence, job).await?;
        }
        Ok(JobCleanup { remaining })
    }

    /// Repeats [`cleanup_job`](Self::cleanup_job) with exponential backoff until
    /// nothing is left or `retry.max_attempts` ran out; returns the last attempt's
    /// outcome. Errors (lost leadership included) end it at once.
    pub async fn cleanup_job_until_done(
        &self,
        fence: &Fence,
        job: &JobId,
        status: JobStatus,
        retry: CleanupRetry,
    ) -> Result<JobCleanup> {
        let mut backoff = retry.initial_backoff;
        let mut attempt = 1;
        loop {
            let outcome = self.cleanup_job(fence, job, status).await?;
            if outcome.is_complete() || attempt >= retry.max_attempts {
                return Ok(outcome);
            }
            tracing::info!(%job, remaining = ?outcome.remaining, attempt, "job cleanup incomplete; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(retry.max_backoff);
            attempt += 1;
        }
    }
}
