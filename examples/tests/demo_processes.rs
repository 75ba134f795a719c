//! `ha-demo --processes` on real servers: SIGKILL hand-over and a SIGSTOPped leader
//! whose writes must be rejected after it resumes.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use ha_testkit::{EtcdServer, ZooKeeperServer};

fn run_demo(config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ha.yaml");
    // Setting up the cluster creates its payload storage; ha-rs never creates a
    // missing storage root itself (it may be a volume that is not mounted).
    std::fs::create_dir(dir.path().join("payloads")).unwrap();
    let config = config.replace("PAYLOADS", &format!("file://{}/payloads", dir.path().display()));
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ha-demo"))
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

#[test]
fn processes_on_etcd() {
    let etcd = EtcdServer::start().unwrap();
    run_demo(&format!(
        "high-availability.type: etcd\nhigh-availability.storageDir: PAYLOADS\n\
         high-availability.etcd.endpoints: {}\nhigh-availability.etcd.lease-ttl: 2 s\n",
        etcd.endpoint(0)
    ));
}

#[test]
fn processes_on_zookeeper() {
    let zk = ZooKeeperServer::start().unwrap();
    run_demo(&format!(
        "high-availability.type: zookeeper\nhigh-availability.storageDir: PAYLOADS\n\
         high-availability.zookeeper.quorum: {}\nhigh-availability.zookeeper.client.session-timeout: 2 s\n",
        zk.connect_string()
    ));
}
