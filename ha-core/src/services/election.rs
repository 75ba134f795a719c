//! `LeaderElectionService`: many components, one backend election.
//!
//! One service per process and election group joins the backend election once (one
//! driver) and multiplexes every registered component over it. When the driver wins,
//! every component is granted a [`LeaderGrant`] with one fresh session id and the
//! backend's epoch. A component's leader information is published only after the
//! contender [confirms](LeaderElection::confirm) with its address, and every publish
//! is fenced. On revocation every component loses its grant at once.
//!
//! If the published information of a confirmed component is changed or deleted from
//! outside while we lead, the service writes it back (self-healing).
//!
//! Contenders observe their state through a `tokio::sync::watch` channel:
//! `Some(grant)` while granted, `None` otherwise. A new grant always carries a new
//! session id, so a contender that only sees the latest value still notices that a
//! revoke happened in between.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::driver::{ElectionEvent, HaBackend, LeaderElectionDriver};
use crate::error::{Error, Result};
use crate::ids::{ComponentId, Epoch, Fence, LeaderInformation, LeaderSessionId};

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

struct ComponentState {
    tx: watch::Sender<Option<LeaderGrant>>,
    confirmed: Option<LeaderInformation>,
}

struct Shared {
    group: String,
    current: Option<LeaderGrant>,
    components: BTreeMap<ComponentId, ComponentState>,
    closed: bool,
}

struct Inner {
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
    pub async fn start(backend: &dyn HaBackend, group: &str) -> Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = backend.election_driver(group, tx).await?;
        let inner = Arc::new(Inner {
            driver,
            shared: Mutex::new(Shared {
                group: group.to_string(),
                current: None,
                components: BTreeMap::new(),
                closed: false,
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
        s.components
            .insert(component.clone(), ComponentState { tx, confirmed: None });
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
                .filter_map(|(c, st)| st.confirmed.take().map(|_| c.clone()))
                .collect();
            for st in s.components.values() {
                st.tx.send_replace(None);
            }
            (grant, confirmed)
        };
        if let Some(task) = self.inner.events_task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        if let Some(grant) = grant {
            for component in confirmed {
                if let Err(e) = self
                    .inner
                    .driver
                    .delete_leader_information(&grant.fence, &component)
                    .await
                {
                    tracing::debug!(%component, error = %e, "could not delete leader information on close");
                }
            }
        }
        self.inner.driver.resign().await
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
        {
            let mut s = self.inner.lock();
            if s.current.as_ref().map(|g| g.session_id) != Some(grant.session_id) {
                return Err(grant.fence.rejected(format!("leader/{component}")));
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
        crate::metrics::fenced_write("publish_leader", publish).await
    }

    async fn unregister(&self, component: &ComponentId) -> Result<()> {
        let removed = {
            let mut s = self.inner.lock();
            let st = s.components.remove(component);
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

async fn run_events(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<ElectionEvent>) {
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
                crate::metrics::leadership(&s.group, true);
                for st in s.components.values_mut() {
                    st.confirmed = None;
                    st.tx.send_replace(Some(grant.clone()));
                }
            }
            ElectionEvent::Revoked => revoke(&inner),
            ElectionEvent::LeaderInformationChanged { component, info } => {
                let repair = {
                    let s = inner.lock();
                    match (
                        &s.current,
                        s.components.get(&component).and_then(|c| c.confirmed.clone()),
                    ) {
                        (Some(grant), Some(confirmed)) if info.as_ref() != Some(&confirmed) => {
                            Some((grant.fence.clone(), confirmed))
                        }
                        _ => None,
                    }
                };
                if let Some((fence, confirmed)) = repair {
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
            ElectionEvent::Error(e) => {
                tracing::error!(error = %e, "leader election driver failed; treating as revoked");
                revoke(&inner);
            }
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

    /// The current grant, if leading.
    pub fn current(&self) -> Option<LeaderGrant> {
        self.rx.borrow().clone()
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

    /// Whether `grant` is still the current term.
    pub fn has_leadership(&self, grant: &LeaderGrant) -> bool {
        self.rx.borrow().as_ref().map(|g| g.session_id) == Some(grant.session_id)
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
