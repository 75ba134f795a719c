//! The `Harness` a backend implements to run the conformance suite, and the per-case
//! context the suite hands to every case.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, Fence, HaBackend, HaServices, Result, StoreNamespace};

use crate::storage_faults::{FaultyStore, StorageCondition, StorageFaults};

/// What the conformance suite needs from a backend: fresh instances for a cluster-id,
/// a view of everything stored, and a few hooks for faults.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// A short name for messages (`embedded`, `zookeeper`, …).
    fn name(&self) -> &str;

    /// Connects a new backend instance (a new "process" with its own session).
    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>>;

    /// How long a crashed instance may keep leadership (session timeout or lease, plus
    /// the backend's detection delay). Waits in the suite are bounded by multiples of it.
    fn crash_timeout(&self) -> Duration;

    /// Everything the backend stores for `cluster_id` (znodes, keys, ConfigMaps…), in
    /// any readable form. Empty means nothing is left.
    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>>;

    /// Overwrites the published leader record of `component` with `record` (raw bytes,
    /// possibly garbage), or deletes it with `None`, behind the services' back, as an
    /// operator or a buggy tool might.
    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<Bytes>,
    ) -> Result<()>;

    /// Makes the process owning `services` crash: its session must end only by
    /// timeout, never by a graceful close. The default stops the instance through the
    /// backends' one crash hook ([`HaBackend::halt`]) and drops every handle.
    async fn crash(&self, services: HaServices) {
        services.backend().halt();
        drop(services);
    }

    /// Overwrites the backend's raw record of entry `name` in `namespace` with `raw`,
    /// as a buggy tool or a torn write might. The default replaces the entry's value
    /// through the store, which is the raw record on backends that store values as
    /// they are; a backend that wraps values (a ConfigMap entry with metadata)
    /// overrides it to overwrite the wrapper itself.
    async fn overwrite_raw_entry(
        &self,
        services: &HaServices,
        fence: &Fence,
        namespace: &StoreNamespace,
        name: &str,
        raw: Bytes,
    ) -> Result<()> {
        let store = services.backend().state_handle_store(namespace).await?;
        let current = store
            .get(name)
            .await?
            .ok_or_else(|| ha_core::Error::NotFound { key: name.to_string() })?;
        store.replace(fence, name, current.version, raw).await.map(|_| ())
    }
}

/// The context of one conformance case: the harness, a fresh random cluster-id and a
/// private payload directory.
#[derive(Clone)]
pub struct Ctx {
    harness: Arc<dyn Harness>,
    cluster_id: ClusterId,
    storage_url: String,
    storage_condition: StorageCondition,
    dir: Arc<tempfile::TempDir>,
}

impl Ctx {
    /// A fresh context for `case`.
    pub fn new(harness: Arc<dyn Harness>, case: &str) -> Self {
        let dir = tempfile::tempdir().expect("create payload temp dir");
        let storage_url = format!("file://{}", dir.path().display());
        let prefix: String = case
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_lowercase();
        let cluster_id = ClusterId::random(if prefix.is_empty() { "case" } else { &prefix });
        Self {
            harness,
            cluster_id,
            storage_url,
            storage_condition: StorageCondition::default(),
            dir: Arc::new(dir),
        }
    }

    /// The harness.
    pub fn harness(&self) -> &dyn Harness {
        self.harness.as_ref()
    }

    /// The case's cluster-id.
    pub fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }

    /// The payload storage of the case (shared by all its processes), switchable to
    /// unavailable or slow through [`Ctx::storage_condition`].
    pub fn storage(&self) -> StateStorage {
        let condition = self.storage_condition.clone();
        StateStorage::open(&self.storage_url, &self.cluster_id, &Default::default())
            .expect("open payload storage")
            .map_store(|inner| FaultyStore::wrap(inner, condition))
    }

    /// The URL of the case's payload storage (`file://…`), for other processes; they
    /// see it without the faults of [`Ctx::storage_condition`].
    pub fn storage_url(&self) -> &str {
        &self.storage_url
    }

    /// The switch that makes the case's payload storage unavailable or slow.
    pub fn storage_condition(&self) -> &StorageCondition {
        &self.storage_condition
    }

    /// On-disk faults of the case's payload storage (missing root, lost or torn
    /// payloads).
    pub fn storage_faults(&self) -> StorageFaults {
        StorageFaults::new(self.dir.path().to_path_buf(), self.cluster_id.clone())
    }

    /// A new process: backend instance plus services retaining one checkpoint.
    pub async fn process(&self) -> HaServices {
        self.process_retaining(1).await
    }

    /// A new process retaining `n` checkpoints per job.
    /// A connect that finds the server unavailable (a TLS handshake or session set-up
    /// slower than its bound on a loaded machine) is tried again, up to 3 times: the
    /// cases test what a connected process does, not the connect deadline.
    pub async fn process_retaining(&self, n: usize) -> HaServices {
        let mut attempt = 1;
        let backend = loop {
            match self.harness.connect(&self.cluster_id).await {
                Ok(backend) => break backend,
                Err(e @ ha_core::Error::Unavailable { .. }) if attempt < 3 => {
                    tracing::warn!(harness = self.harness.name(), attempt, error = %e, "connect failed; trying again");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{}: connect failed: {e}", self.harness.name()),
            }
        };
        HaServices::new(backend, self.storage(), n)
    }

    /// Crashes the process owning `services` (see [`Harness::crash`]).
    pub async fn crash(&self, services: HaServices) {
        self.harness.crash(services).await;
    }

    /// An upper bound for waits that involve a crash.
    pub fn crash_timeout(&self) -> Duration {
        self.harness.crash_timeout()
    }

    /// Removes everything the case left behind (best effort).
    pub async fn cleanup(&self) {
        match self.harness.connect(&self.cluster_id).await {
            Ok(backend) => {
                let services = HaServices::new(backend, self.storage(), 1);
                if let Err(e) = services.close_and_cleanup_all_data().await {
                    tracing::warn!(error = %e, cluster = %self.cluster_id, "cleanup after case failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, cluster = %self.cluster_id, "cleanup could not connect"),
        }
    }
}
