//! The checkpoint-id counter: a persistent znode holding the 64-bit value as decimal
//! text (readable with `zkCli get`), updated by fenced compare-and-set on its data
//! version. Flink's `SharedCount` is 32-bit; this one is not.

use std::sync::Arc;

use async_trait::async_trait;
use ha_core::driver::kit::{decode_counter, encode_counter};
use ha_core::driver::CheckpointIdCounterDriver;
use ha_core::{Error, Fence, Result, Version, Versioned};
use zookeeper_client as zk;

use crate::backend::Shared;
use crate::error::write_error;
use crate::fenced::MultiFailure;

pub(crate) struct ZkCounter {
    inner: Arc<Shared>,
    path: String,
}

impl ZkCounter {
    pub(crate) fn new(inner: Arc<Shared>, path: String) -> Self {
        Self { inner, path }
    }
}

fn conflict_or<'a>(op: &'static str, key: &'a str) -> impl FnOnce(usize, zk::Error) -> Error + 'a {
    move |_, e| match e {
        zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode => {
            Error::VersionConflict { key: key.to_string() }
        }
        other => write_error(op, key, other),
    }
}

#[async_trait]
impl CheckpointIdCounterDriver for ZkCounter {
    async fn read(&self) -> Result<Option<Versioned<u64>>> {
        let path = self.path.as_str();
        let raw = self
            .inner
            .sessions
            .read(path, |c| async move {
                match c.get_data(path).await {
                    Ok(v) => Ok(Some(v)),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let Some((data, stat)) = raw else { return Ok(None) };
        let value = decode_counter(path, &data)?;
        Ok(Some(Versioned {
            value,
            version: Version(stat.version.max(0) as u64),
        }))
    }

    async fn compare_and_set(&self, fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version> {
        let path = self.path.as_str();
        let data = encode_counter(value).into_bytes();
        match expected {
            None => {
                let persistent = self.inner.sessions.create_options(zk::CreateMode::Persistent);
                for _ in 0..4 {
                    let r = self
                        .inner
                        .sessions
                        .fenced_multi(fence, "counter create", path, |w| {
                            w.add_create(path, &data, &persistent)
                        })
                        .await;
                    match r {
                        Ok(_) => return Ok(Version(0)),
                        Err(MultiFailure::Op {
                            error: zk::Error::NoNode,
                            ..
                        }) => self.inner.sessions.ensure_parents(path).await?,
                        Err(f) => {
                            return Err(f.into_error(
                                fence,
                                "counter create",
                                path,
                                conflict_or("counter create", path),
                            ))
                        }
                    }
                }
                Err(Error::unavailable(
                    format!("ZooKeeper for {path}"),
                    "parent kept vanishing",
                ))
            }
            Some(v) => {
                let Ok(version) = i32::try_from(v.0) else {
                    return Err(Error::VersionConflict { key: path.to_string() });
                };
                let results = self
                    .inner
                    .sessions
                    .fenced_multi(fence, "counter update", path, |w| {
                        w.add_set_data(path, &data, Some(version))
                    })
                    .await
                    .map_err(|f| f.into_error(fence, "counter update", path, conflict_or("counter update", path)))?;
                match results.into_iter().next() {
                    Some(zk::MultiWriteResult::SetData { stat }) if stat.version >= 0 => {
                        Ok(Version(stat.version as u64))
                    }
                    _ => Ok(Version(version as u64 + 1)),
                }
            }
        }
    }

    async fn remove(&self, fence: &Fence) -> Result<()> {
        let path = self.path.as_str();
        match self
            .inner
            .sessions
            .fenced_multi(fence, "counter removal", path, |w| w.add_delete(path, None))
            .await
        {
            Ok(_)
            | Err(MultiFailure::Op {
                error: zk::Error::NoNode,
                ..
            }) => {
                // Already absent: the fence check passed, nothing to do. The job's
                // parents go with its last node.
                self.inner.prune_job_parents(path).await;
                Ok(())
            }
            Err(f) => Err(f.into_error(fence, "counter removal", path, |_, e| {
                write_error("counter removal", path, e)
            })),
        }
    }
}
