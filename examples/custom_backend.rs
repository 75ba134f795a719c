//! A custom backend chosen by mode string: `high-availability.type: audited`.
//!
//! The backend is small but real: it delegates every operation to the embedded
//! backend and prints each election event the driver reports (grant with its fence,
//! revocation, leader-record changes), which is a template for an audit or tracing
//! layer around any backend. Writing a backend from scratch means implementing
//! [`HaBackend`] and its four driver traits the same way; the conformance suite in
//! `ha-testkit` then checks it (`ha_testkit::conformance_suite!`).
//!
//! ```text
//! cargo run --example custom-backend
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::driver::{
    CheckpointIdCounterDriver, ElectionEvent, LeaderElectionDriver, LeaderRetrievalDriver, StateHandleStore,
};
use ha_core::embedded::EmbeddedCluster;
use ha_core::{
    BackendProvider, BackendRegistry, ClusterId, ComponentId, HaBackend, HaConfig, HaServices, JobId,
    LeaderInformation, Result, StoreNamespace, DEFAULT_ELECTION_GROUP,
};
use tokio::sync::{mpsc, watch};

/// The mode string that selects this backend.
const MODE: &str = "audited";

/// Keys of the `high-availability.audited.*` section.
const KEYS: &[&str] = &["lease-duration"];

/// Chooses [`Audited`] for `high-availability.type: audited`.
struct AuditedProvider;

#[async_trait]
impl BackendProvider for AuditedProvider {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn config_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn validate(&self, config: &HaConfig) -> Result<()> {
        config
            .backend_options()
            .duration("lease-duration", Duration::from_secs(1))
            .map(|_| ())
    }

    async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        let lease = config
            .backend_options()
            .duration("lease-duration", Duration::from_secs(1))?;
        let inner = EmbeddedCluster::shared(config.cluster_id(), lease).connect();
        Ok(Arc::new(Audited { inner: Arc::new(inner) }))
    }
}

/// Delegates to another backend and prints every election event it reports.
#[derive(Debug)]
struct Audited {
    inner: Arc<dyn HaBackend>,
}

#[async_trait]
impl HaBackend for Audited {
    fn cluster_id(&self) -> &ClusterId {
        self.inner.cluster_id()
    }

    fn instance_id(&self) -> &str {
        self.inner.instance_id()
    }

    async fn election_driver(
        &self,
        group: &str,
        events: mpsc::UnboundedSender<ElectionEvent>,
    ) -> Result<Box<dyn LeaderElectionDriver>> {
        // Sit between the inner driver and the service: print, then pass on in order.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let label = format!("{}/{group}", self.inner.instance_id());
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                println!("audit {label}: {event:?}");
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        self.inner.election_driver(group, tx).await
    }

    async fn retrieval_driver(
        &self,
        component: &ComponentId,
        tx: watch::Sender<Option<LeaderInformation>>,
    ) -> Result<Box<dyn LeaderRetrievalDriver>> {
        self.inner.retrieval_driver(component, tx).await
    }

    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>> {
        self.inner.state_handle_store(namespace).await
    }

    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>> {
        self.inner.checkpoint_id_counter(job).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    async fn cleanup_all_data(&self) -> Result<()> {
        self.inner.cleanup_all_data().await
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // Before any config is parsed: validation checks the mode and its keys against
    // the process-wide registry.
    BackendRegistry::register_global(Arc::new(AuditedProvider));
    let config = HaConfig::from_yaml_str(
        "custom-backend example",
        "high-availability.type: audited\n\
         high-availability.audited.lease-duration: 500 ms\n\
         high-availability.storageDir: memory://custom-backend\n",
    )?;
    let ha = HaServices::from_config(&config).await?;
    println!("mode {} connected as {}", config.mode(), ha.backend().instance_id());

    let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut dispatcher = election.register(ComponentId::new("dispatcher")?)?;
    let grant = dispatcher.granted().await?;
    dispatcher.confirm(&grant, "http://127.0.0.1:8081").await?;
    let retrieval = ha.leader_retrieval_service(&ComponentId::new("dispatcher")?).await?;
    let leader = retrieval.wait_for(Option::is_some).await?;
    println!("retrieval sees {:?}", leader.map(|l| l.address));

    election.close().await?;
    ha.close_and_cleanup_all_data().await?;
    println!("closed: the leadership was resigned and the cluster's data deleted");
    Ok(())
}
