//! Flink configuration files load unchanged: Flink's documented HA examples
//! (ZooKeeper standalone, YARN, native Kubernetes) give the same meaning here, Flink's
//! key names reach the backends' sections, keys without a meaning here are accepted
//! with a warning, and unknown `high-availability.*` keys are still refused.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::config::{BackendProvider, BackendRegistry, JobResultRetention};
use ha_core::{CheckpointRetention, HaBackend, HaConfig, Result};

/// Stands in for a backend crate (ha-core cannot link them): it declares the keys the
/// real backend declares (`ha-zookeeper/src/config.rs`, `ha-kubernetes/src/config.rs`)
/// and reads nothing else.
struct Section(&'static str, &'static [&'static str]);

#[async_trait]
impl BackendProvider for Section {
    fn mode(&self) -> &'static str {
        self.0
    }
    fn config_keys(&self) -> &'static [&'static str] {
        self.1
    }
    fn validate(&self, _: &HaConfig) -> Result<()> {
        Ok(())
    }
    async fn connect(&self, _: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        unreachable!("not connected in this test")
    }
}

fn registry() -> BackendRegistry {
    let mut r = BackendRegistry::with_builtin();
    r.register(Arc::new(Section(
        "zookeeper",
        &[
            "quorum",
            "path.root",
            "client.session-timeout",
            "client.connection-timeout",
            "client.retry-wait",
            "client.max-retry-attempts",
            "client.acl",
            "client.digest-auth",
            "client.tls.ca-cert",
            "client.tls.client-cert",
            "client.tls.client-key",
        ],
    )));
    r.register(Arc::new(Section(
        "kubernetes",
        &[
            "namespace",
            "kubeconfig",
            "context",
            "lease-duration",
            "renew-deadline",
            "retry-period",
        ],
    )));
    r
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flink")
        .join(name)
}

