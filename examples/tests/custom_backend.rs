//! The custom backend of `examples/custom_backend` passes the whole conformance suite:
//! a backend written outside the workspace's crates behaves like the built-in ones.

#![allow(missing_docs)]

#[path = "../custom_backend/audited.rs"]
#[allow(dead_code)]
mod audited;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::{ClusterId, ComponentId, HaBackend, Result};
use ha_testkit::{EmbeddedHarness, Harness};

/// Audited instances over the embedded clusters of an [`EmbeddedHarness`].
struct AuditedHarness(EmbeddedHarness);

impl AuditedHarness {
    fn new() -> Self {
        Self(EmbeddedHarness::new(Duration::from_millis(300)))
    }
}

#[async_trait]
impl Harness for AuditedHarness {
    fn name(&self) -> &str {
        "audited"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        let inner = self.0.connect(cluster_id).await?;
        Ok(Arc::new(audited::Audited::new(inner, true)))
    }

    fn crash_timeout(&self) -> Duration {
        self.0.crash_timeout()
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        self.0.list_records(cluster_id).await
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<Bytes>,
    ) -> Result<()> {
        self.0.write_leader_record(cluster_id, component, record).await
    }
}

ha_testkit::conformance_suite!(AuditedHarness::new());
