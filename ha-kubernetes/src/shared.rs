//! The state one backend instance shares between its drivers: the client, names,
//! timings, the leader locks, the terms this instance holds and the ConfigMaps they
//! claimed, and the shared cluster-ConfigMap watch. The fenced read-modify-write that
//! every HA write goes through is in `fenced`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ha_core::{Error, Fence, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::ConfigMaps;
use crate::config::LeaseTimings;
use crate::epoch;
use crate::last_seen::LastSeen;
use crate::layout::{Layout, DEFAULT_GROUP};
use crate::lock::Locks;
use crate::session::Sessions;

pub(crate) use crate::fenced::{Apply, Fencing};

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

pub(crate) struct Shared {
    pub(crate) cms: ConfigMaps,
    pub(crate) layout: Layout,
    pub(crate) timings: LeaseTimings,
    pub(crate) instance_id: String,
    pub(crate) namespace: String,
    pub(crate) snapshots: watch::Receiver<Snapshot>,
    pub(crate) sessions: Sessions,
    pub(crate) locks: Locks,
    /// ConfigMaps as the last fenced read-modify-write saw them (see `last_seen`).
    pub(crate) last_seen: LastSeen,
    terms: Mutex<HashMap<String, Term>>,
    /// ConfigMaps this instance has claimed: name → `(holder, epoch)` of the term.
    claimed: Mutex<HashMap<String, (String, u64)>>,
    /// Registrations (`pendingCreate.<name>`) whose ConfigMap exists now.
    created: Mutex<Vec<String>>,
    closed: AtomicBool,
    candidacies: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        cms: ConfigMaps,
        layout: Layout,
        timings: LeaseTimings,
        namespace: String,
        snapshots: watch::Receiver<Snapshot>,
        sessions: Sessions,
        locks: Locks,
    ) -> Self {
        Self {
            cms,
            layout,
            timings,
            instance_id: format!("ha-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            namespace,
            snapshots,
            sessions,
            locks,
            last_seen: LastSeen::default(),
            terms: Mutex::new(HashMap::new()),
            claimed: Mutex::new(HashMap::new()),
            created: Mutex::new(Vec::new()),
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

    pub(crate) fn terms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Term>> {
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

    /// Whether `holder` is one of this instance's candidacies.
    pub(crate) fn is_own(&self, holder: &str) -> bool {
        holder.starts_with(&format!("{}-", self.instance_id))
    }

    /// The fence of a locally valid term this instance holds, preferring `group`,
    /// then the default group (holder identities are `<instance>-<group>-<n>`).
    pub(crate) fn own_fence(&self, group: Option<&str>) -> Option<Fence> {
        let now = Instant::now();
        let prefix = format!("{}-", self.instance_id);
        let terms = self.terms();
        let valid = || {
            terms
                .iter()
                .filter(|(_, t)| now < t.valid_until)
                .filter_map(|(holder, t)| {
                    let g = holder.strip_prefix(&prefix)?.rsplit_once('-')?.0;
                    Some((g, holder, t.epoch))
                })
        };
        let pick = |want: &str| valid().find(|(g, _, _)| *g == want);
        let (g, holder, epoch) = group.and_then(pick).or_else(|| pick(DEFAULT_GROUP))?;
        Some(Fence::new(ha_core::Epoch(epoch), epoch::token(g, holder)))
    }

    pub(crate) fn claimed(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, u64)>> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn note_claim(&self, name: &str, fence: &Fence) {
        if let Some((_, holder)) = epoch::parse_token(fence) {
            if self.is_own(holder) {
                self.claimed()
                    .insert(name.to_string(), (holder.to_string(), fence.epoch.0));
            }
        }
    }

    pub(crate) fn has_claimed(&self, name: &str, fence: &Fence) -> bool {
        let Some((_, holder)) = epoch::parse_token(fence) else {
            return false;
        };
        self.claimed()
            .get(name)
            .is_some_and(|(h, e)| h == holder && *e == fence.epoch.0)
    }

    /// A new HA ConfigMap with the cluster's labels.
    pub(crate) fn new_config_map(&self, name: &str, data: BTreeMap<String, String>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.layout.config_map_labels(name)),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    pub(crate) fn created(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }
}
