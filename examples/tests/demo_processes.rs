//! `ha-demo --processes` on real servers: SIGKILL hand-over and a SIGSTOPped leader
//! whose writes must be rejected after it resumes. Each backend's test needs that
//! backend's cargo feature (`--features etcd,zookeeper`, or `--all-features`).

#![cfg(any(feature = "etcd", feature = "zookeeper"))]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

fn run_demo(config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ha.yaml");
    // Setting up the cluster creates its payload storage; ha-rs never creates a
    // missing storage root itself (it may be a volume that is not mounted).
    std::fs::create_dir(dir.path().join("payloads")).unwrap();
    let config = config.replace("PAYLOADS", &format!("file://{}/payloads", dir.path().display()));
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::example("ha-demo"))
        .arg("--config")
        .arg(&path)
        .args(["--processes", "--before-crash", "4", "--interval-ms", "50"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ha-demo --processes failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stale writes accepted  0"), "{stdout}");
    assert!(stdout.contains("(stale write rejected)"), "{stdout}");
    assert!(stdout.contains("result                 OK"), "{stdout}");
}

#[cfg(feature = "etcd")]
#[test]
fn processes_on_etcd() {
    let etcd = ha_testkit::EtcdServer::start().unwrap();
    run_demo(&format!(
        "high-availability.type: etcd\nhigh-availability.storageDir: PAYLOADS\n\
         high-availability.etcd.endpoints: {}\nhigh-availability.etcd.lease-ttl: 2 s\n",
        etcd.endpoint(0)
    ));
}

#[cfg(feature = "zookeeper")]
#[test]
fn processes_on_zookeeper() {
    let zk = ha_testkit::ZooKeeperServer::start().unwrap();
    run_demo(&format!(
        "high-availability.type: zookeeper\nhigh-availability.storageDir: PAYLOADS\n\
         high-availability.zookeeper.quorum: {}\nhigh-availability.zookeeper.client.session-timeout: 2 s\n",
        zk.connect_string()
    ));
}
