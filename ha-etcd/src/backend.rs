//! `EtcdBackend`: one connected instance ("process") on one etcd lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, DeleteOptions};
use ha_core::driver::{
    CheckpointIdCounterDriver, LeaderElectionDriver, LeaderRecordStream, StateHandleStore, TermSink,
};
use ha_core::{ClusterId, ComponentId, ElectionGroup, Error, HaBackend, JobId, Result, StoreNamespace};

use crate::config::EtcdConfig;
use crate::counter::EtcdCounter;
use crate::election::EtcdElectionDriver;
use crate::error::rpc;
use crate::layout::Layout;
use crate::session::{LeaseState, Session};
use crate::store::EtcdStore;

/// What every driver of one instance shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) layout: Layout,
    pub(crate) timeout: Duration,
    pub(crate) cluster_id: ClusterId,
    pub(crate) instance_id: String,
    pub(crate) session: Session,
}

impl Shared {
    /// The active lease for binding a key, or why there is none.
    pub(crate) fn lease(&self) -> Result<i64> {
        match self.session.state() {
            LeaseState::Active(l) => Ok(l.id),
            LeaseState::Pending => Err(Error::Unavailable {
                what: format!("etcd session of {} (lease lost, renewing)", self.instance_id),
                source: None,
            }),
            LeaseState::Closed => Err(self.closed()),
        }
    }

    pub(crate) fn closed(&self) -> Error {
        Error::closed(format!("etcd backend instance {}", self.instance_id))
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        match self.session.state() {
            LeaseState::Closed => Err(self.closed()),
            _ => Ok(()),
        }
    }
}

/// A connected etcd backend instance: one lease kept alive by a loop we own, from
/// which every driver is built. Cheap to clone.
///
/// Dropping every handle without [`HaBackend::close`] stops the keep-alive loop
/// without revoking the lease, as a crash would; [`halt`](Self::halt) does the same
/// explicitly.
#[derive(Clone)]
pub struct EtcdBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("cluster_id", &self.shared.cluster_id)
            .field("instance_id", &self.shared.instance_id)
            .field("root", &self.shared.layout.root())
            .finish()
    }
}

/// Connects an etcd client for `config`.
pub(crate) async fn connect_client(config: &EtcdConfig) -> Result<Client> {
    config.validate(|k| format!("high-availability.etcd.{k}"))?;
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(config.request_timeout)
        // HTTP/2 pings find dead connections for the watch streams. etcd refuses
        // pings more often than every 5 s (`--grpc-keepalive-min-time`) with GOAWAY.
        // Lease safety never depends on them: the session loop has its own deadline.
        .with_keep_alive(Duration::from_secs(5), config.request_timeout)
        .with_keep_alive_while_idle(false)
        .with_require_leader(true);
    if let Some((user, password)) = &config.credentials {
        opts = opts
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    opts = crate::tls::apply(opts, config)?;
    let endpoints = config.endpoints.join(",");
    rpc(config.request_timeout, Client::connect(&config.endpoints, Some(opts)))
        .await
        .map_err(|e| e.read(format!("connection to {endpoints}")))
}

impl EtcdBackend {
    /// Connects a new instance for `cluster_id`: grants the session lease and starts
    /// its keep-alive loop.
    pub async fn connect(cluster_id: &ClusterId, config: &EtcdConfig) -> Result<Self> {
        let client = connect_client(config).await?;
        let session = Session::start(client.clone(), config.lease_ttl, config.request_timeout)
            .await
            .map_err(|e| e.read(format!("lease grant at {}", config.endpoints.join(","))))?;
        let instance_id = format!("etcd-{}", uuid::Uuid::new_v4().simple());
        tracing::debug!(%cluster_id, %instance_id, lease = ?session.lease_id(), "etcd backend connected");
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                layout: Layout::new(&config.key_prefix, cluster_id),
                timeout: config.request_timeout,
                cluster_id: cluster_id.clone(),
                instance_id,
                session,
            }),
        })
    }

    /// The id of the session lease while one is active.
    pub fn lease_id(&self) -> Option<i64> {
        self.shared.session.lease_id()
    }

    /// The prefix under which every key of the cluster lives (`<prefix>/<cluster-id>/`).
    pub fn key_root(&self) -> &str {
        self.shared.layout.root()
    }
}

#[async_trait]
impl HaBackend for EtcdBackend {
    /// Stops every background activity of this instance without telling etcd, as if
    /// the process had died: the lease runs out on the server only after its TTL.
    fn halt(&self) {
        self.shared.session.halt();
    }

    fn cluster_id(&self) -> &ClusterId {
        &self.shared.cluster_id
    }

    fn instance_id(&self) -> &str {
        &self.shared.instance_id
    }

    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>> {
        self.shared.check_open()?;
        Ok(Box::new(
            EtcdElectionDriver::start(self.shared.clone(), group.as_str(), sink).await,
        ))
    }

    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream> {
        self.shared.check_open()?;
        crate::leader_record::watch(&self.shared, component).await
    }

    async fn leader_components(&self) -> Result<Vec<ComponentId>> {
        crate::leader_record::components(&self.shared).await
    }

    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<ha_core::Participant>> {
        crate::participants::participants(&self.shared, &self.shared.layout.latch_dir(group.as_str())).await
    }

    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>> {
        self.shared.check_open()?;
        Ok(Arc::new(EtcdStore::new(self.shared.clone(), namespace.to_string())))
    }

    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>> {
        self.shared.check_open()?;
        Ok(Arc::new(EtcdCounter::new(self.shared.clone(), job)))
    }

    async fn close(&self) -> Result<()> {
        self.shared
            .session
            .close()
            .await
            .map_err(|e| e.write("lease revoke", self.shared.layout.root()))
    }

    async fn cleanup_all_data(&self) -> Result<()> {
        self.shared.check_open()?;
        let root = self.shared.layout.root().to_string();
        let mut kv = self.shared.client.kv_client();
        rpc(
            self.shared.timeout,
            kv.delete(root.clone(), Some(DeleteOptions::new().with_prefix())),
        )
        .await
        .map_err(|e| e.write("delete prefix", root.clone()))?;
        // Our lease carries nothing of value any more (its candidacies and locks were
        // under the prefix); revoking it leaves no lease behind either.
        self.close().await
    }
}
