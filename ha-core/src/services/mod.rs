//! The generic HA services, built once on the backend driver traits.

mod blobs;
mod checkpoints;
mod cleaner;
mod counter;
mod election;
mod ha_services;
mod health;
mod job_cleanup;
mod job_graphs;
mod job_results;
mod metered;
mod observer;
mod retrieval;

use serde::{Deserialize, Serialize};

pub use blobs::BlobStore;
pub use checkpoints::{
    checkpoint_key, parse_checkpoint_key, CheckpointRetention, CompletedCheckpoint, CompletedCheckpointStore,
    OnUnreadable, QuarantinedCheckpoint, RecoveredCheckpoints, CHECKPOINT_PREFIX, QUARANTINE_PREFIX,
};
pub use cleaner::PayloadCleaner;
pub use counter::{CheckpointIdCounter, INITIAL_CHECKPOINT_ID};
pub use election::{LeaderElection, LeaderElectionService, LeaderGrant};
pub use ha_services::{HaServices, DEFAULT_ELECTION_GROUP};
pub use health::{LeaderHealth, LeaderHealthCheck};
pub use job_cleanup::{CleanupRetry, JobCleanup};
pub use job_graphs::{JobGraph, JobGraphStore, JOB_GRAPH_PREFIX};
pub use job_results::{JobResult, JobResultEntry, JobResultRetention, JobResultStore, ResultState, JOB_RESULT_PREFIX};
pub use observer::{LeaderObserver, DEFAULT_OBSERVE_INTERVAL};
pub use retrieval::LeaderRetrievalService;

/// Status of a job, as far as HA storage cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JobStatus {
    /// Running (or about to).
    Running,
    /// Finished successfully: globally terminal.
    Finished,
    /// Failed for good: globally terminal.
    Failed,
    /// Cancelled: globally terminal.
    Cancelled,
    /// Suspended (e.g. lost leadership): not terminal; HA data is kept.
    Suspended,
}

impl JobStatus {
    /// Whether the job will never run again anywhere, so its HA data can go.
    pub fn is_globally_terminal(self) -> bool {
        matches!(self, JobStatus::Finished | JobStatus::Failed | JobStatus::Cancelled)
    }
}
