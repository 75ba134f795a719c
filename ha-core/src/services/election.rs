//! `LeaderElectionService`: many components, one backend election.
//!
//! One service per process and election group joins the backend election once (one
//! driver) and multiplexes every registered component over it. When the driver wins,
//! every component is granted a [`LeaderGrant`] with one fresh session id and the
//! backend's epoch. A component's leader information is published only after the
//! contender [confirms](LeaderElection::confirm) with its address, and every publish
//! is fenced. On revocation every component loses its grant at once.
//!
//! If the published information of a confirmed component is changed, corrupted or
//! deleted from outside while we lead, the service writes it back (self-healing): it
//! watches each confirmed component's record through
//! [`HaBackend::watch_leader_record`], one policy for every backend.
//!
//! Leadership is bounded by the clock: every grant carries the term's
//! [`Validity`](crate::driver::Validity) (the local time until which no other
//! contender can have been granted), and [`LeaderElection::has_leadership`],
//! [`LeaderElection::current`], confirmation and every fenced write check it first. A
//! process resumed after a pause longer than its lease therefore stops acting at once,
//! before any background task has run.
//!
//! Contenders observe their state through a `tokio::sync::watch` channel:
//! `Some(grant)` while granted, `None` otherwise. A new grant always carries a new
//! session id, so a contender that only sees the latest value still notices that a
//! revoke happened in between.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::health::{LeaderHealth, LeaderHealthCheck};
use super::retrieval::decode_lenient;
use crate::driver::{ElectionEvent, HaBackend, LeaderElectionDriver, Participant, TermSink};
use crate::error::{Error, Result};
use crate::ids::{ComponentId, ElectionGroup, Epoch, Fence, LeaderInformation, LeaderSessionId};

/// A granted leadership term for one component.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LeaderGrant {
    /// Fresh session id of this term.
    pub session_id: LeaderSessionId,
    /// The backend's fencing epoch of this term.
    pub epoch: Epoch,
    /// Fence to present with every HA write of this term.
    pub fence: Fence,
}

impl LeaderGrant {
    /// The local monotonic time until which this term is known to hold (`None` if
    /// the backend sets no local bound), extended by the backend's renewals. After it
    /// the term no longer counts, whether or not a revocation arrived yet.
    pub fn valid_until(&self) -> Option<Instant> {
        self.fence.valid_until()
    }

    /// Whether the term is still within its validity.
    pub fn is_valid(&self) -> bool {
        self.fence.is_valid()
    }
}

/// Aborts the watch task of a confirmed component's record when dropped.
struct RecordGuard(JoinHandle<()>);

impl Drop for RecordGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ComponentState {
    tx: watch::Sender<Option<LeaderGrant>>,
    confirmed: Option<LeaderInformation>,
    /// Watches the published record while confirmed, repairing drift.
    guard: Option<RecordGuard>,
}

struct Shared {
    group: String,
    current: Option<LeaderGrant>,
    components: BTreeMap<ComponentId, ComponentState>,
    closed: bool,
    /// The backend's election events ended: the driver no longer contends.
    events_ended: bool,
    /// The driver's last error, until the next grant.
    driver_error: Option<String>,
}

/// What [`LeaderHealthCheck`](super::LeaderHealthCheck) reads of a service.
pub(super) struct HealthSnapshot {
    pub(super) closed: bool,
    pub(super) events_ended: bool,
    pub(super) driver_error: Option<String>,
    pub(super) current: Option<LeaderGrant>,
}

pub(super) struct Inner {
    backend: Arc<dyn HaBackend>,
    driver: Box<dyn LeaderElectionDriver>,
    shared: Mutex<Shared>,
    events_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.events_task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn health_snapshot(&self) -> HealthSnapshot {
        let s = self.lock();
        HealthSnapshot {
            closed: s.closed,
            events_ended: s.events_ended,
            driver_error: s.driver_error.clone(),
            current: s.current.clone(),
        }
    }

    pub(super) fn backend(&self) -> Arc<dyn HaBackend> {
        self.backend.clone()
    }
}

