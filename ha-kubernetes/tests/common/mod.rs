//! The test harness: the Kubernetes backend on a fresh `KubeApiEmulator` per test, or
//! on a real cluster when `HA_KUBE_TEST_KUBECONFIG` is set (see the README).

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::{ClusterId, ComponentId, Fence, HaBackend, HaServices, Result, StoreNamespace};
use ha_kubernetes::{KubernetesBackend, KubernetesConfig, LeaseTimings, LockKind};
use ha_testkit::{Harness, KubeApiEmulator};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;

/// Short timings so crash cases stay fast: lease 2 s, renew deadline 1.4 s, retry 0.3 s.
pub fn test_timings() -> LeaseTimings {
    LeaseTimings::new(
        Duration::from_secs(2),
        Duration::from_millis(1400),
        Duration::from_millis(300),
    )
    .expect("valid timings")
}

/// Where the backend under test talks to.
pub enum Target {
    /// A private emulator.
    Emulator(Arc<KubeApiEmulator>),
    /// A real cluster from a kubeconfig.
    Real(Box<KubernetesConfig>),
}

pub struct KubeHarness {
    pub target: Target,
    pub timings: LeaseTimings,
    /// Where the leader lock lives.
    pub lock: LockKind,
    /// The chaos contenders' links to the API server (chaos tests only).
    pub links: ha_testkit::chaos::Links,
}

/// A client for `url` (an emulator).
pub fn emulator_client(emulator: &KubeApiEmulator) -> kube::Client {
    let mut config = kube::Config::new(emulator.url().parse().expect("emulator url"));
    // As the backend's own clients: retries are the backend's business.
    config.default_retry = false;
    kube::Client::try_from(config).expect("kube client")
}

/// Logs to the test output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub const TEST_NAMESPACE: &str = "ha-test";

impl KubeHarness {
    /// The emulator harness. Must be called inside a Tokio runtime.
    pub fn emulator() -> Self {
        init_tracing();
        Self {
            target: Target::Emulator(Arc::new(KubeApiEmulator::start().expect("start emulator"))),
            timings: test_timings(),
            lock: LockKind::default(),
            links: Default::default(),
        }
    }

    /// A real cluster if `HA_KUBE_TEST_KUBECONFIG` is set, else the emulator.
    pub fn from_env() -> Self {
        let Ok(path) = std::env::var("HA_KUBE_TEST_KUBECONFIG") else {
            return Self::emulator();
        };
        init_tracing();
        let config = KubernetesConfig {
            namespace: Some(std::env::var("HA_KUBE_TEST_NAMESPACE").unwrap_or_else(|_| "default".into())),
            kubeconfig: Some(path.into()),
            context: std::env::var("HA_KUBE_TEST_CONTEXT").ok(),
            timings: test_timings(),
            lock: Default::default(),
        };
        Self {
            target: Target::Real(Box::new(config)),
            timings: test_timings(),
            lock: LockKind::default(),
            links: Default::default(),
        }
    }

    /// The same harness with the leader lock in `lock`.
    pub fn with_lock(mut self, lock: LockKind) -> Self {
        self.lock = lock;
        self
    }

    pub fn emulator_ref(&self) -> Option<&KubeApiEmulator> {
        match &self.target {
            Target::Emulator(e) => Some(e),
            Target::Real(_) => None,
        }
    }

    /// A fresh client (its own connections, as a separate process has).
    pub async fn client(&self) -> kube::Client {
        match &self.target {
            Target::Emulator(e) => emulator_client(e),
            Target::Real(config) => {
                let mut c = config.client_config().await.expect("load kubeconfig");
                c.default_retry = false;
                kube::Client::try_from(c).expect("kube client")
            }
        }
    }

    pub fn namespace(&self) -> &str {
        match &self.target {
            Target::Emulator(_) => TEST_NAMESPACE,
            Target::Real(config) => config.namespace.as_deref().unwrap_or("default"),
        }
    }

