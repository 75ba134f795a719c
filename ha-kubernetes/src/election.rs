//! Leader election on a group's lock (the cluster ConfigMap's lock annotation, or
//! the group's Lease; see `lock`), with client-go's algorithm.
//!
//! - A contender judges the holder's record expired only by its *local monotonic*
//!   clock: `lease-duration` after it last saw the record change (from a read or from
//!   the shared watch). Remote `renewTime` is never compared with the local wall clock.
//! - Acquire, renew and release are each one resourceVersion-guarded update of the
//!   lock object; an acquisition raises `leaderTransitions`, which is the term's epoch.
//! - The leader renews every `retry-period`. If it has not renewed successfully within
//!   `renew-deadline` of the start of its last successful renewal, it stops acting
//!   (Revoked, and its own writes are refused locally) — before any contender can
//!   judge the record expired, since `renew-deadline < lease-duration` and that
//!   renewal landed after it started.
//! - Before it reports `Granted`, a new leader (with the Lease lock: after raising its
//!   stamp in the cluster ConfigMap) claims the ConfigMaps whose creation an
//!   older term registered (creations possibly still in flight); every other per-job
//!   ConfigMap is claimed when the term first touches it (see `fenced`), so the grant
//!   costs nothing per job.
//! - Resigning releases the lock (empty `holderIdentity`, as client-go's
//!   `ReleaseOnCancel`); the others learn it from the shared watch and acquire at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ha_core::driver::{LeaderElectionDriver, TermSink, Validity};
use ha_core::{ComponentId, Epoch, Error, Fence, LeaderInformation, Result};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::epoch::{self, EpochRecord};
use crate::error::ApiError;
use crate::layout::{leader_key, EPOCH_KEY, PENDING_PREFIX, STAMP_PREFIX};
use crate::lock::{GroupLock, LockKind, LockObject, LockWatch};
use crate::record::{now_rfc3339, LeaderRecord};
use crate::shared::{Apply, Fencing, Shared, Term};

/// How many times one attempt re-reads after a resourceVersion conflict.
const CONFLICT_RETRIES: usize = 5;

/// The election driver of one candidacy: a task running the elector, stopped on
/// drop (a crash: the lock is left to expire) or by `resign` (the lock is released).
pub(crate) struct KubeElectionDriver {
    core: Arc<Shared>,
    candidacy: Arc<Candidacy>,
}

/// What the backend needs to resign a candidacy on `close`.
pub(crate) struct Candidacy {
    lock: GroupLock,
    holder: String,
    sink: TermSink,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Candidacy {
    fn stop(&self) -> bool {
        match self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(t) => {
                t.abort();
                true
            }
            None => false,
        }
    }

    /// Stops the elector and releases the lock if this candidacy holds it.
    pub(crate) async fn resign(&self, core: &Shared) -> Result<()> {
        self.sink.resign();
        if !self.stop() {
            return Ok(());
        }
        let held = core.end_term(&self.holder).is_some();
        release(core, &self.lock, &self.holder).await.inspect_err(|e| {
            if held {
                tracing::warn!(error = %e, holder = %self.holder, "could not release the leader lock; others take over when it expires");
            }
        })
    }
}

impl Drop for KubeElectionDriver {
    fn drop(&mut self) {
        self.candidacy.stop();
        self.core.end_term(&self.candidacy.holder);
    }
}

impl KubeElectionDriver {
    /// Starts contending in `group`. The first acquisition attempt completes before
    /// this returns, so a contender that joins a free election first wins it.
    pub(crate) async fn start(core: Arc<Shared>, group: &str, sink: TermSink) -> Result<(Self, Arc<Candidacy>)> {
        let lock = core.locks.of(&core.layout, group)?;
        let holder = core.holder_identity(group);
        let mut elector = Elector {
            core: core.clone(),
            group: group.to_string(),
            watch: core.locks.watch(&core, &lock),
            lock: lock.clone(),
            holder: holder.clone(),
            sink: sink.clone(),
            observed: None,
            term: None,
            validity: None,
            latest: None,
            above_stamps: false,
        };
        elector.on_snapshot();
        let started = elector.attempt().await;
        let candidacy = Arc::new(Candidacy {
            lock,
            holder,
            sink,
            task: Mutex::new(Some(tokio::spawn(elector.run(started)))),
        });
        Ok((
            Self {
                core,
                candidacy: candidacy.clone(),
            },
            candidacy,
        ))
    }

