//! The harness of the embedded backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::embedded::{EmbeddedBackend, EmbeddedCluster};
use ha_core::{ClusterId, ComponentId, HaBackend, Result};

use crate::chaos::{ChaosTarget, Freeze};
use crate::Harness;

/// Runs the suite on the embedded backend with a short lease.
#[derive(Clone, Debug)]
pub struct EmbeddedHarness {
    lease: Duration,
}

impl EmbeddedHarness {
    /// A harness whose instances hold a session lease of `lease`.
    pub fn new(lease: Duration) -> Self {
        Self { lease }
    }

    fn cluster(&self, cluster_id: &ClusterId) -> EmbeddedCluster {
        EmbeddedCluster::shared(cluster_id, self.lease)
    }
}

impl Default for EmbeddedHarness {
    fn default() -> Self {
        Self::new(Duration::from_millis(300))
    }
}

#[async_trait]
impl Harness for EmbeddedHarness {
    fn name(&self) -> &str {
        "embedded"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        Ok(Arc::new(self.cluster(cluster_id).connect()))
    }

    fn crash_timeout(&self) -> Duration {
        self.lease * 2 + Duration::from_millis(200)
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        Ok(self.cluster(cluster_id).list_records())
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<bytes::Bytes>,
    ) -> Result<()> {
        self.cluster(cluster_id).write_leader_record(component, record);
        Ok(())
    }
}

struct PauseFreeze(EmbeddedBackend);

impl Freeze for PauseFreeze {
    fn freeze(&self) {
        self.0.pause();
    }

    fn thaw(&self) {
        self.0.resume();
    }
}

#[async_trait]
impl ChaosTarget for EmbeddedHarness {
    async fn connect_freezable(&self, cluster_id: &ClusterId) -> Result<(Arc<dyn HaBackend>, Box<dyn Freeze>)> {
        let backend = self.cluster(cluster_id).connect();
        Ok((Arc::new(backend.clone()), Box::new(PauseFreeze(backend))))
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}
