//! The state-handle stores: job graphs and job results as keys of the cluster
//! ConfigMap (fenced by its lock record), completed checkpoints as keys of the job's
//! ConfigMap (fenced by its `epoch`). Each entry is an [`Entry`] carrying its version
//! and its lock owners.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::driver::StateHandleStore;
use ha_core::{Error, Fence, JobId, Result, Version, Versioned, JOB_GRAPH_PREFIX, JOB_RESULT_PREFIX};

use crate::core::{Apply, Core, Fencing};
use crate::entry::Entry;
use crate::names::{COUNTER_KEY, EPOCH_KEY};

/// Where a store's entries live.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// Keys of the cluster ConfigMap with this name prefix (`jobGraph-`, `jobResult-`).
    Cluster(&'static str),
    /// Keys of the job's ConfigMap other than `counter` and `epoch`.
    Job(JobId),
}

impl Location {
    pub(crate) fn job_graphs() -> Self {
        Location::Cluster(JOB_GRAPH_PREFIX)
    }

    pub(crate) fn job_results() -> Self {
        Location::Cluster(JOB_RESULT_PREFIX)
    }
}

pub(crate) struct KubeStore {
    core: Arc<Core>,
    location: Location,
    config_map: String,
}

/// Whether a job ConfigMap holds nothing but its epoch (then it can go).
pub(crate) fn only_epoch_left(data: &std::collections::BTreeMap<String, String>) -> bool {
    data.keys().all(|k| k == EPOCH_KEY)
}

impl KubeStore {
    pub(crate) fn new(core: Arc<Core>, location: Location) -> Self {
        let config_map = match &location {
            Location::Cluster(_) => core.names.cluster_config_map(),
            Location::Job(job) => core.names.job_config_map(job),
        };
        Self {
            core,
            location,
            config_map,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.config_map)
    }

    /// Whether `name` belongs to this store.
    fn owns(&self, name: &str) -> bool {
        match &self.location {
            Location::Cluster(prefix) => name.starts_with(prefix),
            Location::Job(_) => name != EPOCH_KEY && name != COUNTER_KEY,
        }
    }

    fn check_name(&self, name: &str) -> Result<()> {
        let valid_key = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !valid_key || !self.owns(name) {
            let rule = match &self.location {
                Location::Cluster(prefix) => format!("must start with `{prefix}`"),
                Location::Job(_) => format!("must not be `{EPOCH_KEY}` or `{COUNTER_KEY}`"),
            };
            return Err(Error::Other {
                message: format!(
                    "entry name `{name}` cannot be stored in ConfigMap {}: it must be a valid ConfigMap key (letters, digits, '-', '_', '.') and {rule}",
                    self.config_map
                ),
                source: None,
            });
        }
        Ok(())
    }

    fn fencing<'a>(&self, fence: &'a Fence) -> Fencing<'a> {
        match self.location {
            Location::Cluster(_) => Fencing::Lock(fence),
            Location::Job(_) => Fencing::Epoch(fence),
        }
    }

    async fn read_entry(&self, name: &str) -> Result<Option<Entry>> {
        self.core.check_open()?;
        let key = self.key(name);
        let cm = self
            .core
            .cms
            .get(&self.config_map)
            .await
            .map_err(|e| e.into_error("get", &key))?;
        match cm.and_then(|c| c.data).and_then(|mut d| d.remove(name)) {
            Some(raw) if self.owns(name) => Entry::parse(&key, &raw).map(Some),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl StateHandleStore for KubeStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version> {
        self.check_name(name)?;
        self.core.sessions.ensure(&self.core).await?;
        let key = self.key(name);
        let owner = self.core.instance_id.clone();
        self.core
            .update(&self.config_map, &key, "add", self.fencing(fence), true, |data| {
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
        self.check_name(name)?;
        let key = self.key(name);
        self.core
            .update(&self.config_map, &key, "replace", self.fencing(fence), false, |data| {
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
        if !self.owns(name) {
            return Err(Error::NotFound { key });
        }
        self.core.sessions.ensure(&self.core).await?;
        let owner = self.core.instance_id.clone();
        self.core
            .update(&self.config_map, &key, "lock", Fencing::Unfenced, false, |data| {
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
        let cm = self
            .core
            .cms
            .get(&self.config_map)
            .await
            .map_err(|e| e.into_error("list", &self.config_map))?;
        Ok(cm
            .and_then(|c| c.data)
            .map(|d| d.into_keys().filter(|k| self.owns(k)).collect())
            .unwrap_or_default())
    }

    async fn release(&self, name: &str) -> Result<()> {
        if !self.owns(name) {
            return Ok(());
        }
        let key = self.key(name);
        let owner = self.core.instance_id.clone();
        let released = self
            .core
            .update(&self.config_map, &key, "release", Fencing::Unfenced, false, |data| {
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
        self.check_name(name)?;
        let key = self.key(name);
        let owner = self.core.instance_id.clone();
        let is_job = matches!(self.location, Location::Job(_));
        // Locks of owners whose session has ended do not count.
        let live = self.core.sessions.live_owners(&self.core).await?;
        self.core
            .update(&self.config_map, &key, "remove", self.fencing(fence), false, |data| {
                let Some(raw) = data.get(name) else {
                    return Ok(Apply::Keep(true));
                };
                // An entry whose wrapper is corrupt carries no readable locks: it is
                // removed like an unlocked one (recovery quarantines it first).
                if let Ok(mut entry) = Entry::parse(&key, raw) {
                    entry.unlock(&owner);
                    entry.locks.retain(|o| live.contains(o));
                    if !entry.locks.is_empty() {
                        data.insert(name.to_string(), entry.to_json());
                        return Ok(Apply::Write(false));
                    }
                }
                data.remove(name);
                if is_job && only_epoch_left(data) {
                    Ok(Apply::Delete(true))
                } else {
                    Ok(Apply::Write(true))
                }
            })
            .await
    }

    async fn lock_owners(&self, name: &str) -> Result<Vec<String>> {
        let Some(entry) = self.read_entry(name).await? else {
            return Ok(Vec::new());
        };
        let live = self.core.sessions.live_owners(&self.core).await?;
        Ok(entry.locks.into_iter().filter(|o| live.contains(o)).collect())
    }
}
