//! `KubernetesBackend`: one connected instance ("process") for one cluster-id.

use std::sync::Arc;

use async_trait::async_trait;
use ha_core::driver::{
    Candidacies, CheckpointIdCounterDriver, HaBackend, LeaderElectionDriver, LeaderRecordStream, StateHandleStore,
    StoreNamespace, TermSink,
};
use ha_core::{ClusterId, ComponentId, ElectionGroup, Error, JobId, Participant, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio::task::JoinHandle;

use crate::client::ConfigMaps;
use crate::config::{KubernetesConfig, LeaseTimings};
use crate::counter::KubeCounter;
use crate::election::{Candidacy, KubeElectionDriver};
use crate::entry::Entry;
use crate::layout::Layout;
use crate::lock::{LockKind, Locks};
use crate::participants::ParticipantDriver;
use crate::session::Sessions;
use crate::shared::{Apply, Fencing, Shared};
use crate::store::{KubeStore, Location};

/// A connected Kubernetes backend instance.
///
/// It holds one watch on the cluster ConfigMap shared by all its drivers (and, with
/// the Lease lock, one watch per candidacy on its group's Lease). Its
/// identity ([`HaBackend::instance_id`]) owns its entry locks; each candidacy holds
/// the lock under its own holder identity derived from it. Dropping the instance and
/// its drivers without [`HaBackend::close`] behaves as a crash: nothing is released,
/// the lock expires after the lease duration.
pub struct KubernetesBackend {
    core: Arc<Shared>,
    watch_task: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    candidacies: Candidacies<Candidacy>,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("cluster_id", self.core.layout.cluster_id())
            .field("namespace", &self.core.namespace)
            .field("instance_id", &self.core.instance_id)
            .field("timings", &self.core.timings)
            .finish()
    }
}

impl Drop for KubernetesBackend {
    fn drop(&mut self) {
        self.watch_task.abort();
        self.sweeper.abort();
    }
}