    /// The holder identity of this candidacy in the lock record.
    pub(crate) fn holder(&self) -> &str {
        &self.candidacy.holder
    }

    async fn write_info(&self, fence: &Fence, component: &ComponentId, info: Option<&LeaderInformation>) -> Result<()> {
        let key = leader_key(component);
        let value = info.map(|i| String::from_utf8_lossy(&i.to_json()).into_owned());
        let name = self.core.layout.cluster_config_map();
        self.core
            .update(
                &name,
                &key,
                "publish leader information",
                Fencing::Lock(fence),
                false,
                |data| {
                    Ok(match &value {
                        Some(v) if data.get(&key) == Some(v) => Apply::Keep(()),
                        Some(v) => {
                            data.insert(key.clone(), v.clone());
                            Apply::Write(())
                        }
                        None if data.remove(&key).is_some() => Apply::Write(()),
                        None => Apply::Keep(()),
                    })
                },
            )
            .await
    }
}

#[async_trait]
impl LeaderElectionDriver for KubeElectionDriver {
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        self.write_info(fence, component, Some(info)).await
    }

    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        self.write_info(fence, component, None).await
    }

    async fn resign(&self) -> Result<()> {
        self.candidacy.resign(&self.core).await
    }

    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()> {
        crate::participants::hand_off(&self.core, fence, target).await
    }
}

/// Gives up the lock if `holder` holds it: empty holder, 1 s lease, as client-go.
async fn release(core: &Shared, lock: &GroupLock, holder: &str) -> Result<()> {
    let name = &lock.name;
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut object) = core
            .locks
            .get(core, lock)
            .await
            .map_err(|e| e.into_error("release", name))?
        else {
            return Ok(());
        };
        let raw = object.raw_record(&lock.annotation);
        let Some(record) = raw.as_deref().and_then(LeaderRecord::parse) else {
            return Ok(());
        };
        if record.holder_identity != holder {
            return Ok(());
        }
        let now = now_rfc3339();
        let released = LeaderRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: now.clone(),
            renew_time: now,
            leader_transitions: record.leader_transitions,
        };
        object.set_record(&lock.annotation, &released);
        match core.locks.replace(core, &object).await {
            Ok(_) => {
                tracing::info!(%holder, "leader lock released");
                return Ok(());
            }
            Err(ApiError::Conflict) => continue,
            Err(e) => return Err(e.into_error("release", name)),
        }
    }
    Err(Error::VersionConflict { key: name.clone() })
}

struct Elector {
    core: Arc<Shared>,
    group: String,
    lock: GroupLock,
    holder: String,
    sink: TermSink,
    watch: LockWatch,
    /// The raw record last seen and the local instant it was first seen.
    observed: Option<(String, Instant)>,
    /// `(epoch, start of the last successful renewal)` while leading.
    term: Option<(u64, Instant)>,
    /// Validity of the current term: the start of its last successful renewal +
    /// renew-deadline, extended by each renewal.
    validity: Option<Validity>,
    /// The newest copy of the lock object known (own writes, watch): a leader
    /// renews with one guarded update of it, without reading first.
    latest: Option<LockObject>,
    /// The next acquisition starts above every stamp in the HA ConfigMaps (set when a
    /// stamp raise found a newer one: the lock's own count fell behind).
    above_stamps: bool,
}

impl Elector {
    /// One acquisition attempt as a follower; returns when it started and whether
    /// the API answered.
    async fn attempt(&mut self) -> (Instant, bool) {
        let started = Instant::now();
        match self.try_acquire_or_renew().await {
            Ok(Some(epoch)) => {
                if !self.on_acquired(epoch, started).await {
                    return (started, false);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, holder = %self.holder, "acquisition attempt failed");
                return (started, false);
            }
        }
        (started, true)
    }

