//! Runs the `ha-demo` binary end to end on the embedded default and checks it reports
//! a recovery from the last acknowledged checkpoint.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

#[test]
fn demo_recovers_from_last_acknowledged_checkpoint() {
    let out = Command::new(common::example("ha-demo"))
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
    let out = Command::new(common::example("ha-demo"))
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

#[test]
fn demo_serves_prometheus_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(common::example("ha-demo"))
        .args([
            "--before-crash",
            "3",
            "--after-crash",
            "2",
            "--interval-ms",
            "50",
            "--linger-ms",
            "3000",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut body = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
            // After the crash hand-over both grants have been counted.
            if body.contains("ha_leadership_transitions_total{group=\"cluster\",event=\"granted\"} 2") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        body.contains("ha_leadership_transitions_total{group=\"cluster\",event=\"granted\"} 2"),
        "{body}"
    );
    assert!(body.contains("ha_leader{group=\"cluster\"} 1"), "{body}");
    assert!(body.contains("ha_store_write_seconds"), "{body}");
}

#[cfg(not(feature = "etcd"))]
#[test]
fn a_backend_left_out_names_its_feature() {
    let out = Command::new(common::example("ha-demo"))
        .env("HA_HIGH_AVAILABILITY_TYPE", "etcd")
        .output()
        .expect("run ha-demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cargo run --features etcd --example"), "{stderr}");
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn demo_serves_leader_health_next_to_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // One contender process on the embedded backend: it leads.
    let mut child = Command::new(common::example("ha-demo"))
        .args(["--child", "solo", "--job", "health-job"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env_remove("HA_HIGH_AVAILABILITY_TYPE")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut answer = String::new();
    while std::time::Instant::now() < deadline {
        answer = get(port, "/healthz").unwrap_or_default();
        if answer.contains("solo: leading") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = get(port, "/metrics").unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("solo: leading (epoch"), "{answer}");
    assert!(metrics.contains("ha_leader{group=\"cluster\"} 1"), "{metrics}");
}