/// Leader election for the components of one election group.
#[derive(Clone)]
pub struct LeaderElectionService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LeaderElectionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.lock();
        f.debug_struct("LeaderElectionService")
            .field("group", &s.group)
            .field("leading", &s.current.is_some())
            .field("components", &s.components.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LeaderElectionService {
    /// Joins the election of `group` on `backend`.
    pub async fn start(backend: Arc<dyn HaBackend>, group: &str) -> Result<Self> {
        let group = ElectionGroup::new(group)?;
        let (sink, rx) = TermSink::channel();
        let driver = backend.election_driver(&group, sink).await?;
        let inner = Arc::new(Inner {
            backend,
            driver,
            shared: Mutex::new(Shared {
                group: group.to_string(),
                current: None,
                components: BTreeMap::new(),
                closed: false,
                events_ended: false,
                driver_error: None,
            }),
            events_task: Mutex::new(None),
        });
        let task = tokio::spawn(run_events(Arc::downgrade(&inner), rx));
        *inner.events_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Self { inner })
    }

    /// Registers `component` as a contender. If the service already leads, the new
    /// component is granted at once.
    pub fn register(&self, component: ComponentId) -> Result<LeaderElection> {
        let mut s = self.inner.lock();
        if s.closed {
            return Err(Error::closed(format!("leader election service of group {}", s.group)));
        }
        if s.components.contains_key(&component) {
            return Err(Error::AlreadyExists {
                key: format!("contender {component}"),
            });
        }
        let (tx, rx) = watch::channel(s.current.clone());
        s.components.insert(
            component.clone(),
            ComponentState {
                tx,
                confirmed: None,
                guard: None,
            },
        );
        Ok(LeaderElection {
            service: self.clone(),
            component,
            rx,
        })
    }

    /// Whether the group currently holds leadership (granted, confirmed or not).
    pub fn is_leader(&self) -> bool {
        self.inner.lock().current.is_some()
    }

    /// This process's leadership health now (see [`LeaderHealthCheck::status`]).
    pub fn health(&self, tolerance: std::time::Duration) -> LeaderHealth {
        self.health_check(tolerance).status()
    }

    /// A health check of this service for a liveness endpoint, as client-go's
    /// `HealthzAdaptor`: a leader whose term ran out more than `tolerance` ago without
    /// being revoked is wedged. It does not keep the service alive.
    pub fn health_check(&self, tolerance: std::time::Duration) -> LeaderHealthCheck {
        LeaderHealthCheck::new(Arc::downgrade(&self.inner), tolerance)
    }

    /// The contenders of this service's group now (the leader first), as the backend
    /// lists them; this process is the one whose id is
    /// [`HaBackend::instance_id`].
    pub async fn participants(&self) -> Result<Vec<Participant>> {
        let group = ElectionGroup::new(self.inner.lock().group.clone())?;
        self.inner.backend.participants(&group).await
    }

    /// Hands leadership to the contender `target` (an instance id from
    /// [`participants`](Self::participants)), e.g. before restarting this process in
    /// a rolling upgrade. The target is granted without waiting for a lease, and from
    /// the moment this returns every write fenced by the current term is refused;
    /// this process stays a contender behind it.
    ///
    /// Fails with `NotLeader` unless this service leads within its term,
    /// `InvalidRequest` if `target` is this process, and `NotFound` if `target` does
    /// not contend in the group.
    pub async fn hand_off(&self, target: &str) -> Result<()> {
        let (grant, group) = {
            let s = self.inner.lock();
            (s.current.clone(), s.group.clone())
        };
        let key = format!("leadership of group {group}");
        let grant = grant.ok_or_else(|| Error::NotLeader {
            key: key.clone(),
            epoch: 0,
        })?;
        grant.fence.check_valid(key.as_str())?;
        if target == self.inner.backend.instance_id() {
            return Err(Error::InvalidRequest {
                key,
                message: format!("cannot hand off to `{target}`: it is this process, which already leads"),
            });
        }
        let participants = self.participants().await?;
        if !participants.iter().any(|p| p.id == target) {
            let ids: Vec<&str> = participants.iter().map(|p| p.id.as_str()).collect();
            return Err(Error::NotFound {
                key: format!(
                    "participant `{target}` of group {group} (participants: {})",
                    ids.join(", ")
                ),
            });
        }
        tracing::info!(%group, %target, epoch = grant.epoch.0, "handing leadership off");
        self.inner.driver.hand_off(&grant.fence, target).await?;
        // The term is over: stop acting before the backend's revocation arrives.
        let still_current = self.inner.lock().current.as_ref().map(|g| g.session_id) == Some(grant.session_id);
        if still_current {
            revoke(&self.inner);
        }
        Ok(())
    }

    /// Gives up leadership and leaves the election: published information of the
    /// confirmed components is deleted (fenced) and the backend candidacy is resigned,
    /// so another contender is granted at once.
    pub async fn close(&self) -> Result<()> {
        let (grant, confirmed) = {
            let mut s = self.inner.lock();
            if s.closed {
                return Ok(());
            }
            s.closed = true;
            let grant = s.current.take();
            let confirmed: Vec<ComponentId> = s
                .components
                .iter_mut()
                .filter_map(|(c, st)| {
                    st.guard = None;
                    st.confirmed.take().map(|_| c.clone())
                })
                .collect();
            for st in s.components.values() {
                st.tx.send_replace(None);
            }
            (grant, confirmed)
        };
        if let Some(task) = self.inner.events_task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        match grant {
            Some(grant) if !confirmed.is_empty() => {
                self.inner
                    .driver
                    .delete_leader_information_and_resign(&grant.fence, &confirmed)
                    .await
            }
            _ => self.inner.driver.resign().await,
        }
    }

    async fn confirm(&self, component: &ComponentId, grant: &LeaderGrant, address: &str) -> Result<()> {
        let confirmed_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let info = LeaderInformation {
            session_id: grant.session_id,
            address: address.to_string(),
            epoch: grant.epoch.0,
            confirmed_at_ms,
        };
        let key = format!("leader/{component}");
        grant.fence.check_valid(key.as_str())?;
        {
            let mut s = self.inner.lock();
            if s.current.as_ref().map(|g| g.session_id) != Some(grant.session_id) {
                return Err(grant.fence.rejected(key));
            }
            let st = s.components.get_mut(component).ok_or_else(|| Error::NotFound {
                key: format!("contender {component}"),
            })?;
            st.confirmed = Some(info.clone());
        }
        let publish = self
            .inner
            .driver
            .publish_leader_information(&grant.fence, component, &info);
        crate::metrics::fenced_write("publish_leader", publish).await?;
        // Guard the record for the rest of the term. The guard's watch starts with the
        // record as it is then, so a change made before it is set up is repaired too;
        // confirming does not wait for it.
        let task = tokio::spawn(guard_record(
            Arc::downgrade(&self.inner),
            component.clone(),
            grant.session_id,
        ));
        let mut s = self.inner.lock();
        let still_current = s.current.as_ref().map(|g| g.session_id) == Some(grant.session_id);
        if let Some(st) = s.components.get_mut(component).filter(|_| still_current) {
            st.guard = Some(RecordGuard(task));
        } else {
            task.abort();
        }
        Ok(())
    }

    async fn unregister(&self, component: &ComponentId) -> Result<()> {
        let removed = {
            let mut s = self.inner.lock();
            let st = s.components.remove(component);
            // `st` is dropped below with its record guard.
            st.and_then(|st| st.confirmed).and(s.current.clone())
        };
        if let Some(grant) = removed {
            self.inner
                .driver
                .delete_leader_information(&grant.fence, component)
                .await?;
        }
        Ok(())
    }
}

