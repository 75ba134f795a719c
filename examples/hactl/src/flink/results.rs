//! Flink's file-based JobResultStore: `<job>_DIRTY.json` (the job finished, its cleanup
//! did not) and `<job>.json` (clean) under `job-result-store.storage-path`, by default
//! `<high-availability.storageDir>/job-result-store/<cluster-id>`. Only local (`file:`)
//! stores are read; a job with an entry has finished, so its HA records left over are
//! orphans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ha_core::HaConfig;
use serde::Serialize;

use super::Orphan;

const STORAGE_PATH_KEY: &str = "job-result-store.storage-path";
/// Flink's default `high-availability.cluster-id`, which the store's default path uses
/// when a Kubernetes deployment did not set it.
const FLINK_DEFAULT_CLUSTER_ID: &str = "default";

/// A job's entry in the JobResultStore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct JobResult {
    /// `dirty` (cleanup unfinished) or `clean`.
    pub(crate) state: String,
    /// The entry's `application-status` (`SUCCEEDED`, `FAILED`, `CANCELED`, ...).
    pub(crate) status: Option<String>,
    /// The entry's file.
    pub(crate) file: String,
}

/// The local directories a cluster's job results may be in.
#[derive(Debug, Clone)]
pub(crate) struct ResultStore {
    dirs: Vec<PathBuf>,
}

fn local(url: &str) -> Option<PathBuf> {
    let url = url.trim().trim_end_matches('/');
    let path = match url.strip_prefix("file:") {
        Some(rest) => rest.strip_prefix("//").unwrap_or(rest),
        None if url.starts_with('/') => url,
        None => return None,
    };
    Some(PathBuf::from(path))
}

impl ResultStore {
    /// The store of Flink cluster `cluster` (its id as in the HA store).
    pub(crate) fn new(config: &HaConfig, cluster: &str) -> Self {
        let dirs = match config.get(STORAGE_PATH_KEY) {
            Some(explicit) => local(explicit).into_iter().collect(),
            None => local(config.storage_dir())
                .map(|base| {
                    let mut ids = vec![cluster];
                    if cluster != FLINK_DEFAULT_CLUSTER_ID {
                        ids.push(FLINK_DEFAULT_CLUSTER_ID);
                    }
                    ids.iter().map(|id| base.join("job-result-store").join(id)).collect()
                })
                .unwrap_or_default(),
        };
        Self { dirs }
    }

    /// Job id → entry, for `jobs` only (a shared default directory may hold other
    /// clusters' jobs); unreadable entries are reported in `errors`.
    pub(crate) fn read(&self, jobs: &[String], errors: &mut Vec<String>) -> BTreeMap<String, JobResult> {
        let mut out = BTreeMap::new();
        for dir in &self.dirs {
            for job in jobs {
                for (state, name) in [("dirty", format!("{job}_DIRTY.json")), ("clean", format!("{job}.json"))] {
                    let file = dir.join(&name);
                    let Ok(text) = std::fs::read_to_string(&file) else {
                        continue;
                    };
                    let status = match serde_json::from_str::<serde_json::Value>(&text) {
                        Ok(v) => v["result"]["application-status"].as_str().map(str::to_string),
                        Err(e) => {
                            errors.push(format!("{}: not a job result: {e}", file.display()));
                            None
                        }
                    };
                    out.entry(job.clone()).or_insert(JobResult {
                        state: state.to_string(),
                        status,
                        file: file.display().to_string(),
                    });
                }
            }
        }
        out
    }
}

/// The orphan entry for record `key` of a finished job; a running leader finishes a
/// dirty job's cleanup itself, so then it is kept.
pub(crate) fn finished_orphan(key: String, job: &str, result: &JobResult, leader_running: bool) -> Orphan {
    Orphan {
        key,
        reason: format!(
            "job {job} finished ({} job result{})",
            result.state,
            result.status.as_deref().map_or(String::new(), |s| format!(", {s}"))
        ),
        kept: (leader_running && result.state == "dirty")
            .then(|| "the running leader finishes its cleanup".to_string()),
    }
}
