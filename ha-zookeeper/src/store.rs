//! The state-handle store: one persistent znode per entry holding the pointer bytes,
//! with lock children `<entry>/locks/<owner>` (ephemeral, so a lock ends with its
//! owner's session).
//!
//! Writes are fenced multis. An entry is created together with its `locks` node and
//! this owner's lock in one transaction; it is deleted (with `locks`) only in a
//! transaction that fails if any lock child is left, so a lock taken concurrently
//! always wins over the removal. Versions are the znode's data version.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::driver::StateHandleStore;
use ha_core::{Error, Fence, Result, Version, Versioned};
use zookeeper_client as zk;

use crate::backend::Shared;
use crate::error::write_error;
use crate::fenced::{default_op_error, MultiFailure};

pub(crate) struct ZkStore {
    inner: Arc<Shared>,
    dir: String,
}

const ATTEMPTS: usize = 8;

impl ZkStore {
    pub(crate) fn new(inner: Arc<Shared>, dir: String) -> Self {
        Self { inner, dir }
    }

    fn entry(&self, name: &str) -> Result<String> {
        ha_core::driver::kit::check_entry_name(name)?;
        Ok(format!("{}/{name}", self.dir))
    }

    fn owner(&self) -> &str {
        &self.inner.instance_id
    }

