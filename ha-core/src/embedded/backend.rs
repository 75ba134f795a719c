//! One embedded backend instance ("process"): a session with a keep-alive task, and the
//! election and retrieval drivers built on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::state::{require_session, Candidate, CandidateId, RecordWatcher, SessionId};
use super::store::{EmbeddedCounter, EmbeddedStore};
use super::EmbeddedCluster;
use crate::driver::{
    leader_record_stream, Candidacies, CheckpointIdCounterDriver, HaBackend, LeaderElectionDriver, LeaderRecordStream,
    Participant, StateHandleStore, StoreNamespace, TermSink,
};
use crate::error::{Error, Result};
use crate::ids::{ClusterId, ComponentId, ElectionGroup, Fence, JobId, LeaderInformation};

/// A connected embedded backend instance. Dropping every handle to it (the instance
/// and the drivers it made) without [`HaBackend::close`] behaves as a crash: its
/// session expires after the cluster's lease and only then do others take over.
#[derive(Clone)]
pub struct EmbeddedBackend {
    pub(super) inner: Arc<Instance>,
}

pub(super) struct Instance {
    pub(super) cluster: EmbeddedCluster,
    pub(super) instance_id: String,
    pub(super) session: Mutex<SessionId>,
    paused: AtomicBool,
    closed: AtomicBool,
    candidacies: Candidacies<Candidacy>,
    keepalive: Mutex<Option<JoinHandle<()>>>,
}

struct Candidacy {
    group: String,
    sink: TermSink,
    current: Mutex<Option<CandidateId>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(task) = self.keepalive.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("cluster_id", &self.inner.cluster.cluster_id())
            .field("instance_id", &self.inner.instance_id)
            .finish()
    }
}

impl Instance {
    pub(super) fn session(&self) -> SessionId {
        *self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::closed(format!("embedded backend instance {}", self.instance_id)))
        } else {
            Ok(())
        }
    }

    /// Renews the session, or — if it expired (e.g. while paused) — opens a new one
    /// and re-enters every live candidacy, as a ZooKeeper client does after expiry.
    fn renew(&self) -> Option<tokio::time::Instant> {
        let lease = self.cluster.lease();
        let mut st = self.cluster.lock();
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let next = st.sweep();
        if let Some(s) = st.sessions.get_mut(&session) {
            s.expires_at = tokio::time::Instant::now() + lease;
            s.validity.extend(s.expires_at);
        } else {
            *session = st.open_session(&self.instance_id, lease);
            for c in self.candidacies.live() {
                let id = st.next_id();
                st.elections
                    .entry(c.group.clone())
                    .or_default()
                    .candidates
                    .push(Candidate {
                        id,
                        session: *session,
                        sink: c.sink.clone(),
                    });
                *c.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
            }
            st.grant_leaderless();
        }
        next
    }
}

impl EmbeddedBackend {
    pub(super) fn connect(cluster: EmbeddedCluster) -> Self {
        let instance_id = format!("embedded-{}", uuid::Uuid::new_v4().simple());
        let session = cluster.lock().open_session(&instance_id, cluster.lease());
        let inner = Arc::new(Instance {
            cluster,
            instance_id,
            session: Mutex::new(session),
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            candidacies: Candidacies::default(),
            keepalive: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let period = inner.cluster.lease() / 4;
        let task = tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                let mut wake = tokio::time::Instant::now() + period;
                if !inner.paused.load(Ordering::SeqCst) {
                    if let Some(next_expiry) = inner.renew() {
                        // Wake up just after the next foreign session may expire, so a
                        // crashed leader is replaced promptly.
                        wake = wake.min(next_expiry + std::time::Duration::from_millis(1));
                    }
                }
                drop(inner);
                tokio::time::sleep_until(wake).await;
            }
        });
        *inner.keepalive.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Self { inner }
    }

    /// Stops renewing the session, as if the process were frozen (SIGSTOP). After the
    /// lease it expires and others take over; [`resume`](Self::resume) then re-enters
    /// the election with a new session.
    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes renewing after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
        self.inner.renew();
    }
}

