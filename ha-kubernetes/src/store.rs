//! The state-handle stores. Each entry sits in the ConfigMap of its job, fenced by
//! that ConfigMap's `epoch`: job graphs (`jobGraph-<job>`) and checkpoints in the
//! per-job ConfigMap, job results (`jobResult-<job>`) in the job's result ConfigMap,
//! so the cluster ConfigMap (which every renewal rewrites and every watcher receives)
//! holds no per-job data. Each entry is an [`Entry`] carrying its version and its lock
//! owners. A per-job ConfigMap left with only its `epoch` is deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::driver::StateHandleStore;
use ha_core::{Error, Fence, JobId, Result, Version, Versioned, JOB_GRAPH_PREFIX, JOB_RESULT_PREFIX};
use k8s_openapi::api::core::v1::ConfigMap;

use crate::entry::Entry;
use crate::layout::{Kind, COUNTER_KEY, EPOCH_KEY};
use crate::shared::{Apply, Fencing, Shared};

/// Where a store's entries live.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// `jobGraph-<job>` in each job's ConfigMap.
    JobGraphs,
    /// `jobResult-<job>` in each job's result ConfigMap.
    JobResults,
    /// The keys of the job's ConfigMap other than `counter`, `epoch` and its graph.
    Checkpoints(JobId),
}

pub(crate) struct KubeStore {
    core: Arc<Shared>,
    location: Location,
}

/// Whether a ConfigMap holds nothing but its epoch (then it can go).
pub(crate) fn only_epoch_left(data: &BTreeMap<String, String>) -> bool {
    data.keys().all(|k| k == EPOCH_KEY)
}

impl KubeStore {
    pub(crate) fn new(core: Arc<Shared>, location: Location) -> Self {
        Self { core, location }
    }