    async fn children(&self, path: &str) -> Result<Option<Vec<String>>> {
        self.inner
            .sessions
            .read(path, |c| async move {
                match c.list_children(path).await {
                    Ok(v) => Ok(Some(v)),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        self.inner
            .sessions
            .read(path, |c| async move { c.check_stat(path).await.map(|s| s.is_some()) })
            .await
    }

    /// A fenced transaction with only the fence check.
    async fn check_fence(&self, fence: &Fence, key: &str) -> Result<()> {
        self.inner
            .sessions
            .fenced_multi(fence, "fence check", key, |_| Ok(()))
            .await
            .map(|_| ())
            .map_err(|f| f.into_error(fence, "fence check", key, default_op_error("fence check", key)))
    }
}

#[async_trait]
impl StateHandleStore for ZkStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version> {
        let entry = self.entry(name)?;
        let locks = format!("{entry}/locks");
        let lock = format!("{locks}/{}", self.owner());
        let persistent = self.inner.sessions.create_options(zk::CreateMode::Persistent);
        let ephemeral = self.inner.sessions.create_options(zk::CreateMode::Ephemeral);
        for _ in 0..ATTEMPTS {
            let result = self
                .inner
                .sessions
                .fenced_multi(fence, "add", &entry, |w| {
                    w.add_create(&entry, &value, &persistent)?;
                    w.add_create(&locks, &[], &persistent)?;
                    w.add_create(&lock, &[], &ephemeral)
                })
                .await;
            match result {
                // A freshly created znode has data version 0.
                Ok(_) => return Ok(Version(0)),
                Err(MultiFailure::Op {
                    index: 0,
                    error: zk::Error::NoNode,
                }) => self.inner.sessions.ensure_parents(&entry).await?,
                Err(MultiFailure::Op {
                    index: 0,
                    error: zk::Error::NodeExists,
                }) => return Err(Error::AlreadyExists { key: entry }),
                Err(f) => return Err(f.into_error(fence, "add", &entry, default_op_error("add", &entry))),
            }
        }
        Err(Error::unavailable(
            format!("ZooKeeper for add of {entry}"),
            "parent kept vanishing",
        ))
    }

    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> Result<Version> {
        let entry = self.entry(name)?;
        let Ok(expected) = i32::try_from(expected.0) else {
            return Err(Error::VersionConflict { key: entry });
        };
        let results = self
            .inner
            .sessions
            .fenced_multi(fence, "replace", &entry, |w| {
                w.add_set_data(&entry, &value, Some(expected))
            })
            .await
            .map_err(|f| f.into_error(fence, "replace", &entry, default_op_error("replace", &entry)))?;
        match results.into_iter().next() {
            Some(zk::MultiWriteResult::SetData { stat }) if stat.version >= 0 => Ok(Version(stat.version as u64)),
            // ZooKeeper 3.8.0 may return an invalid stat inside a multi: the write
            // happened, so the version moved on by exactly one.
            _ => Ok(Version(expected as u64 + 1)),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Versioned<Bytes>>> {
        let entry = self.entry(name)?;
        let path = entry.as_str();
        self.inner
            .sessions
            .read(path, |c| async move {
                match c.get_data(path).await {
                    Ok((data, stat)) => Ok(Some(Versioned {
                        value: Bytes::from(data),
                        version: Version(stat.version.max(0) as u64),
                    })),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn get_and_lock(&self, name: &str) -> Result<Versioned<Bytes>> {
        let entry = self.entry(name)?;
        let locks = format!("{entry}/locks");
        let lock = format!("{locks}/{}", self.owner());
        let ephemeral = self.inner.sessions.create_options(zk::CreateMode::Ephemeral);
        let persistent = self.inner.sessions.create_options(zk::CreateMode::Persistent);
        for _ in 0..ATTEMPTS {
            // Creating the lock is idempotent (an existing lock of this owner is fine),
            // so a retry after a lost reply is safe.
            let created = self
                .inner
                .sessions
                .read(&lock, |c| {
                    let (lock, ephemeral) = (lock.clone(), ephemeral.clone());
                    async move {
                        match c.create(&lock, &[], &ephemeral).await {
                            Ok(_) | Err(zk::Error::NodeExists) => Ok(true),
                            Err(zk::Error::NoNode) => Ok(false),
                            Err(e) => Err(e),
                        }
                    }
                })
                .await?;
            if !created {
                if !self.exists(&entry).await? {
                    return Err(Error::NotFound { key: entry });
                }
                // An entry without `locks` (written by another tool): add it.
                let r = self
                    .inner
                    .sessions
                    .read(&locks, |c| {
                        let (locks, persistent) = (locks.clone(), persistent.clone());
                        async move {
                            match c.create(&locks, &[], &persistent).await {
                                Ok(_) | Err(zk::Error::NodeExists) | Err(zk::Error::NoNode) => Ok(()),
                                Err(e) => Err(e),
                            }
                        }
                    })
                    .await;
                r?;
                continue;
            }
            return match self.get(name).await? {
                Some(v) => Ok(v),
                None => Err(Error::NotFound { key: entry }),
            };
        }
        Err(Error::unavailable(
            format!("ZooKeeper for lock of {entry}"),
            "entry kept changing",
        ))
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut names = self.children(&self.dir).await?.unwrap_or_default();
        names.sort();
        Ok(names)
    }

    async fn release(&self, name: &str) -> Result<()> {
        let entry = self.entry(name)?;
        let lock = format!("{entry}/locks/{}", self.owner());
        let path = lock.as_str();
        self.inner
            .sessions
            .read(path, |c| async move {
                match c.delete(path, None).await {
                    Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> Result<bool> {
        let entry = self.entry(name)?;
        let locks = format!("{entry}/locks");
        let lock = format!("{locks}/{}", self.owner());
        for _ in 0..ATTEMPTS {
            let owners = self.children(&locks).await?;
            let has_locks_node = owners.is_some();
            let owners = owners.unwrap_or_default();
            let mine = owners.iter().any(|o| o == self.owner());
            let others = owners.len() - usize::from(mine);
            if !has_locks_node && !self.exists(&entry).await? {
                self.check_fence(fence, &entry).await?;
                return Ok(true);
            }
            let remove = others == 0;
            let result = self
                .inner
                .sessions
                .fenced_multi(fence, "remove", &entry, |w| {
                    if mine {
                        w.add_delete(&lock, None)?;
                    }
                    if remove {
                        if has_locks_node {
                            w.add_delete(&locks, None)?;
                        }
                        w.add_delete(&entry, None)?;
                    }
                    Ok(())
                })
                .await;
            match result {
                Ok(_) => {
                    if remove {
                        self.inner.prune_job_parents(&entry).await;
                    }
                    return Ok(remove);
                }
                // A lock appeared or vanished meanwhile: look again.
                Err(MultiFailure::Op {
                    error: zk::Error::NotEmpty | zk::Error::NoNode,
                    ..
                }) => continue,
                Err(f) => return Err(f.into_error(fence, "remove", &entry, |_, e| write_error("remove", &entry, e))),
            }
        }
        Err(Error::unavailable(
            format!("ZooKeeper for removal of {entry}"),
            "locks kept changing",
        ))
    }

    async fn lock_owners(&self, name: &str) -> Result<Vec<String>> {
        let entry = self.entry(name)?;
        let mut owners = self.children(&format!("{entry}/locks")).await?.unwrap_or_default();
        owners.sort();
        Ok(owners)
    }
}
