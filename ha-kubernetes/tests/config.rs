//! Configuration: `high-availability.kubernetes.*` validation with errors naming the
//! key, and a full `HaServices::from_config` through kube's own kubeconfig loading.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ha_core::{BackendRegistry, HaConfig, HaServices, DEFAULT_ELECTION_GROUP};
use ha_kubernetes::{KubernetesConfig, KubernetesProvider};
use ha_testkit::KubeApiEmulator;

fn registry() -> BackendRegistry {
    let mut r = BackendRegistry::with_builtin();
    r.register(Arc::new(KubernetesProvider));
    r
}

fn config(extra: &str) -> HaConfig {
    let yaml = format!(
        "high-availability.type: kubernetes\nhigh-availability.cluster-id: cfg-test\nhigh-availability.storageDir: memory://cfg\n{extra}"
    );
    HaConfig::from_yaml_str("test.yaml", &yaml).unwrap()
}

fn error_of(extra: &str) -> String {
    registry().validate(&config(extra)).unwrap_err().to_string()
}

#[test]
fn invalid_settings_name_their_key() {
    let e = error_of(
        "high-availability.kubernetes.lease-duration: 5 s\nhigh-availability.kubernetes.renew-deadline: 10 s\n",
    );
    assert!(e.contains("high-availability.kubernetes.lease-duration"), "{e}");
    let e =
        error_of("high-availability.kubernetes.renew-deadline: 1 s\nhigh-availability.kubernetes.retry-period: 2 s\n");
    assert!(e.contains("high-availability.kubernetes.renew-deadline"), "{e}");
    let e = error_of("high-availability.kubernetes.retry-period: soon\n");
    assert!(e.contains("high-availability.kubernetes.retry-period"), "{e}");
    let e = error_of("high-availability.kubernetes.namespace: Not_Valid\n");
    assert!(e.contains("high-availability.kubernetes.namespace"), "{e}");
    let e = error_of("high-availability.kubernetes.lease: 1 s\n");
    assert!(
        e.contains("high-availability.kubernetes.lease") && e.contains("lease-duration"),
        "{e}"
    );
    registry()
        .validate(&config("high-availability.kubernetes.namespace: flink\n"))
        .unwrap();
}

#[test]
fn invalid_cluster_id_names_the_key() {
    let yaml = "high-availability.type: kubernetes\nhigh-availability.cluster-id: Bad_Id\nhigh-availability.storageDir: memory://x\n";
    let e = HaConfig::from_yaml_str("t.yaml", yaml).unwrap_err().to_string();
    assert!(e.contains("high-availability.cluster-id"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_kubeconfig_names_the_key() {
    let cfg = config("high-availability.kubernetes.kubeconfig: /nonexistent/kubeconfig\n");
    let e = HaServices::from_config_with(&cfg, &registry())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("high-availability.kubernetes.kubeconfig"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_config_connects_through_a_kubeconfig() {
    let emulator = KubeApiEmulator::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, emulator.kubeconfig_yaml("from-kubeconfig")).unwrap();
    let cfg = config(&format!(
        "high-availability.kubernetes.kubeconfig: {}\nhigh-availability.kubernetes.lease-duration: 2 s\nhigh-availability.kubernetes.renew-deadline: 1400 ms\nhigh-availability.kubernetes.retry-period: 300 ms\n",
        path.display()
    ));
    let typed = KubernetesConfig::from_ha_config(&cfg).unwrap();
    assert_eq!(typed.timings.renew_deadline, Duration::from_millis(1400));
    let shown = format!("{typed:?}");
    assert!(shown.contains("kubeconfig") && !shown.contains("clusters:"), "{shown}");
    let ha = HaServices::from_config_with(&cfg, &registry()).await.unwrap();
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ha_core::ComponentId::new("dispatcher").unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), e.granted())
        .await
        .unwrap()
        .unwrap();
    // The kubeconfig context's namespace was used.
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(common::emulator_client(&emulator), "from-kubeconfig");
    assert!(cms.get_opt("cfg-test-cluster-config-map").await.unwrap().is_some());
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
}

#[test]
fn register_adds_the_mode_globally() {
    ha_kubernetes::register();
    assert!(BackendRegistry::global().modes().contains(&"kubernetes"));
    BackendRegistry::global()
        .validate(&config("high-availability.kubernetes.namespace: flink\n"))
        .unwrap();
}

#[test]
fn lock_kind_is_configmap_or_lease() {
    use ha_kubernetes::LockKind;
    let lock_of = |extra: &str| KubernetesConfig::from_ha_config(&config(extra)).map(|c| c.lock);
    assert_eq!(lock_of("").unwrap(), LockKind::ConfigMap);
    assert_eq!(
        lock_of("high-availability.kubernetes.lock: configmap\n").unwrap(),
        LockKind::ConfigMap
    );
    assert_eq!(
        lock_of("high-availability.kubernetes.lock: lease\n").unwrap(),
        LockKind::Lease
    );
    let e = error_of("high-availability.kubernetes.lock: endpoints\n");
    assert!(
        e.contains("high-availability.kubernetes.lock") && e.contains("configmap, lease") && e.contains("endpoints"),
        "{e}"
    );
}

/// Flink's own defaults written out (lease 15 s, renew deadline 15 s, retry 5 s) load
/// unchanged: an equal renew deadline is accepted (with a warning), a shorter lease
/// is still refused.
#[test]
fn flink_default_timings_written_out_load() {
    let flink = "high-availability.kubernetes.leader-election.lease-duration: 15 s\nhigh-availability.kubernetes.leader-election.renew-deadline: 15 s\nhigh-availability.kubernetes.leader-election.retry-period: 5 s\n";
    let config = config(flink);
    registry().validate(&config).unwrap();
    let k = KubernetesConfig::from_ha_config(&config).unwrap();
    assert_eq!(k.timings.lease_duration, Duration::from_secs(15));
    assert_eq!(k.timings.renew_deadline, Duration::from_secs(15));
}
