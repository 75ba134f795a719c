//! `Audited`: a backend that delegates every operation to another one (here the
//! embedded backend) and prints each election event the inner driver reports. Small
//! but real: it passes the conformance suite (`tests/custom_backend.rs`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::driver::{
    CheckpointIdCounterDriver, LeaderElectionDriver, LeaderRecordStream, StateHandleStore, TermSink,
};
use ha_core::embedded::EmbeddedCluster;
use ha_core::{
    BackendProvider, ClusterId, ComponentId, ElectionGroup, HaBackend, HaConfig, JobId, Participant, Result,
    StoreNamespace,
};

/// The mode string that selects this backend.
pub(crate) const MODE: &str = "audited";

/// Keys of the `high-availability.audited.*` section.
const KEYS: &[&str] = &["lease-duration"];

/// Chooses [`Audited`] for `high-availability.type: audited`.
pub(crate) struct AuditedProvider;

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
        Ok(Arc::new(Audited::new(Arc::new(inner), false)))
    }
}

/// Delegates to another backend and prints every election event it reports.
#[derive(Debug)]
pub(crate) struct Audited {
    inner: Arc<dyn HaBackend>,
    quiet: bool,
}

impl Audited {
    /// Wraps `inner`; `quiet` turns the printing off (for tests).
    pub(crate) fn new(inner: Arc<dyn HaBackend>, quiet: bool) -> Self {
        Self { inner, quiet }
    }
}

#[async_trait]
impl HaBackend for Audited {
    fn cluster_id(&self) -> &ClusterId {
        self.inner.cluster_id()
    }

    fn instance_id(&self) -> &str {
        self.inner.instance_id()
    }

    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>> {
        // Sit between the inner driver and the service: the inner driver reports to a
        // sink of ours; we print each event and pass it on, in order.
        let (inner_sink, mut events) = TermSink::channel();
        let label = format!("{}/{group}", self.inner.instance_id());
        let quiet = self.quiet;
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if !quiet {
                    println!("audit {label}: {event:?}");
                }
                sink.report(event);
                if sink.is_closed() {
                    return;
                }
            }
        });
        self.inner.election_driver(group, inner_sink).await
    }

    async fn leader_components(&self) -> Result<Vec<ComponentId>> {
        self.inner.leader_components().await
    }

    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<Participant>> {
        self.inner.participants(group).await
    }

    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream> {
        self.inner.watch_leader_record(component).await
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
