//! Flink's documented native-Kubernetes HA configuration, unedited, configures this
//! backend: `kubernetes.cluster-id`, `kubernetes.namespace` and
//! `high-availability.kubernetes.leader-election.*` reach `KubernetesConfig` through
//! ha-core's aliases, and the backend's own validation accepts them.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ha_core::{BackendRegistry, HaConfig};
use ha_kubernetes::{KubernetesConfig, KubernetesProvider};

#[test]
fn flink_native_kubernetes_config_configures_the_backend() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ha-core/tests/fixtures/flink/kubernetes-native.yaml");
    let mut registry = BackendRegistry::with_builtin();
    registry.register(Arc::new(KubernetesProvider));
    let config = HaConfig::load_with_env(Some(&path), &registry, []).unwrap();
    assert_eq!(config.cluster_id().as_str(), "my-first-flink-cluster");
    let k8s = KubernetesConfig::from_ha_config(&config).unwrap();
    assert_eq!(k8s.namespace.as_deref(), Some("flink-jobs"));
    assert_eq!(k8s.timings.lease_duration, Duration::from_secs(30));
    assert_eq!(k8s.timings.renew_deadline, Duration::from_secs(20));
    assert_eq!(k8s.timings.retry_period, Duration::from_secs(5));
}
