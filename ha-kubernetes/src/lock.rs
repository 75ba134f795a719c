//! The leader lock of an election group, in one of two places
//! (`high-availability.kubernetes.lock`):
//!
//! - `configmap` (default, as Flink): client-go's `LeaderElectionRecord` JSON in an
//!   annotation of the cluster ConfigMap. The lock and the data it guards (leader
//!   information, creation registrations) share one object, so a write of that data
//!   is fenced by checking the record in the same resourceVersion-guarded update; but
//!   every renewal rewrites the cluster ConfigMap and sends it to every watcher.
//! - `lease`: a coordination.k8s.io/v1 `Lease` per group (`<cluster-id>-leader`, or
//!   `<cluster-id>-leader-<group>`), as client-go's `LeaseLock`: `holderIdentity`,
//!   `leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaseTransitions` (the
//!   epoch). Renewals write only the Lease; no HA ConfigMap changes.
//!
//! Fencing with a Lease. The Lease and the data are separate objects, so no single
//! guarded update can compare both. Instead the data carries the term: the cluster
//! ConfigMap holds a stamp `epoch.<group>` (group, epoch, holder) next to the
//! per-job and result ConfigMaps' `epoch`, and every leader write to it is the same
//! epoch-fenced read-modify-write as a per-job write: the stamp read and the write
//! are one resourceVersion-guarded update, which is refused if the stamp names a
//! later term. A new term raises the cluster stamp (one guarded update, which also
//! reads the creation registrations it must claim) *before* it is granted; per-job
//! and result ConfigMaps it raises lazily, on first touch, exactly as with the
//! ConfigMap lock. A raise is allowed only to a term that is locally valid (its own,
//! and the stored stamp strictly older) or that a fresh read of the Lease names.
//! Hence: once a newer term was granted, the cluster stamp is already its own, so an
//! older term can neither publish leader information nor register a creation (its
//! guarded update sees the newer stamp, or its resourceVersion is outdated by the
//! raise), and every registration that landed before the raise is in the data the
//! raise read, so the new term claims it before it is granted. Per-job writes are
//! fenced by their own `epoch` as before. The epoch itself never goes back: a
//! contender that finds no readable Lease starts above every stamp in the HA
//! ConfigMaps, cluster stamps included.
//!
//! All processes of a cluster must use the same lock kind (switch with every
//! process stopped).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ha_core::config::BackendOptions;
use ha_core::Result;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{bounded, ApiError};
use crate::layout::{lock_annotation, Layout, DEFAULT_GROUP, LABEL_KIND};
use crate::record::LeaderRecord;
use crate::shared::{Shared, Snapshot};

/// Where the leader lock lives (`high-availability.kubernetes.lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockKind {
    /// An annotation on the cluster ConfigMap (`configmap`, the default, as Flink).
    #[default]
    ConfigMap,
    /// A coordination.k8s.io/v1 Lease per election group (`lease`): renewals leave
    /// the HA ConfigMaps alone.
    Lease,
}

impl LockKind {
    /// The configuration values, in the order of the variants.
    pub const VALUES: &'static [&'static str] = &["configmap", "lease"];

    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::ConfigMap => "configmap",
            LockKind::Lease => "lease",
        }
    }

    /// Reads the `lock` key of a backend section; the error names the key and the
    /// valid values.
    pub(crate) fn from_options(opts: &BackendOptions<'_>) -> Result<Self> {
        let value = opts.one_of("lock", Self::VALUES, LockKind::ConfigMap.as_str())?;
        Ok(if value == LockKind::Lease.as_str() {
            LockKind::Lease
        } else {
            LockKind::ConfigMap
        })
    }
}

/// Value of the `ha-kind` label of lock Leases.
const LOCK_KIND_LABEL: &str = "leader-lock";
/// The raw record of a Lease whose spec cannot be a lock record (e.g. a negative
/// `leaseTransitions`): unreadable, like a corrupt annotation.
const UNREADABLE: &str = "<unreadable lease>";

/// The lock object of one group as last read or written: the base of the next
/// resourceVersion-guarded write.
#[derive(Clone, Debug)]
pub(crate) enum LockObject {
    /// The cluster ConfigMap (`configmap` lock).
    ConfigMap(ConfigMap),
    /// The group's Lease (`lease` lock).
    Lease(Lease),
}

fn format_time(t: &MicroTime) -> String {
    t.0.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_time(s: &str) -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::from_str(s).unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()))
}

