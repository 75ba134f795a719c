//! The embedded backend (mode `embedded`, the default): HA inside one process.
//!
//! Flink's NONE/MiniCluster equivalent, but real: several backend instances of one
//! [`EmbeddedCluster`] compete in a true election, each on a session kept alive by a
//! background task. Dropping an instance without [`close`](crate::HaBackend::close)
//! behaves as a crash: its session runs out after the configured lease
//! (`high-availability.embedded.lease-duration`, default 1 s), its leadership is revoked
//! and only then is the next contender granted. Every fenced write is checked under the
//! same lock as the write itself.

mod backend;
mod state;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

pub use backend::EmbeddedBackend;
use state::ClusterState;

use crate::config::{BackendProvider, HaConfig};
use crate::driver::HaBackend;
use crate::error::{Error, Result};
use crate::ids::ClusterId;

/// Default session lease of embedded instances.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(1);

/// The shared in-process state of one cluster-id. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedCluster {
    inner: Arc<ClusterInner>,
}

struct ClusterInner {
    cluster_id: ClusterId,
    lease: Duration,
    state: Mutex<ClusterState>,
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster")
            .field("cluster_id", &self.inner.cluster_id)
            .field("lease", &self.inner.lease)
            .finish()
    }
}

impl EmbeddedCluster {
    /// A new, private cluster with the given session lease.
    pub fn new(cluster_id: ClusterId, lease: Duration) -> Self {
        Self {
            inner: Arc::new(ClusterInner {
                cluster_id,
                lease,
                state: Mutex::new(ClusterState::default()),
            }),
        }
    }

    /// The process-wide cluster of `cluster_id` (created on first use with `lease`).
    /// This is what mode `embedded` connects to, so instances made from the same
    /// config in one process see each other.
    pub fn shared(cluster_id: &ClusterId, lease: Duration) -> Self {
        static CLUSTERS: OnceLock<Mutex<HashMap<ClusterId, EmbeddedCluster>>> = OnceLock::new();
        let mut map = CLUSTERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(cluster_id.clone())
            .or_insert_with(|| Self::new(cluster_id.clone(), lease))
            .clone()
    }

    /// Connects a new instance (a new session). Must be called inside a Tokio runtime.
    pub fn connect(&self) -> EmbeddedBackend {
        EmbeddedBackend::connect(self.clone())
    }

    /// The cluster-id.
    pub fn cluster_id(&self) -> &ClusterId {
        &self.inner.cluster_id
    }

    /// The session lease.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// Every record the cluster holds (leader records, pointers, counters, live
    /// candidacies), as `kind/name` strings. Empty after a full cleanup.
    pub fn list_records(&self) -> Vec<String> {
        let mut st = self.lock();
        st.sweep();
        st.list_records()
    }

    /// Overwrites (or with `None` deletes) the published leader record of `component`
    /// without a fence, as an operator tool or a bug might. The leader's service
    /// notices and restores it.
    pub fn write_leader_record(&self, component: &crate::ids::ComponentId, record: Option<bytes::Bytes>) {
        self.lock().set_leader_record(component, record);
    }

    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Registers mode `embedded`.
pub(crate) struct EmbeddedProvider;

const KEYS: &[&str] = &["lease-duration"];

#[async_trait]
impl BackendProvider for EmbeddedProvider {
    fn mode(&self) -> &'static str {
        "embedded"
    }

    fn config_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn validate(&self, config: &HaConfig) -> Result<()> {
        let opts = config.backend_options();
        let lease = opts.duration("lease-duration", DEFAULT_LEASE)?;
        if lease < Duration::from_millis(20) {
            return Err(Error::config(opts.key("lease-duration"), "must be at least 20 ms"));
        }
        Ok(())
    }

    async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        let lease = config.backend_options().duration("lease-duration", DEFAULT_LEASE)?;
        Ok(Arc::new(EmbeddedCluster::shared(config.cluster_id(), lease).connect()))
    }
}
