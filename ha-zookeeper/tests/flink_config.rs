//! Flink's documented ZooKeeper HA configurations (standalone and YARN), unedited,
//! configure this backend: `high-availability.zookeeper.*` keys are this backend's own,
//! the mode name is case-insensitive, and Flink-only client keys are accepted with a
//! warning.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ha_core::{BackendRegistry, HaConfig};
use ha_zookeeper::{ZooKeeperConfig, ZooKeeperProvider};

fn load(name: &str) -> HaConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ha-core/tests/fixtures/flink")
        .join(name);
    let mut registry = BackendRegistry::with_builtin();
    registry.register(Arc::new(ZooKeeperProvider));
    HaConfig::load_with_env(Some(&path), &registry, []).unwrap()
}

#[test]
fn flink_zookeeper_configs_configure_the_backend() {
    let standalone = load("zookeeper-standalone-config.yaml");
    let zk = ZooKeeperConfig::from_ha_config(&standalone).unwrap();
    assert_eq!(zk.quorum, "zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181");
    assert_eq!(zk.root, "/flink");
    assert_eq!(zk.session_timeout, Duration::from_secs(60));
    assert_eq!(zk.connection_timeout, Duration::from_secs(15));
    assert_eq!(zk.retry_wait, Duration::from_secs(5));
    assert_eq!(zk.max_retry_attempts, 3);
    assert!(!standalone.warnings().is_empty());

    let yarn = load("yarn-session.yaml");
    let zk = ZooKeeperConfig::from_ha_config(&yarn).unwrap();
    assert_eq!(zk.quorum, "localhost:2181");
    assert_eq!(zk.root, "/flink");
}