    /// The elector loop, after a first attempt (`first`: as [`attempt`](Self::attempt)
    /// returns).
    async fn run(mut self, first: (Instant, bool)) {
        let timings = self.core.timings;
        let mut next_attempt = first.0 + timings.retry_period;
        let (mut last_attempt, mut answered) = first;
        loop {
            if self.sink.is_closed() {
                return;
            }
            if let Some((epoch, renewed_at)) = self.term {
                let deadline = renewed_at + timings.renew_deadline;
                tokio::select! {
                    _ = sleep_until(deadline) => {
                        self.step_down("no successful renewal within the renew deadline");
                        next_attempt = Instant::now() + timings.retry_period;
                    }
                    _ = sleep_until(next_attempt) => {
                        let started = Instant::now();
                        let outcome = tokio::select! {
                            r = self.try_acquire_or_renew() => Some(r),
                            _ = sleep_until(deadline) => None,
                        };
                        match outcome {
                            Some(Ok(Some(e))) if e == epoch => {
                                ha_core::metrics::record_keepalive("kubernetes", started.elapsed());
                                self.term = Some((epoch, started));
                                self.core.set_term(&self.holder, Term { epoch, valid_until: started + timings.renew_deadline });
                                if let Some(v) = &self.validity {
                                    v.extend(started + timings.renew_deadline);
                                }
                                next_attempt = started + timings.retry_period;
                            }
                            Some(Ok(_)) => {
                                self.step_down("the lock is held by another contender");
                                next_attempt = Instant::now() + timings.retry_period;
                            }
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, holder = %self.holder, "renewal failed; retrying");
                                next_attempt = Instant::now() + timings.retry_period / 4;
                            }
                            None => {
                                self.step_down("renewal did not complete within the renew deadline");
                                next_attempt = Instant::now() + timings.retry_period;
                            }
                        }
                    }
                    r = self.watch.changed() => {
                        if r.is_err() { return; }
                        self.on_snapshot();
                    }
                }
            } else {
                let wake = self
                    .follower_wake(next_attempt)
                    .max(last_attempt + Self::min_gap(answered, timings.retry_period));
                tokio::select! {
                    _ = sleep_until(wake) => {
                        (last_attempt, answered) = self.attempt().await;
                        next_attempt = last_attempt + timings.retry_period;
                    }
                    r = self.watch.changed() => {
                        if r.is_err() { return; }
                        self.on_snapshot();
                    }
                }
            }
        }
    }

    /// The least pause between two attempts: short while the API answers (a released
    /// lock is taken at once), longer after a failure so a failing API is not hammered.
    fn min_gap(answered: bool, retry_period: std::time::Duration) -> std::time::Duration {
        if answered {
            std::time::Duration::from_millis(5)
        } else {
            retry_period / 4
        }
    }

    /// When a follower should try next: at once if the lock is free, else when the
    /// observed record expires, and at the latest at `next_attempt`.
    fn follower_wake(&self, next_attempt: Instant) -> Instant {
        match &self.observed {
            Some((raw, seen)) => {
                let holder = LeaderRecord::parse(raw).map(|r| r.holder_identity);
                match holder {
                    Some(h) if h.is_empty() || h == self.holder => Instant::now(),
                    _ => next_attempt.min(*seen + self.core.timings.lease_duration),
                }
            }
            None => next_attempt,
        }
    }

    fn observe(&mut self, raw: Option<&str>) {
        let raw = raw.unwrap_or("");
        if self.observed.as_ref().is_none_or(|(r, _)| r != raw) {
            self.observed = Some((raw.to_string(), Instant::now()));
        }
    }

    fn step_down(&mut self, reason: &str) {
        if let Some(v) = self.validity.take() {
            v.expire();
        }
        if self.term.take().is_some() {
            self.core.end_term(&self.holder);
            tracing::info!(holder = %self.holder, group = %self.group, reason, "leadership given up");
            self.sink.revoke();
        }
    }

    /// Takes in the latest state of the lock's watch: the lock record (a newer term
    /// means we lost it).
    fn on_snapshot(&mut self) {
        let Some(object) = self.watch.latest() else {
            return;
        };
        let raw = object.as_ref().and_then(|o| o.raw_record(&self.lock.annotation));
        match (object, &self.latest) {
            (Some(new), Some(old)) if new.version() > old.version() => self.latest = Some(new),
            (Some(new), None) => self.latest = Some(new),
            (None, _) => self.latest = None,
            _ => {}
        }
        if let Some((epoch, _)) = self.term {
            // Snapshots may lag behind our own reads: only a later term counts.
            if let Some(r) = raw.as_deref().and_then(LeaderRecord::parse) {
                if r.leader_transitions > epoch || (r.leader_transitions == epoch && r.holder_identity != self.holder) {
                    self.step_down("a later term holds the lock");
                }
            }
        }
        self.observe(raw.as_deref());
    }

    /// The epoch of a term that finds no readable lock record (the lock object or
    /// its record deleted, or the record corrupt): above any epoch of this group
    /// found in the HA ConfigMaps (per-job and result ConfigMaps outlive a deleted
    /// cluster ConfigMap), in cluster stamps and in registered creations.
    async fn first_epoch(&self) -> Result<u64> {
        let cms = self
            .core
            .cms
            .list(&self.core.layout.selector())
            .await
            .map_err(|e| e.into_error("list", "HA ConfigMaps"))?;
        let max = cms
            .iter()
            .filter_map(|c| c.data.as_ref())
            .flat_map(|d| {
                d.iter()
                    .filter(|(k, _)| *k == EPOCH_KEY || k.starts_with(STAMP_PREFIX) || k.starts_with(PENDING_PREFIX))
            })
            .filter_map(|(_, r)| EpochRecord::parse(r))
            .filter(|r| r.group == self.group)
            .map(|r| r.epoch)
            .max()
            .unwrap_or(0);
        Ok(max + 1)
    }

    fn record(&self, acquire_time: String, transitions: u64) -> LeaderRecord {
        LeaderRecord {
            holder_identity: self.holder.clone(),
            lease_duration_seconds: self.core.timings.lease_duration.as_secs_f64().ceil() as u64,
            acquire_time,
            renew_time: now_rfc3339(),
            leader_transitions: transitions,
        }
    }

    /// client-go's `tryAcquireOrRenew`: `Some(epoch)` if this candidacy holds the
    /// lock after the call.
    async fn try_acquire_or_renew(&mut self) -> Result<Option<u64>> {
        let name = self.lock.name.clone();
        let err = |e: ApiError| e.into_error("acquire or renew leader lock", &name);
        // A leader first tries its newest copy: one request per renewal instead of two.
        let mut cached = match self.term {
            Some(_) => self.latest.clone(),
            None => None,
        };
        for _ in 0..CONFLICT_RETRIES {
            let current = match cached.take() {
                Some(object) => Some(object),
                None => self.core.locks.get(&self.core, &self.lock).await.map_err(err)?,
            };
            let Some(mut object) = current else {
                let record = self.record(now_rfc3339(), self.first_epoch().await?);
                match self.core.locks.create(&self.core, &self.lock, &record).await {
                    Ok(written) => {
                        self.latest = Some(written);
                        self.observe(Some(&record.to_json()));
                        return Ok(Some(record.leader_transitions));
                    }
                    Err(ApiError::Conflict) => continue,
                    Err(e) => return Err(err(e)),
                }
            };
            let raw = object.raw_record(&self.lock.annotation);
            self.observe(raw.as_deref());
            let readable = raw.as_deref().and_then(LeaderRecord::parse).is_some();
            let current = raw.as_deref().map(|r| {
                LeaderRecord::parse(r).unwrap_or_else(|| LeaderRecord {
                    holder_identity: "<unreadable record>".into(),
                    ..Default::default()
                })
            });
            let leading = matches!((self.term, &current), (Some((e, _)), Some(r)) if r.holder_identity == self.holder && r.leader_transitions == e);
            let record = if leading {
                let r = current.as_ref().map(|r| (r.acquire_time.clone(), r.leader_transitions));
                let (acquired, transitions) = r.unwrap_or_default();
                self.record(acquired, transitions)
            } else {
                if let Some(r) = &current {
                    let foreign = !r.holder_identity.is_empty() && r.holder_identity != self.holder;
                    let seen = self.observed.as_ref().map_or_else(Instant::now, |(_, t)| *t);
                    if foreign && Instant::now() < seen + self.core.timings.lease_duration {
                        return Ok(None);
                    }
                }
                // An unreadable record carries no epoch: never go back below the
                // epochs stored elsewhere.
                let transitions = match &current {
                    Some(r) if readable && !self.above_stamps => r.leader_transitions + 1,
                    Some(r) if readable => (r.leader_transitions + 1).max(self.first_epoch().await?),
                    _ => self.first_epoch().await?,
                };
                self.record(now_rfc3339(), transitions)
            };
            object.set_record(&self.lock.annotation, &record);
            match self.core.locks.replace(&self.core, &object).await {
                Ok(written) => {
                    self.latest = Some(written);
                    self.observe(Some(&record.to_json()));
                    return Ok(Some(record.leader_transitions));
                }
                Err(ApiError::Conflict) => continue,
                Err(e) => return Err(err(e)),
            }
        }
        // Only conflicts: the object is busy, which says nothing about the lock.
        Err(Error::VersionConflict { key: name })
    }

    /// Before a new term is granted, the cluster ConfigMap's data with the creations
    /// older terms registered: with the ConfigMap lock as the acquisition wrote it;
    /// with the Lease lock as the raise of this term's stamp `epoch.<group>` read it
    /// (one guarded update; from then on no older term can write the cluster
    /// ConfigMap, see `lock`).
    async fn cluster_data(&self, fence: &Fence) -> Result<Option<BTreeMap<String, String>>> {
        match self.core.locks.kind() {
            LockKind::ConfigMap => Ok(self
                .latest
                .as_ref()
                .and_then(LockObject::config_map)
                .and_then(|cm| cm.data.clone())),
            LockKind::Lease => {
                let name = self.core.layout.cluster_config_map();
                let data = self
                    .core
                    .update(
                        &name,
                        &name,
                        "raise the term stamp",
                        Fencing::Lock(fence),
                        false,
                        |data| Ok(Apply::Write(data.clone())),
                    )
                    .await?;
                Ok(Some(data))
            }
        }
    }

    /// Registers the new term, (with the Lease lock) raises its stamp in the cluster
    /// ConfigMap, claims the ConfigMaps whose creation an older term registered, then
    /// reports `Granted`. If that cannot finish within the renew deadline, the term
    /// is given up (`false`).
    async fn on_acquired(&mut self, epoch: u64, started: Instant) -> bool {
        let valid_until = started + self.core.timings.renew_deadline;
        self.term = Some((epoch, started));
        self.core.set_term(&self.holder, Term { epoch, valid_until });
        let fence = Fence::new(Epoch(epoch), epoch::token(&self.group, &self.holder));
        let claimed = async {
            let cluster = self.cluster_data(&fence).await?;
            self.core.claim_pending(&fence, cluster.as_ref()).await
        };
        match tokio::time::timeout_at(valid_until, claimed).await {
            Ok(Ok(())) => {
                tracing::info!(holder = %self.holder, group = %self.group, epoch, "leader lock acquired");
                self.above_stamps = false;
                let validity = Validity::until(valid_until);
                self.validity = Some(validity.clone());
                self.sink.grant(fence, validity);
                true
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(e)) => {
                        // A newer stamp than the lock's count: start above it next time.
                        self.above_stamps |= matches!(e, Error::NotLeader { .. });
                        e.to_string()
                    }
                    _ => "timed out".to_string(),
                };
                tracing::warn!(holder = %self.holder, %reason, "could not claim pending creations; giving the lock back");
                self.term = None;
                self.core.end_term(&self.holder);
                let _ = release(&self.core, &self.lock, &self.holder).await;
                false
            }
        }
    }
}
