//! Embedded implementations of the pointer store and the counter storage.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::backend::Instance;
use super::state::{require_session, ClusterState, Entry};
use crate::driver::kit::check_entry_name;
use crate::driver::{CheckpointIdCounterDriver, StateHandleStore};
use crate::error::{Error, Result};
use crate::ids::{Fence, Version, Versioned};

pub(super) struct EmbeddedStore {
    instance: Arc<Instance>,
    namespace: String,
}

impl EmbeddedStore {
    pub(super) fn new(instance: Arc<Instance>, namespace: String) -> Self {
        Self { instance, namespace }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    /// Runs `f` on this namespace's entries under the cluster lock, after a sweep and,
    /// for writes, the fence check.
    fn with_entries<T>(
        &self,
        fence: Option<(&Fence, &str)>,
        f: impl FnOnce(&mut ClusterState, &mut BTreeMap<String, Entry>, u64) -> Result<T>,
    ) -> Result<T> {
        let mut st = self.instance.cluster.lock();
        st.sweep();
        let session = self.instance.session();
        require_session(&st, session, &self.instance.instance_id)?;
        if let Some((fence, name)) = fence {
            st.check_fence(fence, &self.key(name))?;
        }
        let mut entries = st.stores.remove(&self.namespace).unwrap_or_default();
        let result = f(&mut st, &mut entries, session);
        if !entries.is_empty() {
            st.stores.insert(self.namespace.clone(), entries);
        }
        result
    }
}

#[async_trait]
impl StateHandleStore for EmbeddedStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version> {
        check_entry_name(name)?;
        let owner = self.instance.instance_id.clone();
        self.with_entries(Some((fence, name)), |st, entries, session| {
            if entries.contains_key(name) {
                return Err(Error::AlreadyExists { key: self.key(name) });
            }
            let version = st.next_id();
            entries.insert(
                name.to_string(),
                Entry {
                    value,
                    version,
                    locks: BTreeMap::from([(owner, session)]),
                },
            );
            Ok(Version(version))
        })
    }

    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> Result<Version> {
        check_entry_name(name)?;
        self.with_entries(Some((fence, name)), |st, entries, _| {
            let version = st.next_id();
            let entry = entries
                .get_mut(name)
                .ok_or_else(|| Error::NotFound { key: self.key(name) })?;
            if entry.version != expected.0 {
                return Err(Error::VersionConflict { key: self.key(name) });
            }
            entry.value = value;
            entry.version = version;
            Ok(Version(version))
        })
    }

    async fn get(&self, name: &str) -> Result<Option<Versioned<Bytes>>> {
        check_entry_name(name)?;
        self.with_entries(None, |_, entries, _| {
            Ok(entries.get(name).map(|e| Versioned {
                value: e.value.clone(),
                version: Version(e.version),
            }))
        })
    }

    async fn get_and_lock(&self, name: &str) -> Result<Versioned<Bytes>> {
        check_entry_name(name)?;
        let owner = self.instance.instance_id.clone();
        self.with_entries(None, |_, entries, session| {
            let entry = entries
                .get_mut(name)
                .ok_or_else(|| Error::NotFound { key: self.key(name) })?;
            entry.locks.insert(owner, session);
            Ok(Versioned {
                value: entry.value.clone(),
                version: Version(entry.version),
            })
        })
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.with_entries(None, |_, entries, _| Ok(entries.keys().cloned().collect()))
    }

    async fn release(&self, name: &str) -> Result<()> {
        check_entry_name(name)?;
        let owner = &self.instance.instance_id;
        self.with_entries(None, |_, entries, _| {
            if let Some(e) = entries.get_mut(name) {
                e.locks.remove(owner);
            }
            Ok(())
        })
    }

    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> Result<bool> {
        check_entry_name(name)?;
        let owner = &self.instance.instance_id;
        self.with_entries(Some((fence, name)), |_, entries, _| {
            let Some(e) = entries.get_mut(name) else {
                return Ok(true);
            };
            e.locks.remove(owner);
            if e.locks.is_empty() {
                entries.remove(name);
                Ok(true)
            } else {
                Ok(false)
            }
        })
    }

    async fn lock_owners(&self, name: &str) -> Result<Vec<String>> {
        check_entry_name(name)?;
        self.with_entries(None, |_, entries, _| {
            Ok(entries
                .get(name)
                .map(|e| e.locks.keys().cloned().collect())
                .unwrap_or_default())
        })
    }
}

pub(super) struct EmbeddedCounter {
    instance: Arc<Instance>,
    job: String,
}

impl EmbeddedCounter {
    pub(super) fn new(instance: Arc<Instance>, job: String) -> Self {
        Self { instance, job }
    }

    fn key(&self) -> String {
        format!("jobs/{}/counter", self.job)
    }

    fn locked(&self, fence: Option<&Fence>) -> Result<std::sync::MutexGuard<'_, ClusterState>> {
        let mut st = self.instance.cluster.lock();
        st.sweep();
        require_session(&st, self.instance.session(), &self.instance.instance_id)?;
        if let Some(fence) = fence {
            st.check_fence(fence, &self.key())?;
        }
        Ok(st)
    }
}

#[async_trait]
impl CheckpointIdCounterDriver for EmbeddedCounter {
    async fn read(&self) -> Result<Option<Versioned<u64>>> {
        let st = self.locked(None)?;
        Ok(st.counters.get(&self.job).map(|(v, ver)| Versioned {
            value: *v,
            version: Version(*ver),
        }))
    }

    async fn compare_and_set(&self, fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version> {
        let mut st = self.locked(Some(fence))?;
        let current = st.counters.get(&self.job).map(|(_, ver)| Version(*ver));
        if current != expected {
            return Err(Error::VersionConflict { key: self.key() });
        }
        let version = st.next_id();
        st.counters.insert(self.job.clone(), (value, version));
        Ok(Version(version))
    }

    async fn remove(&self, fence: &Fence) -> Result<()> {
        let mut st = self.locked(Some(fence))?;
        st.counters.remove(&self.job);
        Ok(())
    }
}
