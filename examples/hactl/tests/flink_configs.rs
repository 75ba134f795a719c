//! `hactl status` and `hactl leaders` with Flink's documented HA configuration files,
//! unedited (`ha-core/tests/fixtures/flink`), against a real ZooKeeper and the
//! Kubernetes API emulator. Only the server address comes from the environment
//! (`HA_*` overrides, or `KUBECONFIG`), as it would on another machine.

#![cfg(any(feature = "zookeeper", feature = "kubernetes"))]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../ha-core/tests/fixtures/flink")
        .join(name)
}

/// Runs hactl with `args` and extra environment; (exit code, stdout, stderr).
fn hactl(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(args)
        .env_remove("HA_HIGH_AVAILABILITY_TYPE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Flink's standalone ZooKeeper example keeps its payloads in HDFS, which ha-rs cannot
/// open: the commands that read HA records only still work, and say so.
#[cfg(feature = "zookeeper")]
#[test]
fn documented_zookeeper_configs_with_hdfs_storage_show_the_records() {
    let server = ha_testkit::ZooKeeperServer::start().unwrap();
    let quorum = server.connect_string();
    let env = [("HA_HIGH_AVAILABILITY_ZOOKEEPER_QUORUM", quorum.as_str())];
    for file in [
        "zookeeper-standalone.yaml",
        "zookeeper-standalone-config.yaml",
        "yarn-session.yaml",
    ] {
        let config = fixture(file);
        let config = config.to_str().unwrap();
        for command in ["status", "leaders"] {
            let (code, out, err) = hactl(&["--config", config, command], &env);
            assert_eq!(code, 0, "{file} {command}: {err}");
            assert!(out.contains("LEADERS"), "{file} {command}: {out}");
            assert!(
                err.contains("`high-availability.storageDir`") && err.contains("hdfs"),
                "{file} {command}: the unreadable storage is named: {err}"
            );
        }
        // Commands that read payloads still refuse the storage, naming the key.
        let (code, _, err) = hactl(
            &["--config", config, "checkpoints", "00000000000000000000000000000001"],
            &env,
        );
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains("`high-availability.storageDir`"), "{file}: {err}");
    }
}

/// Flink's native-Kubernetes example (S3 storage, Flink's leader-election timings, a
/// namespace of its own) with the kubeconfig of the environment.
#[cfg(feature = "kubernetes")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_kubernetes_config_shows_the_records() {
    let emulator = ha_testkit::KubeApiEmulator::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig_yaml("default")).unwrap();
    let config = fixture("kubernetes-native.yaml");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        hactl(
            &["--config", config.to_str().unwrap(), "status"],
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cluster my-first-flink-cluster (kubernetes)"), "{out}");
}