async fn run_events(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<ElectionEvent>) {
    while let Some(event) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match event {
            ElectionEvent::Granted(fence) => {
                let grant = LeaderGrant {
                    session_id: LeaderSessionId::random(),
                    epoch: fence.epoch,
                    fence,
                };
                let mut s = inner.lock();
                tracing::info!(group = %s.group, epoch = grant.epoch.0, session = %grant.session_id, "leadership granted");
                s.current = Some(grant.clone());
                s.driver_error = None;
                crate::metrics::leadership(&s.group, true);
                for st in s.components.values_mut() {
                    st.confirmed = None;
                    st.guard = None;
                    st.tx.send_replace(Some(grant.clone()));
                }
            }
            ElectionEvent::Revoked => revoke(&inner),
            ElectionEvent::Error(e) => {
                tracing::error!(error = %e, "leader election driver failed; treating as revoked");
                inner.lock().driver_error = Some(e.to_string());
                revoke(&inner);
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        inner.lock().events_ended = true;
    }
}

/// Whether `component` is still confirmed in the term `session`.
fn still_confirmed(inner: &Inner, component: &ComponentId, session: LeaderSessionId) -> bool {
    let s = inner.lock();
    s.current.as_ref().is_some_and(|g| g.session_id == session)
        && s.components.get(component).is_some_and(|c| c.confirmed.is_some())
}

/// Back-off between attempts to start the watch of a confirmed record.
const GUARD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Follows the published record of a confirmed `component` during the term `session`
/// and writes the confirmed information back whenever the record differs from it
/// (changed, corrupted or deleted from outside). Starting the watch is retried while
/// the component stays confirmed.
async fn guard_record(inner: Weak<Inner>, component: ComponentId, session: LeaderSessionId) {
    let mut records = loop {
        let backend = {
            let Some(inner) = inner.upgrade() else { return };
            if !still_confirmed(&inner, &component, session) {
                return;
            }
            inner.backend.clone()
        };
        match backend.watch_leader_record(&component).await {
            Ok(records) => break records,
            Err(e) => {
                tracing::warn!(%component, error = %e, "could not watch the published leader information; retrying");
                tokio::time::sleep(GUARD_RETRY).await;
            }
        }
    };
    while let Some(record) = records.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let seen = decode_lenient(&component, record.as_ref());
        let repair = {
            let s = inner.lock();
            let Some(grant) = s.current.clone().filter(|g| g.session_id == session) else {
                return;
            };
            match s.components.get(&component).and_then(|c| c.confirmed.clone()) {
                Some(confirmed) if seen.as_ref() != Some(&confirmed) => Some((grant.fence, confirmed)),
                Some(_) => None,
                None => return,
            }
        };
        let Some((fence, confirmed)) = repair else { continue };
        if !fence.is_valid() {
            continue;
        }
        tracing::warn!(%component, "published leader information was changed from outside; restoring it");
        if let Err(e) = inner
            .driver
            .publish_leader_information(&fence, &component, &confirmed)
            .await
        {
            tracing::warn!(%component, error = %e, "could not restore leader information");
        }
    }
}