#[async_trait]
impl HaBackend for EmbeddedBackend {
    /// Stops renewing the session, as [`pause`](EmbeddedBackend::pause) does.
    fn halt(&self) {
        self.pause();
    }

    fn cluster_id(&self) -> &ClusterId {
        self.inner.cluster.cluster_id()
    }

    fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>> {
        self.inner.check_open()?;
        let candidacy = Arc::new(Candidacy {
            group: group.to_string(),
            sink: sink.clone(),
            current: Mutex::new(None),
        });
        {
            let mut st = self.inner.cluster.lock();
            st.sweep();
            let session = self.inner.session();
            require_session(&st, session, &self.inner.instance_id)?;
            let id = st.next_id();
            st.elections
                .entry(group.to_string())
                .or_default()
                .candidates
                .push(Candidate { id, session, sink });
            *candidacy.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
            self.inner.candidacies.add(&candidacy);
            st.grant_leaderless();
        }
        Ok(Box::new(EmbeddedElectionDriver {
            instance: self.inner.clone(),
            candidacy,
        }))
    }

    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream> {
        self.inner.check_open()?;
        let mut st = self.inner.cluster.lock();
        let current = st.leader_info.get(component).cloned();
        Ok(leader_record_stream(current, |tx| {
            st.watchers.push(RecordWatcher {
                component: component.clone(),
                tx: tx.clone(),
            });
            // Changes are pushed by the cluster state; nothing to poll.
            async move { tx.closed().await }
        }))
    }

    async fn leader_components(&self) -> Result<Vec<ComponentId>> {
        self.inner.check_open()?;
        Ok(self.inner.cluster.lock().leader_info.keys().cloned().collect())
    }

    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<Participant>> {
        self.inner.check_open()?;
        let mut st = self.inner.cluster.lock();
        st.sweep();
        Ok(st.participants(group.as_str()))
    }

    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>> {
        self.inner.check_open()?;
        Ok(Arc::new(EmbeddedStore::new(self.inner.clone(), namespace.to_string())))
    }

    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>> {
        self.inner.check_open()?;
        Ok(Arc::new(EmbeddedCounter::new(self.inner.clone(), job.to_string())))
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut st = self.inner.cluster.lock();
        st.end_session(self.inner.session());
        st.grant_leaderless();
        Ok(())
    }

    async fn cleanup_all_data(&self) -> Result<()> {
        self.inner.check_open()?;
        let mut st = self.inner.cluster.lock();
        st.resign_session(self.inner.session());
        st.clear_data();
        Ok(())
    }
}

struct EmbeddedElectionDriver {
    instance: Arc<Instance>,
    candidacy: Arc<Candidacy>,
}

impl EmbeddedElectionDriver {
    fn leader_write(&self, fence: &Fence, component: &ComponentId, info: Option<LeaderInformation>) -> Result<()> {
        self.instance.check_open()?;
        let mut st = self.instance.cluster.lock();
        st.sweep();
        st.check_fence(fence, &format!("leader/{component}"))?;
        st.set_leader_record(component, info.map(|i| Bytes::from(i.to_json())));
        Ok(())
    }
}

#[async_trait]
impl LeaderElectionDriver for EmbeddedElectionDriver {
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        self.leader_write(fence, component, Some(info.clone()))
    }

    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        self.leader_write(fence, component, None)
    }

    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()> {
        self.instance.check_open()?;
        let group = &self.candidacy.group;
        let mut st = self.instance.cluster.lock();
        st.sweep();
        st.check_fence(fence, &format!("leadership of group {group}"))?;
        let current = *self.candidacy.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(from) = current else {
            return Err(fence.rejected(format!("leadership of group {group}")));
        };
        st.hand_off(group, from, target)
    }

    async fn resign(&self) -> Result<()> {
        self.candidacy.sink.resign();
        let current = self.candidacy.current.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(id) = current {
            self.instance.cluster.lock().remove_candidate(&self.candidacy.group, id);
        }
        Ok(())
    }
}