    pub async fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client().await, self.namespace())
    }

    /// A backend instance: on a real cluster through the backend's own config loading.
    pub async fn backend(&self, cluster_id: &ClusterId) -> Result<KubernetesBackend> {
        match &self.target {
            Target::Emulator(_) => KubernetesBackend::with_client_and_lock(
                self.client().await,
                self.namespace(),
                cluster_id,
                self.timings,
                self.lock,
            ),
            Target::Real(config) => {
                let config = KubernetesConfig {
                    lock: self.lock,
                    ..(**config).clone()
                };
                KubernetesBackend::connect(cluster_id, &config).await
            }
        }
    }
}

#[async_trait]
impl Harness for KubeHarness {
    fn name(&self) -> &str {
        "kubernetes"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        Ok(Arc::new(self.backend(cluster_id).await?))
    }

    fn crash_timeout(&self) -> Duration {
        self.timings.lease_duration * 2 + Duration::from_millis(500)
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        let selector = format!("app={cluster_id},configmap-type=high-availability");
        let list = self
            .config_maps()
            .await
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ha_core::Error::unavailable("list ConfigMaps", e))?;
        let leases: Api<Lease> = Api::namespaced(self.client().await, self.namespace());
        let sessions = leases
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ha_core::Error::unavailable("list Leases", e))?;
        let mut out: Vec<String> = sessions
            .items
            .into_iter()
            .map(|l| format!("lease/{}", l.metadata.name.unwrap_or_default()))
            .collect();
        for cm in list.items {
            let name = cm.metadata.name.unwrap_or_default();
            out.push(format!("configmap/{name}"));
            for key in cm.data.unwrap_or_default().into_keys() {
                out.push(format!("{name}/{key}"));
            }
        }
        Ok(out)
    }

    /// Overwrites the entry's whole value in its ConfigMap (the JSON wrapper with
    /// version and locks), not just the pointer inside it.
    async fn overwrite_raw_entry(
        &self,
        services: &HaServices,
        _fence: &Fence,
        namespace: &StoreNamespace,
        name: &str,
        raw: Bytes,
    ) -> Result<()> {
        let cluster_id = services.cluster_id();
        // The layout: graphs and checkpoints in the job's ConfigMap, results in the
        // job's result ConfigMap.
        let config_map = match namespace {
            StoreNamespace::Checkpoints(job) => format!("{cluster_id}-{job}-config-map"),
            StoreNamespace::JobGraphs => {
                let job = name.strip_prefix(ha_core::JOB_GRAPH_PREFIX).unwrap_or(name);
                format!("{cluster_id}-{job}-config-map")
            }
            StoreNamespace::JobResults => {
                let job = name.strip_prefix(ha_core::JOB_RESULT_PREFIX).unwrap_or(name);
                format!("{cluster_id}-{job}-job-result")
            }
        };
        let patch = serde_json::json!({"data": {name: String::from_utf8_lossy(&raw)}});
        self.config_maps()
            .await
            .patch(&config_map, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ha_core::Error::unavailable("patch ConfigMap", e))?;
        Ok(())
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<Bytes>,
    ) -> Result<()> {
        let name = format!("{cluster_id}-cluster-config-map");
        let value = record.map(|r| String::from_utf8_lossy(&r).into_owned());
        let patch = serde_json::json!({"data": {format!("leader.{component}"): value}});
        let cms = self.config_maps().await;
        match cms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 && value.is_some() => {
                // No ConfigMap yet: create it as the backend would (same labels).
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {
                        "name": name,
                        "labels": {"app": cluster_id.as_str(), "configmap-type": "high-availability"},
                    },
                    "data": {format!("leader.{component}"): value},
                }))
                .map_err(|e| ha_core::Error::unavailable("build ConfigMap", e))?;
                cms.create(&kube::api::PostParams::default(), &cm)
                    .await
                    .map(|_| ())
                    .map_err(|e| ha_core::Error::unavailable("create ConfigMap", e))
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(ha_core::Error::unavailable("patch ConfigMap", e)),
        }
    }
}