impl LockObject {
    /// The resourceVersion as a number (the API server's are; used to order copies).
    pub(crate) fn version(&self) -> Option<u64> {
        let meta = match self {
            LockObject::ConfigMap(cm) => &cm.metadata,
            LockObject::Lease(l) => &l.metadata,
        };
        meta.resource_version.as_deref()?.parse().ok()
    }

    /// The cluster ConfigMap, if this is one.
    pub(crate) fn config_map(&self) -> Option<&ConfigMap> {
        match self {
            LockObject::ConfigMap(cm) => Some(cm),
            LockObject::Lease(_) => None,
        }
    }

    /// The lock record as raw JSON (`None`: no record), compared byte-wise by
    /// contenders to see renewals. A Lease's spec is rendered as the same JSON.
    pub(crate) fn raw_record(&self, annotation: &str) -> Option<String> {
        match self {
            LockObject::ConfigMap(cm) => cm.metadata.annotations.as_ref()?.get(annotation).cloned(),
            LockObject::Lease(l) => {
                let spec = l.spec.as_ref()?;
                let transitions = u64::try_from(spec.lease_transitions.unwrap_or(0));
                let duration = u64::try_from(spec.lease_duration_seconds.unwrap_or(0));
                let (Ok(leader_transitions), Ok(lease_duration_seconds)) = (transitions, duration) else {
                    return Some(UNREADABLE.to_string());
                };
                let record = LeaderRecord {
                    holder_identity: spec.holder_identity.clone().unwrap_or_default(),
                    lease_duration_seconds,
                    acquire_time: spec.acquire_time.as_ref().map(format_time).unwrap_or_default(),
                    renew_time: spec.renew_time.as_ref().map(format_time).unwrap_or_default(),
                    leader_transitions,
                };
                Some(record.to_json())
            }
        }
    }

    /// Puts `record` in place of the current one (to be written back).
    pub(crate) fn set_record(&mut self, annotation: &str, record: &LeaderRecord) {
        match self {
            LockObject::ConfigMap(cm) => {
                cm.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(annotation.to_string(), record.to_json());
            }
            LockObject::Lease(l) => {
                let spec = l.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(record.holder_identity.clone());
                spec.lease_duration_seconds = Some(i32::try_from(record.lease_duration_seconds).unwrap_or(i32::MAX));
                spec.acquire_time = Some(parse_time(&record.acquire_time));
                spec.renew_time = Some(parse_time(&record.renew_time));
                spec.lease_transitions = Some(i32::try_from(record.leader_transitions).unwrap_or(i32::MAX));
            }
        }
    }
}

/// The leader locks of one backend instance.
pub(crate) struct Locks {
    kind: LockKind,
    leases: Api<Lease>,
    timeout: Duration,
}

/// The lock of one election group.
#[derive(Clone, Debug)]
pub(crate) struct GroupLock {
    /// The annotation carrying the record (`configmap` lock).
    pub(crate) annotation: String,
    /// The name of the lock object (the cluster ConfigMap or the group's Lease).
    pub(crate) name: String,
}

impl Locks {
    pub(crate) fn new(kind: LockKind, leases: Api<Lease>, timeout: Duration) -> Self {
        Self { kind, leases, timeout }
    }

    pub(crate) fn kind(&self) -> LockKind {
        self.kind
    }

    /// The lock of `group`; errors if the group cannot name one.
    pub(crate) fn of(&self, layout: &Layout, group: &str) -> Result<GroupLock> {
        let annotation = lock_annotation(group)?;
        let name = match self.kind {
            LockKind::ConfigMap => layout.cluster_config_map(),
            LockKind::Lease if group == DEFAULT_GROUP => format!("{}-leader", layout.cluster_id()),
            LockKind::Lease => format!("{}-leader-{group}", layout.cluster_id()),
        };
        Ok(GroupLock { annotation, name })
    }

    /// The lock object, `None` if absent.
    pub(crate) async fn get(&self, core: &Shared, lock: &GroupLock) -> Result<Option<LockObject>, ApiError> {
        match self.kind {
            LockKind::ConfigMap => Ok(core.cms.get(&lock.name).await?.map(LockObject::ConfigMap)),
            LockKind::Lease => Ok(bounded(self.timeout, false, self.leases.get_opt(&lock.name))
                .await?
                .map(LockObject::Lease)),
        }
    }

