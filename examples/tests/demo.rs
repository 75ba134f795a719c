//! Runs the `ha-demo` binary end to end on the embedded default and checks it reports
//! a recovery from the last acknowledged checkpoint.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn demo_recovers_from_last_acknowledged_checkpoint() {
    let out = Command::new(env!("CARGO_BIN_EXE_ha-demo"))
        .args(["--before-crash", "4", "--after-crash", "3", "--interval-ms", "50"])
        .env_remove("HA_HIGH_AVAILABILITY_TYPE")
        .output()
        .expect("run ha-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ha-demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CRASHED"), "{stdout}");
    assert!(stdout.contains("OK: no acknowledged checkpoint lost"), "{stdout}");
}

#[test]
fn demo_reports_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.yaml");
    std::fs::write(&path, "high-availability.type: zookeper\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_ha-demo"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run ha-demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`high-availability.type`") && stderr.contains("valid values"),
        "{stderr}"
    );
}
