//! The state one backend instance shares between its drivers: the client, names,
//! timings, the terms this instance holds, the shared cluster-ConfigMap watch, and the
//! fenced read-modify-write that every HA write goes through.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ha_core::{Error, Fence, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{ApiError, ConfigMaps, MAX_CONFIG_MAP_BYTES};
use crate::config::LeaseTimings;
use crate::epoch::{self, EpochCheck, EpochRecord};
use crate::names::{lock_annotation, Names, EPOCH_KEY};
use crate::record::LeaderRecord;
use crate::session::Sessions;

/// How often a read-modify-write is retried when the ConfigMap changed in between.
const MAX_ATTEMPTS: usize = 64;

/// The latest state of the cluster ConfigMap as the shared watch sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    /// The ConfigMap, `None` if absent.
    pub(crate) cm: Option<Arc<ConfigMap>>,
    /// Whether the watch has completed its first listing.
    pub(crate) synced: bool,
}

/// A term held by one of this instance's candidacies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Term {
    pub(crate) epoch: u64,
    /// The leader acts only before this local instant (last renewal start + renew
    /// deadline).
    pub(crate) valid_until: Instant,
}

/// How a write is fenced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fencing<'a> {
    /// Not fenced (locks, releases).
    Unfenced,
    /// The ConfigMap carries the lock: its record must name the fence's term.
    Lock(&'a Fence),
    /// A per-job ConfigMap: its `epoch` must be the fence's (raised after a lock check).
    Epoch(&'a Fence),
}

/// What a modification wants done with the ConfigMap.
pub(crate) enum Apply<T> {
    /// Nothing changed.
    Keep(T),
    /// Store the modified data.
    Write(T),
    /// Delete the ConfigMap (nothing of value is left in it).
    Delete(T),
}

pub(crate) struct Core {
    pub(crate) cms: ConfigMaps,
    pub(crate) names: Names,
    pub(crate) timings: LeaseTimings,
    pub(crate) instance_id: String,
    pub(crate) namespace: String,
    pub(crate) snapshots: watch::Receiver<Snapshot>,
    pub(crate) sessions: Sessions,
    terms: Mutex<HashMap<String, Term>>,
    closed: AtomicBool,
    candidacies: AtomicU64,
}

impl Core {
    pub(crate) fn new(
        cms: ConfigMaps,
        names: Names,
        timings: LeaseTimings,
        namespace: String,
        snapshots: watch::Receiver<Snapshot>,
        sessions: Sessions,
    ) -> Self {
        Self {
            cms,
            names,
            timings,
            instance_id: format!("ha-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            namespace,
            snapshots,
            sessions,
            terms: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            candidacies: AtomicU64::new(0),
        }
    }

    /// A fresh holder identity for a candidacy of `group`.
    pub(crate) fn holder_identity(&self, group: &str) -> String {
        let n = self.candidacies.fetch_add(1, Ordering::SeqCst);
        format!("{}-{group}-{n}", self.instance_id)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_closed(&self) -> bool {
        self.closed.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::closed(format!(
                "Kubernetes backend instance {}",
                self.instance_id
            )))
        } else {
            Ok(())
        }
    }

    fn terms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Term>> {
        self.terms.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_term(&self, holder: &str, term: Term) {
        self.terms().insert(holder.to_string(), term);
    }

    pub(crate) fn end_term(&self, holder: &str) -> Option<Term> {
        self.terms().remove(holder)
    }

    /// Whether one of this instance's candidacies currently leads.
    pub(crate) fn leads(&self) -> bool {
        let now = Instant::now();
        self.terms().values().any(|t| now < t.valid_until)
    }

    /// A fence of one of this instance's own candidacies is honoured only while its
    /// term is locally valid: the leader stops acting before its renew deadline.
    fn check_local(&self, fence: &Fence, key: &str) -> Result<()> {
        let Some((_, holder)) = epoch::parse_token(fence) else {
            return Err(fence.rejected(key));
        };
        if !holder.starts_with(&format!("{}-", self.instance_id)) {
            return Ok(());
        }
        match self.terms().get(holder) {
            Some(t) if t.epoch == fence.epoch.0 && Instant::now() < t.valid_until => Ok(()),
            _ => Err(fence.rejected(key)),
        }
    }

    /// Whether `cm`'s lock record names the fence's term.
    pub(crate) fn check_lock(cm: &ConfigMap, fence: &Fence, key: &str) -> Result<()> {
        let valid = (|| {
            let (group, holder) = epoch::parse_token(fence)?;
            let annotation = lock_annotation(group).ok()?;
            let raw = cm.metadata.annotations.as_ref()?.get(&annotation)?;
            let record = LeaderRecord::parse(raw)?;
            Some(record.holder_identity == holder && record.leader_transitions == fence.epoch.0)
        })()
        .unwrap_or(false);
        if valid {
            Ok(())
        } else {
            Err(fence.rejected(key))
        }
    }

    /// A new HA ConfigMap with the cluster's labels.
    pub(crate) fn new_config_map(&self, name: &str, data: BTreeMap<String, String>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.names.labels()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    /// Reads `name`, fences, applies `f` to its data and writes the result back with a
    /// resourceVersion precondition, retrying from the read when the ConfigMap changed
    /// in between. The fence check uses the same read as the write, so it holds at the
    /// moment the write lands. `key` names the entry in errors.
    pub(crate) async fn update<T>(
        &self,
        name: &str,
        key: &str,
        op: &'static str,
        fencing: Fencing<'_>,
        create: bool,
        mut f: impl FnMut(&mut BTreeMap<String, String>) -> Result<Apply<T>>,
    ) -> Result<T> {
        self.check_open()?;
        for _ in 0..MAX_ATTEMPTS {
            if let Fencing::Lock(fence) | Fencing::Epoch(fence) = fencing {
                self.check_local(fence, key)?;
            }
            let current = self.cms.get(name).await.map_err(|e| e.into_error(op, key))?;
            let mut data = current.as_ref().and_then(|c| c.data.clone()).unwrap_or_default();
            let mut raise = None;
            match fencing {
                Fencing::Unfenced => {}
                Fencing::Lock(fence) => {
                    let cm = current.as_ref().ok_or_else(|| fence.rejected(key))?;
                    Self::check_lock(cm, fence, key)?;
                }
                Fencing::Epoch(fence) => {
                    let stored = data.get(EPOCH_KEY).and_then(|r| EpochRecord::parse(r));
                    match epoch::check(stored.as_ref(), fence)? {
                        EpochCheck::Stale => return Err(fence.rejected(key)),
                        EpochCheck::Current => {}
                        EpochCheck::Raise => {
                            let cluster = self
                                .cms
                                .get(&self.names.cluster_config_map())
                                .await
                                .map_err(|e| e.into_error(op, key))?;
                            let cm = cluster.ok_or_else(|| fence.rejected(key))?;
                            Self::check_lock(&cm, fence, key)?;
                            raise = EpochRecord::for_fence(fence);
                        }
                    }
                }
            }
            let (value, delete) = match f(&mut data)? {
                Apply::Keep(v) => return Ok(v),
                Apply::Write(v) => (v, false),
                Apply::Delete(v) => (v, true),
            };
            if delete {
                let Some(cm) = current else { return Ok(value) };
                match self.cms.delete(name, cm.metadata.resource_version.clone()).await {
                    Ok(_) => return Ok(value),
                    Err(ApiError::Conflict) => continue,
                    Err(e) => return Err(e.into_error(op, key)),
                }
            }
            if let Some(r) = raise {
                data.insert(EPOCH_KEY.to_string(), r.to_json());
            }
            let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size > MAX_CONFIG_MAP_BYTES {
                return Err(Error::TooLarge {
                    key: format!("{key} (ConfigMap {name})"),
                    size,
                    limit: MAX_CONFIG_MAP_BYTES,
                });
            }
            let written = match current {
                Some(mut cm) => {
                    cm.data = Some(data);
                    self.cms.replace(name, &cm).await
                }
                None if create => self.cms.create(&self.new_config_map(name, data)).await,
                None => return Err(Error::NotFound { key: key.to_string() }),
            };
            match written {
                Ok(_) => return Ok(value),
                Err(ApiError::Conflict) => continue,
                Err(ApiError::TooLarge) => {
                    return Err(Error::TooLarge {
                        key: format!("{key} (ConfigMap {name})"),
                        size,
                        limit: MAX_CONFIG_MAP_BYTES,
                    })
                }
                Err(e) => return Err(e.into_error(op, key)),
            }
        }
        Err(Error::VersionConflict { key: key.to_string() })
    }
}
