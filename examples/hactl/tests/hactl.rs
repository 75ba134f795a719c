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
    assert!(
        out.contains("dispatcher") && out.contains("(no confirmed leader)"),
        "{out}"
    );
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