    /// The per-entry prefix of a location that holds one entry per job.
    fn prefix(&self) -> Option<&'static str> {
        match self.location {
            Location::JobGraphs => Some(JOB_GRAPH_PREFIX),
            Location::JobResults => Some(JOB_RESULT_PREFIX),
            Location::Checkpoints(_) => None,
        }
    }

    /// The ConfigMap holding entry `name`, `None` if the name cannot belong here.
    fn config_map(&self, name: &str) -> Option<String> {
        let layout = &self.core.layout;
        match &self.location {
            Location::Checkpoints(job) => self.owns(name).then(|| layout.job_config_map(job)),
            Location::JobGraphs => Some(layout.job_config_map(&self.job_of(name)?)),
            Location::JobResults => Some(layout.job_result_config_map(&self.job_of(name)?)),
        }
    }

    fn job_of(&self, name: &str) -> Option<JobId> {
        JobId::new(name.strip_prefix(self.prefix()?)?).ok()
    }

    fn key(&self, name: &str) -> String {
        match self.config_map(name) {
            Some(cm) => format!("{cm}/{name}"),
            None => name.to_string(),
        }
    }

    /// Whether `name` belongs to this store.
    fn owns(&self, name: &str) -> bool {
        match &self.location {
            Location::Checkpoints(_) => name != EPOCH_KEY && name != COUNTER_KEY && !name.starts_with(JOB_GRAPH_PREFIX),
            _ => self.job_of(name).is_some(),
        }
    }

    /// The ConfigMap of `name`, or an error naming the rule it breaks.
    fn check_name(&self, name: &str) -> Result<String> {
        ha_core::driver::kit::check_entry_name(name)?;
        let valid_key = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        match self.config_map(name) {
            Some(cm) if valid_key => Ok(cm),
            _ => {
                let rule = match self.prefix() {
                    Some(prefix) => format!("be `{prefix}` followed by a job id"),
                    None => format!("not be `{EPOCH_KEY}`, `{COUNTER_KEY}` or start with `{JOB_GRAPH_PREFIX}`"),
                };
                Err(Error::Other {
                    message: format!(
                        "entry name `{name}` cannot be stored in Kubernetes: it must be a valid ConfigMap key (letters, digits, '-', '_', '.') and {rule}"
                    ),
                    source: None,
                })
            }
        }
    }

    /// Reads the ConfigMap `cm`, after claiming it for this instance's term if it is
    /// a per-job ConfigMap. Result ConfigMaps are not claimed by reads (a new leader
    /// reads every result at start-up): an older term's late `mark_clean` only ends a
    /// cleanup that term had finished, and a late creation is claimed at the grant.
    async fn read_config_map(&self, cm: &str, key: &str) -> Result<Option<ConfigMap>> {
        if !matches!(self.location, Location::JobResults) {
            self.core.claim(cm).await?;
        }
        self.core.get_config_map(cm, "get", key).await
    }

    async fn read_entry(&self, name: &str) -> Result<Option<Entry>> {
        self.core.check_open()?;
        ha_core::driver::kit::check_entry_name(name)?;
        let Some(cm) = self.config_map(name) else {
            return Ok(None);
        };
        let key = self.key(name);
        let found = self.read_config_map(&cm, &key).await?;
        match found.and_then(|c| c.data).and_then(|mut d| d.remove(name)) {
            Some(raw) => Entry::parse(&key, &raw).map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl StateHandleStore for KubeStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version> {
        let cm = self.check_name(name)?;
        self.core.sessions.ensure(&self.core).await?;
        let key = self.key(name);
        let owner = self.core.instance_id.clone();
        self.core
            .update(&cm, &key, "add", Fencing::Epoch(fence), true, |data| {
                if data.contains_key(name) {
                    return Err(Error::AlreadyExists { key: key.clone() });
                }
                let entry = Entry::new(&value, &owner);
                data.insert(name.to_string(), entry.to_json());
                Ok(Apply::Write(Version(entry.version)))
            })
            .await
    }

    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> Result<Version> {
        let cm = self.check_name(name)?;
        let key = self.key(name);
        self.core
            .update(&cm, &key, "replace", Fencing::Epoch(fence), false, |data| {
                let raw = data.get(name).ok_or_else(|| Error::NotFound { key: key.clone() })?;
                let mut entry = Entry::parse(&key, raw)?;
                if entry.version != expected.0 {
                    return Err(Error::VersionConflict { key: key.clone() });
                }
                entry.set_value(&value);
                data.insert(name.to_string(), entry.to_json());
                Ok(Apply::Write(Version(entry.version)))
            })
            .await
            .map_err(|e| match e {
                // The ConfigMap itself is missing: so is the entry.
                Error::NotFound { .. } => Error::NotFound { key: key.clone() },
                e => e,
            })
    }

    async fn get(&self, name: &str) -> Result<Option<Versioned<Bytes>>> {
        let key = self.key(name);
        self.read_entry(name).await?.map(|e| e.versioned(&key)).transpose()
    }

    async fn get_and_lock(&self, name: &str) -> Result<Versioned<Bytes>> {
        let key = self.key(name);
        let Some(cm) = self.config_map(name) else {
            return Err(Error::NotFound { key });
        };
        self.core.sessions.ensure(&self.core).await?;
        if !matches!(self.location, Location::JobResults) {
            self.core.claim(&cm).await?;
        }
        let owner = self.core.instance_id.clone();
        self.core
            .update(&cm, &key, "lock", Fencing::Unfenced, false, |data| {
                let raw = data.get(name).ok_or_else(|| Error::NotFound { key: key.clone() })?;
                let mut entry = Entry::parse(&key, raw)?;
                let versioned = entry.versioned(&key)?;
                if entry.lock(&owner) {
                    data.insert(name.to_string(), entry.to_json());
                    Ok(Apply::Write(versioned))
                } else {
                    Ok(Apply::Keep(versioned))
                }
            })
            .await
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.core.check_open()?;
        let kind = match &self.location {
            Location::Checkpoints(job) => {
                let cm = self.core.layout.job_config_map(job);
                let found = self.read_config_map(&cm, &cm).await?;
                return Ok(found
                    .and_then(|c| c.data)
                    .map(|d| d.into_keys().filter(|k| self.owns(k)).collect())
                    .unwrap_or_default());
            }
            Location::JobGraphs => Kind::Job,
            Location::JobResults => Kind::JobResult,
        };
        // One entry per job: list the ConfigMaps of that kind (one request).
        let cms = self
            .core
            .cms
            .list(&self.core.layout.kind_selector(kind))
            .await
            .map_err(|e| e.into_error("list", "HA ConfigMaps"))?;
        let mut names: Vec<String> = cms
            .into_iter()
            .filter_map(|c| c.data)
            .flat_map(|d| d.into_keys())
            .filter(|k| self.owns(k))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn release(&self, name: &str) -> Result<()> {
        let Some(cm) = self.config_map(name) else {
            return Ok(());
        };
        let key = self.key(name);
        let owner = self.core.instance_id.clone();
        let released = self
            .core
            .update(&cm, &key, "release", Fencing::Unfenced, false, |data| {
                // Nothing to release in an absent or corrupt entry.
                let Some(Ok(mut entry)) = data.get(name).map(|raw| Entry::parse(&key, raw)) else {
                    return Ok(Apply::Keep(()));
                };
                if entry.unlock(&owner) {
                    data.insert(name.to_string(), entry.to_json());
                    Ok(Apply::Write(()))
                } else {
                    Ok(Apply::Keep(()))
                }
            })
            .await;
        match released {
            Err(Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> Result<bool> {
        let cm = self.check_name(name)?;
        let key = self.key(name);
        let owner = self.core.instance_id.clone();
        // Locks of owners whose session has ended do not count. Only locks seen
        // *before* the sessions were listed may be judged by that list: a lock taken
        // since (its owner's session may be newer than the list) always counts, so a
        // concurrent lock wins over the removal.
        let seen = self
            .read_entry(name)
            .await
            .ok()
            .flatten()
            .map(|e| e.locks)
            .unwrap_or_default();
        let live = self.core.sessions.live_owners(&self.core).await?;
        self.core
            .update(&cm, &key, "remove", Fencing::Epoch(fence), false, |data| {
                if data.contains_key(name) {
                    // An entry whose wrapper is corrupt carries no readable locks: it is
                    // removed like an unlocked one (recovery quarantines it first).
                    if let Ok(mut entry) = Entry::parse(&key, &data[name]) {
                        entry.unlock(&owner);
                        entry.locks.retain(|o| live.contains(o) || !seen.contains(o));
                        if !entry.locks.is_empty() {
                            data.insert(name.to_string(), entry.to_json());
                            return Ok(Apply::Write(false));
                        }
                    }
                    data.remove(name);
                } else if !only_epoch_left(data) {
                    return Ok(Apply::Keep(true));
                }
                if only_epoch_left(data) {
                    Ok(Apply::Delete(true))
                } else {
                    Ok(Apply::Write(true))
                }
            })
            .await
            .or_else(|e| match e {
                // No ConfigMap: no entry.
                Error::NotFound { .. } => Ok(true),
                e => Err(e),
            })
    }

    async fn lock_owners(&self, name: &str) -> Result<Vec<String>> {
        let Some(entry) = self.read_entry(name).await? else {
            return Ok(Vec::new());
        };
        let live = self.core.sessions.live_owners(&self.core).await?;
        Ok(entry.locks.into_iter().filter(|o| live.contains(o)).collect())
    }
}