fn revoke(inner: &Inner) {
    let mut s = inner.lock();
    if s.current.take().is_some() {
        tracing::info!(group = %s.group, "leadership revoked");
        crate::metrics::leadership(&s.group, false);
    }
    for st in s.components.values_mut() {
        st.confirmed = None;
        st.guard = None;
        st.tx.send_replace(None);
    }
}

/// One component's view of the election: its grant, and confirmation.
#[derive(Debug)]
pub struct LeaderElection {
    service: LeaderElectionService,
    component: ComponentId,
    rx: watch::Receiver<Option<LeaderGrant>>,
}

impl LeaderElection {
    /// The component.
    pub fn component(&self) -> &ComponentId {
        &self.component
    }

    /// The current grant, if leading and within its validity.
    pub fn current(&self) -> Option<LeaderGrant> {
        self.rx.borrow().clone().filter(LeaderGrant::is_valid)
    }

    /// Until when the current term is known to hold (`None` if not leading or the
    /// backend sets no local bound), as client-go exposes its renew deadline.
    pub fn valid_until(&self) -> Option<Instant> {
        self.rx.borrow().as_ref().and_then(LeaderGrant::valid_until)
    }

    /// Waits for the next change of the grant and returns the new state.
    pub async fn changed(&mut self) -> Result<Option<LeaderGrant>> {
        self.rx
            .changed()
            .await
            .map_err(|_| Error::closed("leader election service"))?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// Waits until granted and returns the grant.
    pub async fn granted(&mut self) -> Result<LeaderGrant> {
        loop {
            if let Some(g) = self.rx.borrow_and_update().clone() {
                return Ok(g);
            }
            self.rx
                .changed()
                .await
                .map_err(|_| Error::closed("leader election service"))?;
        }
    }

    /// Waits until the grant `grant` is gone (revoked or replaced).
    pub async fn revoked(&mut self, grant: &LeaderGrant) -> Result<()> {
        loop {
            if self.rx.borrow_and_update().as_ref().map(|g| g.session_id) != Some(grant.session_id) {
                return Ok(());
            }
            self.rx
                .changed()
                .await
                .map_err(|_| Error::closed("leader election service"))?;
        }
    }

    /// Whether `grant` is still the current term and within its validity. Checks the
    /// clock, not only events: false at once after a pause past the lease.
    pub fn has_leadership(&self, grant: &LeaderGrant) -> bool {
        self.rx.borrow().as_ref().map(|g| g.session_id) == Some(grant.session_id) && grant.is_valid()
    }

    /// Confirms `grant` and publishes `address` for retrieval (fenced). Fails with
    /// `NotLeader` if the grant is no longer current.
    pub async fn confirm(&self, grant: &LeaderGrant, address: &str) -> Result<()> {
        self.service.confirm(&self.component, grant, address).await
    }

    /// Leaves the election for this component, deleting its published information if
    /// it was confirmed.
    pub async fn close(self) -> Result<()> {
        self.service.unregister(&self.component).await
    }
}
