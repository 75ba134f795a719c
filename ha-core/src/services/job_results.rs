//! `JobResultStore`: results of finished jobs, with a dirty → clean lifecycle.
//!
//! A leader writes a job's result as *dirty* when the job reaches a globally terminal
//! state, runs the job's cleanup, then marks the result *clean*. A new leader that
//! finds a dirty result finishes the cleanup; one that finds any result never re-runs
//! the job. Entries are named `jobResult-<job>` and hold JSON
//! (`{"format":1,"state":"dirty","status":"finished","handle":{…}}`) pointing to the
//! result payload; a clean entry also records when it was marked clean
//! (`"cleaned_at_ms"`).
//!
//! # Retention ([`JobResultRetention`])
//! As in Flink, `job-result-store.delete-on-commit` (default `true`) removes a result,
//! entry and payload, when it is marked clean: once a job's HA data is gone there is
//! nothing left to re-run it from. With it off, clean results are kept, for as long
//! as `job-result-store.retention` says (unset: forever): every write to the store
//! (a new dirty result, a result marked clean) first removes the clean results older
//! than that, so the store stays bounded (FLINK-32806). Dirty results are never
//! removed. A clean entry another live process still locks stays until a later write
//! finds it unlocked.

use std::sync::Arc;
use std::time::Duration;

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
    /// Wall-clock time (ms since the Unix epoch) the result was marked clean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cleaned_at_ms: Option<u64>,
}

/// How long clean job results are kept (config keys `job-result-store.delete-on-commit`
/// and `job-result-store.retention`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct JobResultRetention {
    /// Remove a result as soon as it is marked clean (Flink's default, `true`).
    pub delete_on_commit: bool,
    /// With `delete_on_commit` off: remove clean results older than this on the next
    /// write; `None` keeps them forever.
    pub retention: Option<Duration>,
}

impl JobResultRetention {
    /// Config key of [`delete_on_commit`](Self::delete_on_commit) (Flink's name).
    pub const KEY_DELETE_ON_COMMIT: &'static str = "job-result-store.delete-on-commit";
    /// Config key of [`retention`](Self::retention).
    pub const KEY_RETENTION: &'static str = "job-result-store.retention";
    /// Keep every result forever (the behaviour before retention existed).
    pub const KEEP: Self = Self {
        delete_on_commit: false,
        retention: None,
    };
}

impl Default for JobResultRetention {
    /// Flink's default: delete on commit.
    fn default() -> Self {
        Self {
            delete_on_commit: true,
            retention: None,
        }
    }
}

/// A job result as listed for operators, without its payload.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct JobResultEntry {
    /// The job.
    pub job_id: JobId,
    /// Dirty (cleanup unfinished) or clean.
    pub state: ResultState,
    /// The job's final status.
    pub status: JobStatus,
    /// When it was marked clean (ms since the Unix epoch), if recorded.
    pub cleaned_at_ms: Option<u64>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stores job results.
#[derive(Clone)]
pub struct JobResultStore {
    store: Arc<dyn StateHandleStore>,
    storage: StateStorage,
    retention: JobResultRetention,
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
    /// Builds the store with the default [`JobResultRetention`] (delete on commit).
    pub fn new(store: Arc<dyn StateHandleStore>, storage: StateStorage) -> Self {
        Self {
            store,
            storage,
            retention: JobResultRetention::default(),
        }
    }

    /// Sets how long clean results are kept.
    pub fn with_retention(mut self, retention: JobResultRetention) -> Self {
        self.retention = retention;
        self
    }

    /// The retention in force.
    pub fn retention(&self) -> JobResultRetention {
        self.retention
    }

    /// Removes the clean results the retention no longer keeps (fenced, best effort
    /// per entry: an entry another process locks, or one that changed meanwhile,
    /// stays for a later sweep). Runs before every write; returns the removed jobs.
    pub async fn expire_clean_results(&self, fence: &Fence) -> Result<Vec<JobId>> {
        let JobResultRetention {
            delete_on_commit,
            retention,
        } = self.retention;
        if !delete_on_commit && retention.is_none() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut removed = Vec::new();
        for name in self.store.list().await? {
            let Some(job) = name.strip_prefix(JOB_RESULT_PREFIX).and_then(|j| JobId::new(j).ok()) else {
                continue;
            };
            let Ok(Some(entry)) = self.read_entry(&name).await else {
                continue;
            };
            if entry.state != ResultState::Clean {
                continue;
            }
            // An entry marked clean before `cleaned_at_ms` was recorded has no age: it
            // predates retention and counts as expired.
            let expired = delete_on_commit
                || retention.is_some_and(|r| {
                    entry
                        .cleaned_at_ms
                        .is_none_or(|at| now.saturating_sub(at) >= r.as_millis() as u64)
                });
            if expired && self.remove(fence, &name, &entry).await? {
                removed.push(job);
            }
        }
        Ok(removed)
    }

    /// Removes one clean entry and its payload; false if another process locks it.
    async fn remove(&self, fence: &Fence, key: &str, entry: &Entry) -> Result<bool> {
        if !self.store.release_and_try_remove(fence, key).await? {
            return Ok(false);
        }
        self.storage.discard(&entry.handle).await?;
        Ok(true)
    }

    /// Records `result` as dirty (fenced). `AlreadyExists` if a result for the job is
    /// stored with other content; a retry of an identical write succeeds.
    pub async fn create_dirty(&self, fence: &Fence, result: &JobResult) -> Result<()> {
        fence.check_valid(key(&result.job_id))?;
        self.expire_clean_results(fence).await?;
        let key = key(&result.job_id);
        let handle = self.storage.store("job-results", &key, result.data.clone()).await?;
        let entry = Entry {
            format: 1,
            state: ResultState::Dirty,
            status: result.status,
            handle: handle.clone(),
            cleaned_at_ms: None,
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

    /// Marks the result of `job` clean (fenced); with delete-on-commit the result is
    /// then removed, entry and payload (it stays clean if another live process still
    /// locks it, and a later write removes it). Idempotent while the entry exists;
    /// `NotFound` if there is none (also after it was deleted on commit).
    pub async fn mark_clean(&self, fence: &Fence, job: &JobId) -> Result<()> {
        fence.check_valid(key(job))?;
        let key = key(job);
        let current = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
        let mut entry = decode(&key, &current.value)?;
        if entry.state != ResultState::Clean {
            entry.state = ResultState::Clean;
            entry.cleaned_at_ms = Some(now_ms());
            self.store.replace(fence, &key, current.version, encode(&entry)).await?;
        }
        // The sweep removes this entry too when deleting on commit.
        self.expire_clean_results(fence).await?;
        Ok(())
    }

    /// Every stored result without its payload, ascending by job id (for operators:
    /// `hactl status` lists the dirty ones).
    pub async fn entries(&self) -> Result<Vec<JobResultEntry>> {
        let mut out = Vec::new();
        for name in self.store.list().await? {
            let Some(job) = name.strip_prefix(JOB_RESULT_PREFIX).and_then(|j| JobId::new(j).ok()) else {
                continue;
            };
            if let Some(entry) = self.read_entry(&name).await? {
                out.push(JobResultEntry {
                    job_id: job,
                    state: entry.state,
                    status: entry.status,
                    cleaned_at_ms: entry.cleaned_at_ms,
                });
            }
        }
        out.sort_by(|a, b| a.job_id.as_str().cmp(b.job_id.as_str()));
        Ok(out)
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