/// Loads a fixture as `HaConfig::load` does, without the process environment.
fn load(name: &str) -> HaConfig {
    HaConfig::load_with_env(Some(&fixture(name)), &registry(), []).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn loads_flink_configs_unchanged() {
    // Standalone with ZooKeeper (flat flink-conf.yaml).
    let zk = load("zookeeper-standalone.yaml");
    assert_eq!(zk.mode(), "zookeeper");
    assert_eq!(zk.cluster_id().as_str(), "cluster-one", "Flink's `/cluster_one`");
    assert_eq!(zk.storage_dir(), "hdfs:///flink/recovery");
    assert_eq!(zk.num_retained(), 3);
    let o = zk.backend_options();
    assert_eq!(o.get("quorum"), Some("localhost:2181"));
    assert_eq!(o.get("path.root"), Some("/flink"));
    assert!(
        zk.warnings().iter().any(|w| w.contains("high-availability.cluster-id")),
        "the cluster-id mapping is reported: {:?}",
        zk.warnings()
    );

    // The same in Flink 2.x's nested config.yaml, upper-case mode and client options.
    let zk2 = load("zookeeper-standalone-config.yaml");
    assert_eq!(zk2.mode(), "zookeeper");
    assert_eq!(zk2.cluster_id().as_str(), "cluster-one");
    assert_eq!(zk2.num_retained(), 2, "execution.checkpointing.num-retained");
    let o = zk2.backend_options();
    assert_eq!(
        o.duration("client.session-timeout", Duration::ZERO).unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(o.u64("client.max-retry-attempts", 0).unwrap(), 3);
    assert_eq!(o.get("quorum"), Some("zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181"));
    assert_eq!(zk2.checkpoint_retention(), CheckpointRetention::RetainOnCancellation);
    assert_eq!(
        zk2.job_result_retention(),
        JobResultRetention {
            delete_on_commit: false,
            retention: None
        }
    );
    for ignored in [
        "high-availability.jobmanager.port",
        "high-availability.zookeeper.client.tolerate-suspended-connections",
        "high-availability.zookeeper.client.ensemble-tracker",
    ] {
        assert!(
            zk2.warnings().iter().any(|w| w.contains(ignored)),
            "{ignored} is accepted with a warning: {:?}",
            zk2.warnings()
        );
    }

    // YARN session.
    let yarn = load("yarn-session.yaml");
    assert_eq!(yarn.mode(), "zookeeper");
    assert_eq!(yarn.cluster_id().as_str(), "default");
    assert_eq!(yarn.backend_options().get("path.root"), Some("/flink"));
    assert!(yarn.warnings().is_empty(), "{:?}", yarn.warnings());

    // Native Kubernetes: Flink's key names reach the backend's section.
    let k8s = load("kubernetes-native.yaml");
    assert_eq!(k8s.mode(), "kubernetes");
    assert_eq!(k8s.cluster_id().as_str(), "my-first-flink-cluster");
    assert_eq!(k8s.num_retained(), 3);
    let o = k8s.backend_options();
    assert_eq!(o.get("namespace"), Some("flink-jobs"));
    assert_eq!(
        o.duration("lease-duration", Duration::ZERO).unwrap(),
        Duration::from_secs(30)
    );
    assert_eq!(
        o.duration("renew-deadline", Duration::ZERO).unwrap(),
        Duration::from_secs(20)
    );
    assert_eq!(
        o.duration("retry-period", Duration::ZERO).unwrap(),
        Duration::from_secs(5)
    );
    assert_eq!(k8s.checkpoint_retention(), CheckpointRetention::default());
    assert_eq!(k8s.job_result_retention(), JobResultRetention::default());
    assert!(k8s.job_result_retention().delete_on_commit, "Flink's default");
    assert!(k8s
        .warnings()
        .iter()
        .any(|w| w.contains("high-availability.jobmanager.port")));

    // The factory class in the old key `high-availability`.
    let legacy = load("kubernetes-factory-class.yaml");
    assert_eq!(legacy.mode(), "kubernetes");
    assert_eq!(legacy.cluster_id().as_str(), "my-first-flink-cluster");

    // NONE: no HA, the in-process embedded backend.
    let none = load("none.yaml");
    assert_eq!(none.mode(), "embedded");
}

#[test]
fn unknown_high_availability_keys_are_still_refused() {
    for (key, value) in [
        ("high-availability.zookeeper.client.bogus", "1"),
        ("high-availability.bogus", "1"),
        ("high-availability.kubernetes.leader-election.bogus", "1 s"),
    ] {
        let text =
            format!("high-availability.type: zookeeper\nhigh-availability.storageDir: file:///x\n{key}: {value}\n");
        let cfg = HaConfig::from_yaml_str("t.yaml", &text).unwrap();
        let err = registry().validate(&cfg).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{err}");
    }
    // A Flink key and its ha-rs name with different values: refused, naming both.
    let cfg = HaConfig::from_yaml_str(
        "t.yaml",
        "high-availability.type: kubernetes\nhigh-availability.storageDir: file:///x\nkubernetes.namespace: a\nhigh-availability.kubernetes.namespace: b\n",
    );
    let err = cfg.unwrap_err().to_string();
    assert!(
        err.contains("kubernetes.namespace") && err.contains("high-availability.kubernetes.namespace"),
        "{err}"
    );
}

#[test]
fn env_overrides_reach_every_key() {
    let vars = [
        ("HA_KUBERNETES_NAMESPACE", "from-env"),
        ("HA_HIGH_AVAILABILITY_KUBERNETES_LEADER_ELECTION_RETRY_PERIOD", "3 s"),
        ("HA_HIGH_AVAILABILITY_STORAGE_AWS_REGION", "eu-west-3"),
        ("HA_JOB_RESULT_STORE_DELETE_ON_COMMIT", "false"),
        (
            "HA_EXECUTION_CHECKPOINTING_EXTERNALIZED_CHECKPOINT_RETENTION",
            "retain_on_cancellation",
        ),
        ("HA_EXECUTION_CHECKPOINTING_NUM_RETAINED", "4"),
        ("HA_HIGH_AVAILABILITY_HEALTH_TOLERANCE", "250 ms"),
        ("UNRELATED", "x"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let cfg = HaConfig::load_with_env(Some(&fixture("kubernetes-native.yaml")), &registry(), vars).unwrap();
    let o = cfg.backend_options();
    assert_eq!(
        o.get("namespace"),
        Some("from-env"),
        "over the file's `kubernetes.namespace`"
    );
    assert_eq!(
        o.duration("retry-period", Duration::ZERO).unwrap(),
        Duration::from_secs(3)
    );
    assert_eq!(
        o.duration("lease-duration", Duration::ZERO).unwrap(),
        Duration::from_secs(30)
    );
    assert_eq!(
        cfg.storage_options().get("aws_region").map(String::as_str),
        Some("eu-west-3")
    );
    assert!(!cfg.job_result_retention().delete_on_commit);
    assert_eq!(cfg.checkpoint_retention(), CheckpointRetention::RetainOnCancellation);
    assert_eq!(cfg.num_retained(), 4);
    assert_eq!(cfg.health_tolerance(), Duration::from_millis(250));
}