    /// Creates the lock object holding `record`; `Conflict` if it exists.
    pub(crate) async fn create(
        &self,
        core: &Shared,
        lock: &GroupLock,
        record: &LeaderRecord,
    ) -> Result<LockObject, ApiError> {
        let mut object = match self.kind {
            LockKind::ConfigMap => LockObject::ConfigMap(core.new_config_map(&lock.name, BTreeMap::new())),
            LockKind::Lease => {
                let mut labels = core.layout.labels();
                labels.insert(LABEL_KIND.to_string(), LOCK_KIND_LABEL.to_string());
                LockObject::Lease(Lease {
                    metadata: ObjectMeta {
                        name: Some(lock.name.clone()),
                        namespace: Some(core.namespace.clone()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec::default()),
                })
            }
        };
        object.set_record(&lock.annotation, record);
        match object {
            LockObject::ConfigMap(cm) => core.cms.create(&cm).await.map(LockObject::ConfigMap),
            LockObject::Lease(l) => bounded(self.timeout, true, self.leases.create(&PostParams::default(), &l))
                .await
                .map(LockObject::Lease),
        }
    }

    /// Writes `object` back iff its resourceVersion is current; `Conflict` if not.
    pub(crate) async fn replace(&self, core: &Shared, object: &LockObject) -> Result<LockObject, ApiError> {
        match object {
            LockObject::ConfigMap(cm) => {
                let name = cm.metadata.name.clone().unwrap_or_default();
                core.cms.replace(&name, cm).await.map(LockObject::ConfigMap)
            }
            LockObject::Lease(l) => {
                let name = l.metadata.name.clone().unwrap_or_default();
                bounded(
                    self.timeout,
                    true,
                    self.leases.replace(&name, &PostParams::default(), l),
                )
                .await
                .map(LockObject::Lease)
            }
        }
    }

    /// Follows the lock object of `lock`: the shared cluster-ConfigMap watch, or a
    /// watch of the group's Lease (ended when the returned value is dropped).
    pub(crate) fn watch(&self, core: &Shared, lock: &GroupLock) -> LockWatch {
        match self.kind {
            LockKind::ConfigMap => LockWatch::ConfigMap(core.snapshots.clone()),
            LockKind::Lease => {
                let (tx, rx) = watch::channel(LeaseSnapshot::default());
                let task = crate::watch::follow(self.leases.clone(), lock.name.clone(), move |lease| {
                    tx.send_replace(LeaseSnapshot { lease, synced: true });
                    !tx.is_closed()
                });
                LockWatch::Lease {
                    rx,
                    _task: AbortOnDrop(task),
                }
            }
        }
    }
}

/// The latest state of a lock Lease as its watch sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaseSnapshot {
    lease: Option<Arc<Lease>>,
    synced: bool,
}

/// Aborts the task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A watch of one group's lock object.
pub(crate) enum LockWatch {
    /// The shared cluster-ConfigMap watch.
    ConfigMap(watch::Receiver<Snapshot>),
    /// The group's own Lease watch (the task ends with it).
    Lease {
        rx: watch::Receiver<LeaseSnapshot>,
        _task: AbortOnDrop,
    },
}

impl LockWatch {
    /// Waits for a change; `Err` once the watch has ended.
    pub(crate) async fn changed(&mut self) -> std::result::Result<(), watch::error::RecvError> {
        match self {
            LockWatch::ConfigMap(rx) => rx.changed().await,
            LockWatch::Lease { rx, .. } => rx.changed().await,
        }
    }

    /// The latest state: `None` before the first listing, else the object (`None`
    /// if absent).
    pub(crate) fn latest(&mut self) -> Option<Option<LockObject>> {
        match self {
            LockWatch::ConfigMap(rx) => {
                let s = rx.borrow_and_update();
                s.synced
                    .then(|| s.cm.as_deref().map(|cm| LockObject::ConfigMap(cm.clone())))
            }
            LockWatch::Lease { rx, .. } => {
                let s = rx.borrow_and_update();
                s.synced
                    .then(|| s.lease.as_deref().map(|l| LockObject::Lease(l.clone())))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lease_spec_round_trips_the_record() {
        let record = LeaderRecord {
            holder_identity: "me".into(),
            lease_duration_seconds: 15,
            acquire_time: "2024-01-01T00:00:00.000001Z".into(),
            renew_time: "2024-01-01T00:00:05.123456Z".into(),
            leader_transitions: 7,
        };
        let mut lease = LockObject::Lease(Lease::default());
        lease.set_record("", &record);
        assert_eq!(lease.raw_record("").as_deref(), Some(record.to_json().as_str()));
        let LockObject::Lease(l) = &mut lease else {
            unreachable!()
        };
        l.spec.as_mut().unwrap().lease_transitions = Some(-1);
        assert_eq!(lease.raw_record("").as_deref(), Some(UNREADABLE));
        assert_eq!(LockObject::Lease(Lease::default()).raw_record(""), None);
    }
}
