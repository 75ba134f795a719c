//! `ZooKeeperBackend`: one session of one cluster-id, and the drivers built on it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::driver::{
    Candidacies, CheckpointIdCounterDriver, HaBackend, LeaderElectionDriver, LeaderRecordStream, Participant,
    StateHandleStore, StoreNamespace, TermSink,
};
use ha_core::{ClusterId, ComponentId, ElectionGroup, Error, JobId, Result};
use zookeeper_client as zk;

use crate::config::ZooKeeperConfig;
use crate::counter::ZkCounter;
use crate::election::{Candidacy, ZkElectionDriver};
use crate::layout::Layout;
use crate::session::Sessions;
use crate::store::ZkStore;

/// What the backend's drivers share.
pub(crate) struct Shared {
    pub(crate) cluster_id: ClusterId,
    pub(crate) instance_id: String,
    pub(crate) layout: Layout,
    pub(crate) sessions: Sessions,
    candidacies: Candidacies<Candidacy>,
    /// Leader-information nodes this instance created or set last and has not deleted
    /// since: a hint of which write to try first (see `leader_info`).
    pub(crate) published: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Connection state of a backend instance, as ZooKeeper reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected; the session is alive.
    Connected,
    /// Disconnected; the session may still be alive and the client is reconnecting.
    Suspended,
    /// The session is over (expired, closed, or authentication failed); a new one is
    /// opened on the next use.
    Lost,
}

/// A ZooKeeper backend instance: one session for one cluster-id.
///
/// Dropping every handle (the instance and the drivers it made) without
/// [`close`](HaBackend::close) behaves as a crash: the connection goes away without
/// closing the session, and its ephemeral nodes (candidacy, locks) disappear only when
/// the server expires the session.
#[derive(Clone)]
pub struct ZooKeeperBackend {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for ZooKeeperBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeperBackend")
            .field("cluster_id", &self.inner.cluster_id)
            .field("instance_id", &self.inner.instance_id)
            .field("config", self.inner.sessions.config())
            .finish()
    }
}

impl Shared {
    /// Deletes the per-job parents of `path` (below `R/C/jobs/<job>`) that are empty
    /// after a removal, so a finished job leaves no znode behind. Best effort and
    /// unfenced: only empty nodes go, and a writer that finds its parent gone creates
    /// it again.
    pub(crate) async fn prune_job_parents(&self, path: &str) {
        let jobs = format!("{}/jobs/", self.layout.cluster());
        let Some(live) = self.sessions.peek().await else {
            return;
        };
        let mut p = crate::layout::parent(path);
        while p.len() > jobs.len() && p.starts_with(&jobs) {
            match live.client.delete(p, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                // Not empty (another entry lives on), or unreachable: stop here.
                Err(_) => return,
            }
            p = crate::layout::parent(p);
        }
    }
}

impl ZooKeeperBackend {
    /// Connects a new instance (opens a session) for `cluster_id`.
    pub async fn connect(cluster_id: &ClusterId, config: &ZooKeeperConfig) -> Result<Self> {
        let layout = Layout::new(&config.root, cluster_id);
        let sessions = Sessions::connect(config.clone()).await?;
        sessions.set_latch_root(&layout.latch_root());
        let instance_id = format!("zk-{}", uuid::Uuid::new_v4().simple());
        Ok(Self {
            inner: Arc::new(Shared {
                cluster_id: cluster_id.clone(),
                instance_id,
                layout,
                sessions,
                candidacies: Candidacies::default(),
                published: Default::default(),
            }),
        })
    }

    /// The session timeout the server negotiated for the current session (it clamps
    /// the requested one to its `minSessionTimeout`/`maxSessionTimeout`).
    pub async fn negotiated_session_timeout(&self) -> Option<Duration> {
        self.inner.sessions.peek().await.map(|l| l.client.session_timeout())
    }

    /// The current session id, if a session is open.
    pub async fn session_id(&self) -> Option<i64> {
        self.inner.sessions.peek().await.map(|l| l.client.session_id().0)
    }

