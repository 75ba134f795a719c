//! `hactl` command-line behaviour that needs no remote backend.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn hactl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(args)
        .env_remove("HA_HIGH_AVAILABILITY_TYPE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_of_an_empty_cluster() {
    let (code, out, err) = hactl(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cluster default (embedded)"), "{out}");
    assert!(out.contains("LEADERS\n  (none)"), "no component has a record: {out}");
    assert!(out.contains("PARTICIPANTS of group cluster\n  (none)"), "{out}");
    let (code, out, _) = hactl(&["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cluster_id"], "default");
}

#[test]
fn cleanup_needs_an_explicit_cluster_id_and_confirmation() {
    let (code, _, err) = hactl(&["cleanup", "--yes"]);
    assert_eq!(code, 2);
    assert!(err.contains("--cluster-id"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["cleanup", "--cluster-id", "scratch"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("aborted: nothing deleted"));
}

#[test]
fn bad_keys_and_config_are_explained() {
    let (code, _, err) = hactl(&["inspect", "nonsense"]);
    assert_eq!(code, 2);
    assert!(err.contains("keys look like leader/<component>"), "{err}");
    let (code, _, err) = hactl(&["status", "--cluster-id", "Bad_Id"]);
    assert_eq!(code, 2);
    assert!(err.contains("`high-availability.cluster-id`"), "{err}");
}

#[test]
fn version_and_completions() {
    let (code, out, _) = hactl(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("hactl {}", env!("CARGO_PKG_VERSION")));
    let (code, out, err) = hactl(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_hactl()") && out.contains("checkpoints"), "{out}");
    let (code, out, _) = hactl(&["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("#compdef hactl"), "{out}");
}

#[cfg(not(feature = "etcd"))]
#[test]
fn a_backend_left_out_names_its_feature() {
    let out = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .arg("status")
        .env("HA_HIGH_AVAILABILITY_TYPE", "etcd")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("built without the cargo feature `etcd`") && err.contains("--features etcd"),
        "{err}"
    );
}

#[test]
fn status_lists_dirty_results_and_results_lists_them_all() {
    let (code, out, err) = hactl(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("DIRTY JOB RESULTS (cleanup unfinished)\n  (none)"),
        "{out}"
    );
    let (code, out, err) = hactl(&["results", "--dirty"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("JOB ") && out.contains("(none)"), "{out}");
    let (code, out, _) = hactl(&["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dirty_results"], serde_json::json!([]));
}

#[test]
fn a_flink_config_without_ha_loads_with_its_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flink-conf.yaml");
    std::fs::write(
        &path,
        "jobmanager.rpc.address: localhost\nhigh-availability.type: NONE\nhigh-availability.jobmanager.port: 6123\n",
    )
    .unwrap();
    let (code, out, err) = hactl(&["--config", path.to_str().unwrap(), "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(embedded)"), "{out}");
    assert!(
        err.contains("warning: `high-availability.jobmanager.port` is accepted but has no effect"),
        "{err}"
    );
}

#[test]
fn flink_mode_offers_status_and_cleanup_on_zookeeper_or_kubernetes() {
    let (code, _, err) = hactl(&["--flink", "status"]);
    assert_eq!(code, 2);
    assert!(err.contains("--flink needs the Flink configuration file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "high-availability.type: NONE\n").unwrap();
    let path = path.to_str().unwrap();
    let (code, _, err) = hactl(&["--flink", "--config", path, "leaders"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--flink supports `status` and `cleanup`, not `leaders`"),
        "{err}"
    );
    let (code, _, err) = hactl(&["--flink", "--config", path, "status"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`high-availability.type`") && err.contains("not `embedded`"),
        "{err}"
    );
}

#[test]
fn leaders_shows_the_contenders_of_each_group() {
    let (code, out, err) = hactl(&["leaders", "--group", "cluster", "--group", "jobs-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PARTICIPANTS of group cluster\n  (none)"), "{out}");
    assert!(out.contains("PARTICIPANTS of group jobs-a\n  (none)"), "{out}");
    let (code, out, _) = hactl(&["leaders", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["participants"][0]["group"], "cluster");
    assert_eq!(v["participants"][0]["participants"], serde_json::json!([]));
    let (code, _, err) = hactl(&["leaders", "--group", "bad/group"]);
    assert_eq!(code, 2);
    assert!(err.contains("bad/group"), "a bad group is named: {err}");
}