impl KubernetesBackend {
    /// Connects with `config` (kubeconfig or in-cluster service account).
    pub async fn connect(cluster_id: &ClusterId, config: &KubernetesConfig) -> Result<Self> {
        let mut client_config = config.client_config().await?;
        // Retries are ours: kube's default retry of 429/503 (up to 15 times with
        // exponential backoff) would hold a request far past the renew deadline.
        client_config.default_retry = false;
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| client_config.default_namespace.clone());
        let client = kube::Client::try_from(client_config).map_err(|e| Error::Unavailable {
            what: "Kubernetes client".into(),
            source: Some(Box::new(e)),
        })?;
        Self::with_client_and_lock(client, &namespace, cluster_id, config.timings, config.lock)
    }

    /// An instance on an existing client. Must be called within a Tokio runtime.
    /// Build the client with `default_retry = false` (as [`connect`](Self::connect)
    /// does): the backend bounds and retries requests itself.
    pub fn with_client(
        client: kube::Client,
        namespace: &str,
        cluster_id: &ClusterId,
        timings: LeaseTimings,
    ) -> Result<Self> {
        Self::with_client_and_lock(client, namespace, cluster_id, timings, LockKind::default())
    }

    /// As [`with_client`](Self::with_client), with the leader lock in `lock`.
    pub fn with_client_and_lock(
        client: kube::Client,
        namespace: &str,
        cluster_id: &ClusterId,
        timings: LeaseTimings,
        lock: LockKind,
    ) -> Result<Self> {
        let names = Layout::new(cluster_id)?;
        let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let (snapshots, watch_task) = crate::watch::start(api.clone(), names.cluster_config_map());
        let cms = ConfigMaps::new(api, timings.request_timeout());
        let locks = Locks::new(lock, leases.clone(), timings.request_timeout());
        let sessions = Sessions::new(leases);
        let core = Arc::new(Shared::new(
            cms,
            names,
            timings,
            namespace.to_string(),
            snapshots,
            sessions,
            locks,
        ));
        let sweeper = core.sessions.start_sweeper(&core);
        Ok(Self {
            core,
            watch_task,
            sweeper,
            candidacies: Candidacies::default(),
        })
    }

    /// The namespace of the HA ConfigMaps.
    pub fn namespace(&self) -> &str {
        &self.core.namespace
    }

    /// Removes this instance's lock from every entry of the cluster's ConfigMaps.
    async fn release_all_locks(&self) -> Result<()> {
        let owner = self.core.instance_id.clone();
        let cms = self
            .core
            .cms
            .list(&self.core.layout.selector())
            .await
            .map_err(|e| e.into_error("list", "HA ConfigMaps"))?;
        for cm in cms {
            let Some(name) = cm.metadata.name.clone() else { continue };
            let locked = cm.data.as_ref().is_some_and(|d| d.values().any(|v| v.contains(&owner)));
            if !locked {
                continue;
            }
            let result = self
                .core
                .update(&name, &name, "release locks", Fencing::Unfenced, false, |data| {
                    let mut changed = false;
                    for (key, raw) in data.iter_mut() {
                        if !raw.contains(&owner) {
                            continue;
                        }
                        let Ok(mut entry) = Entry::parse(key, raw) else {
                            continue;
                        };
                        if entry.unlock(&owner) {
                            *raw = entry.to_json();
                            changed = true;
                        }
                    }
                    Ok(if changed { Apply::Write(()) } else { Apply::Keep(()) })
                })
                .await;
            match result {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn live_candidacies(&self) -> Vec<Arc<Candidacy>> {
        self.candidacies.live()
    }
}

#[async_trait]
impl HaBackend for KubernetesBackend {
    fn cluster_id(&self) -> &ClusterId {
        self.core.layout.cluster_id()
    }

    fn instance_id(&self) -> &str {
        &self.core.instance_id
    }

    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>> {
        self.core.check_open()?;
        let (driver, candidacy) = KubeElectionDriver::start(self.core.clone(), group.as_str(), sink).await?;
        self.candidacies.add(&candidacy);
        match ParticipantDriver::register(self.core.clone(), group.as_str(), driver).await {
            Ok(driver) => Ok(Box::new(driver)),
            Err(e) => {
                // Not listed, so not kept: leave the election instead of crashing in it.
                let _ = candidacy.resign(&self.core).await;
                Err(e)
            }
        }
    }

    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream> {
        self.core.check_open()?;
        Ok(crate::leader_record::watch(&self.core, component).await)
    }

    async fn leader_components(&self) -> Result<Vec<ComponentId>> {
        self.core.check_open()?;
        crate::leader_record::components(&self.core).await
    }

    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<Participant>> {
        self.core.check_open()?;
        crate::participants::participants(&self.core, group.as_str()).await
    }

    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>> {
        self.core.check_open()?;
        let location = match namespace {
            StoreNamespace::JobGraphs => Location::JobGraphs,
            StoreNamespace::JobResults => Location::JobResults,
            StoreNamespace::Checkpoints(job) => Location::Checkpoints(job.clone()),
        };
        Ok(Arc::new(KubeStore::new(self.core.clone(), location)))
    }

    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>> {
        self.core.check_open()?;
        Ok(Arc::new(KubeCounter::new(self.core.clone(), job)))
    }

    async fn close(&self) -> Result<()> {
        if self.core.is_closed() {
            return Ok(());
        }
        let mut first_error = None;
        for c in self.live_candidacies() {
            if let Err(e) = c.resign(&self.core).await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = crate::participants::unregister_all(&self.core, true).await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.release_all_locks().await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.core.sessions.end(&self.core).await {
            first_error.get_or_insert(e);
        }
        self.core.mark_closed();
        self.watch_task.abort();
        self.sweeper.abort();
        first_error.map_or(Ok(()), Err)
    }

    async fn cleanup_all_data(&self) -> Result<()> {
        self.core.check_open()?;
        // Our own candidacies would re-create the cluster ConfigMap.
        for c in self.live_candidacies() {
            if let Err(e) = c.resign(&self.core).await {
                tracing::debug!(error = %e, "resign before cleanup failed");
            }
        }
        self.core
            .cms
            .delete_all(&self.core.layout.selector())
            .await
            .map_err(|e| e.into_error("delete-collection", "HA ConfigMaps"))?;
        crate::participants::unregister_all(&self.core, false).await?;
        self.core.sessions.delete_all(&self.core).await
    }
}