    /// The connection state of the current session.
    pub async fn connection_state(&self) -> ConnectionState {
        match self.inner.sessions.peek().await.map(|l| l.client.state()) {
            Some(zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly) => ConnectionState::Connected,
            Some(zk::SessionState::Disconnected) => ConnectionState::Suspended,
            _ => ConnectionState::Lost,
        }
    }

    /// The znode under which everything of this cluster lives (`<root>/<cluster-id>`).
    pub fn cluster_path(&self) -> &str {
        self.inner.layout.cluster()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.sessions.is_closed() {
            Err(Error::closed(format!(
                "ZooKeeper backend instance {}",
                self.inner.instance_id
            )))
        } else {
            Ok(())
        }
    }

    /// Deletes `path` and everything below it; `Ok(false)` if something was recreated
    /// meanwhile and a retry is needed.
    async fn delete_tree(&self, path: &str) -> Result<bool> {
        let mut all = vec![path.to_string()];
        let mut i = 0;
        while i < all.len() {
            let p = all[i].clone();
            let p_ref = p.as_str();
            let children = self
                .inner
                .sessions
                .read(p_ref, |c| async move {
                    match c.list_children(p_ref).await {
                        Ok(v) => Ok(v),
                        Err(zk::Error::NoNode) => Ok(Vec::new()),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            all.extend(children.into_iter().map(|c| format!("{p}/{c}")));
            i += 1;
        }
        let mut clean = true;
        for p in all.iter().rev() {
            let p_ref = p.as_str();
            let r = self
                .inner
                .sessions
                .read(p_ref, |c| async move {
                    match c.delete(p_ref, None).await {
                        Ok(()) | Err(zk::Error::NoNode) => Ok(true),
                        Err(zk::Error::NotEmpty) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            clean &= r;
        }
        Ok(clean)
    }
}

#[async_trait]
impl HaBackend for ZooKeeperBackend {
    fn cluster_id(&self) -> &ClusterId {
        &self.inner.cluster_id
    }

    fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>> {
        self.check_open()?;
        let (driver, candidacy) = ZkElectionDriver::start(self.inner.clone(), group.as_str(), sink).await?;
        self.inner.candidacies.add(&candidacy);
        Ok(Box::new(driver))
    }

    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream> {
        self.check_open()?;
        let path = self.inner.layout.leader_info(component);
        crate::leader_record::watch(self.inner.clone(), path).await
    }

    async fn leader_components(&self) -> Result<Vec<ComponentId>> {
        crate::leader_record::components(&self.inner).await
    }

    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<Participant>> {
        crate::participants::participants(&self.inner, &self.inner.layout.latch_dir(group.as_str())).await
    }

    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>> {
        self.check_open()?;
        Ok(Arc::new(ZkStore::new(
            self.inner.clone(),
            self.inner.layout.namespace(namespace),
        )))
    }

    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>> {
        self.check_open()?;
        Ok(Arc::new(ZkCounter::new(
            self.inner.clone(),
            self.inner.layout.counter(job),
        )))
    }

    async fn close(&self) -> Result<()> {
        if self.inner.sessions.is_closed() {
            return Ok(());
        }
        let candidacies = self.inner.candidacies.take_all();
        tracing::debug!(instance = %self.inner.instance_id, candidacies = candidacies.len(), "closing ZooKeeper backend");
        for c in candidacies {
            crate::election::resign(&c).await?;
        }
        self.inner.sessions.close().await;
        tracing::debug!(instance = %self.inner.instance_id, "ZooKeeper backend closed");
        Ok(())
    }

    async fn cleanup_all_data(&self) -> Result<()> {
        self.check_open()?;
        // This instance's candidacies go first: a candidacy that lost its node would
        // join again and re-create the latch directory behind the deletion.
        for c in self.inner.candidacies.take_all() {
            crate::election::resign(&c).await?;
        }
        let cluster = self.inner.layout.cluster().to_string();
        for attempt in 0..10 {
            tracing::debug!(%cluster, attempt, "deleting cluster znodes");
            if self.delete_tree(&cluster).await? {
                return Ok(());
            }
            tracing::debug!(%cluster, attempt, "znodes were added during cleanup; deleting again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Other {
            message: format!("could not delete every znode under {cluster}: live processes keep adding nodes"),
            source: None,
        })
    }
}
