//! `JobResultStore`: results of finished jobs, with a dirty → clean lifecycle.
//!
//! A leader writes a job's result as *dirty* when the job reaches a globally terminal
//! state, runs the job's cleanup, then marks the result *clean*. A new leader that
//! finds a dirty result finishes the cleanup; one that finds any result never re-runs
//! the job. Entries are named `jobResult-<job>` and hold JSON
//! (`{"format":1,"state":"dirty","status":"finished","handle":{…}}`) pointing to the
//! result payload.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::JobStatus;
use crate::driver::StateHandleStore;
use crate::error::{Error, Result};
use crate::ids::{Fence, JobId};
use crate::storage::{StateHandle, StateStorage};

/// Entry-name prefix of job results.
pub const JOB_RESULT_PREFIX: &str = "jobResult-";

/// The outcome of a job.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobResult {
    /// The job.
    pub job_id: JobId,
    /// Its final status.
    pub status: JobStatus,
    /// Serialized result details (accumulators, failure cause, …).
    pub data: Bytes,
}

/// Cleanup state of a job result.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultState {
    /// Written; the job's cleanup has not finished.
    Dirty,
    /// The job's cleanup finished.
    Clean,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    format: u32,
    state: ResultState,
    status: JobStatus,
    handle: StateHandle,
}

/// Stores job results.
#[derive(Clone)]
pub struct JobResultStore {
    store: Arc<dyn StateHandleStore>,
    storage: StateStorage,
}

impl std::fmt::Debug for JobResultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobResultStore").finish_non_exhaustive()
    }
}

fn key(job: &JobId) -> String {
    format!("{JOB_RESULT_PREFIX}{job}")
}

fn decode(key: &str, bytes: &[u8]) -> Result<Entry> {
    serde_json::from_slice(bytes).map_err(|e| Error::corrupt(key, None, format!("job result entry is not valid: {e}")))
}

fn encode(entry: &Entry) -> Bytes {
    Bytes::from(serde_json::to_vec(entry).unwrap_or_default())
}

impl JobResultStore {
    /// Builds the store.
    pub fn new(store: Arc<dyn StateHandleStore>, storage: StateStorage) -> Self {
        Self { store, storage }
    }

    /// Records `result` as dirty (fenced). `AlreadyExists` if a result for the job is
    /// stored with other content; a retry of an identical write succeeds.
    pub async fn create_dirty(&self, fence: &Fence, result: &JobResult) -> Result<()> {
        fence.check_valid(key(&result.job_id))?;
        let key = key(&result.job_id);
        let handle = self.storage.store("job-results", &key, result.data.clone()).await?;
        let entry = Entry {
            format: 1,
            state: ResultState::Dirty,
            status: result.status,
            handle: handle.clone(),
        };
        match self.store.add_and_lock(fence, &key, encode(&entry)).await {
            Ok(_) => Ok(()),
            Err(Error::AlreadyExists { .. }) => {
                self.storage.discard(&handle).await?;
                let existing = self.read_entry(&key).await?;
                match existing {
                    Some(e) if e.handle.sha256 == handle.sha256 && e.status == result.status => Ok(()),
                    _ => Err(Error::AlreadyExists { key }),
                }
            }
            Err(e @ Error::OutcomeUnknown { .. }) => Err(e),
            Err(e) => {
                self.storage.discard(&handle).await?;
                Err(e)
            }
        }
    }

    /// Marks the result of `job` clean (fenced). Idempotent; `NotFound` if none.
    pub async fn mark_clean(&self, fence: &Fence, job: &JobId) -> Result<()> {
        fence.check_valid(key(job))?;
        let key = key(job);
        let current = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
        let mut entry = decode(&key, &current.value)?;
        if entry.state == ResultState::Clean {
            return Ok(());
        }
        entry.state = ResultState::Clean;
        self.store
            .replace(fence, &key, current.version, encode(&entry))
            .await
            .map(|_| ())
    }

    async fn read_entry(&self, key: &str) -> Result<Option<Entry>> {
        match self.store.get(key).await? {
            Some(v) => decode(key, &v.value).map(Some),
            None => Ok(None),
        }
    }

    /// The state of `job`'s result, if one is stored.
    pub async fn state(&self, job: &JobId) -> Result<Option<ResultState>> {
        Ok(self.read_entry(&key(job)).await?.map(|e| e.state))
    }

    /// Whether a result (dirty or clean) is stored for `job`.
    pub async fn has_job_result_entry(&self, job: &JobId) -> Result<bool> {
        Ok(self.state(job).await?.is_some())
    }

    /// All dirty results, with their payloads, ascending by job id.
    pub async fn dirty_results(&self) -> Result<Vec<JobResult>> {
        let mut out = Vec::new();
        for name in self.store.list().await? {
            let Some(job) = name.strip_prefix(JOB_RESULT_PREFIX).and_then(|j| JobId::new(j).ok()) else {
                continue;
            };
            let Some(entry) = self.read_entry(&name).await? else {
                continue;
            };
            if entry.state == ResultState::Dirty {
                let data = self.storage.retrieve(&name, &entry.handle).await?;
                out.push(JobResult {
                    job_id: job,
                    status: entry.status,
                    data,
                });
            }
        }
        Ok(out)
    }
}
