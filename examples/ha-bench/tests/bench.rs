//! `ha-bench --quick` smoke test: the binary runs against the real servers it starts,
//! prints parseable JSON and reports every measurement on every backend and peer.
//! Speed is never asserted: the figures are for people, not for the test.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

/// Whether Flink's jars are where `ha-bench` looks (`scripts/fetch-flink.sh`).
fn flink_jars_present() -> bool {
    let dir = match std::env::var_os("HA_FLINK_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/flink"),
    };
    dir.join("lib/flink-dist-2.3.0.jar").exists()
}

/// With or without Flink's jars: with them the Flink peer is measured on ZooKeeper and
/// the emulator, without them it is skipped with a message.
#[test]
fn quick_run_reports_every_measurement() {
    let out = Command::new(env!("CARGO_BIN_EXE_ha-bench"))
        .args([
            "--quick",
            "--handover-runs",
            "2",
            "--crash-runs",
            "1",
            "--write-ops",
            "5",
        ])
        .args([
            "--counter-ops",
            "32",
            "--components",
            "200",
            "--idle-periods",
            "1",
            "--budget-secs",
            "10",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ha-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let rows: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    let errors: Vec<&Value> = rows.iter().filter(|r| r.get("error").is_some()).collect();
    assert!(errors.is_empty(), "measurements failed: {errors:?}\nstderr:\n{stderr}");

    let mut seen = BTreeSet::new();
    for r in &rows {
        for field in ["backend", "name", "unit"] {
            assert!(r[field].is_string(), "{field} missing in {r}");
        }
        assert!(r["n"].as_u64().unwrap() >= 1, "{r}");
        assert!(r["median"].is_number() && r["p90"].is_number(), "{r}");
        seen.insert((
            r["backend"].as_str().unwrap().to_string(),
            r["name"].as_str().unwrap().to_string(),
        ));
    }

    let every_backend = [
        "graceful_handover_granted",
        "graceful_handover",
        "crash_handover_granted",
        "crash_handover",
        "crash_handover_minus_ttl",
        "fenced_pointer_write",
        "fenced_pointer_add",
        "fenced_leader_info_write",
        "counter_increments",
        "time_to_grant_all",
        "memory_per_component",
    ];
    let remote = ["raw_write", "raw_cas_increments", "idle_requests_per_renew_period"];
    let mut expected = Vec::new();
    for b in ["embedded", "zookeeper", "etcd", "kubernetes"] {
        expected.extend(every_backend.iter().map(|n| (b, *n)));
        if b != "embedded" {
            expected.extend(remote.iter().map(|n| (b, *n)));
        }
    }
    for b in ["zookeeper", "etcd", "kubernetes"] {
        // Separate contender and retriever processes; failover with jobs.
        expected.extend(
            [
                "graceful_handover_retrieved",
                "crash_handover_retrieved",
                "failover_granted",
                "failover_all_recovered",
            ]
            .map(|n| (b, n)),
        );
    }
    let mut peers = vec![
        "curator-leaderlatch",
        "curator-leaderlatch-publish",
        "etcd-election-api",
        "etcd-election-api-proclaim",
    ];
    // etcd's election API runs as contender and observer processes too, also in the
    // variant that proclaims a fresh term record once it won.
    for peer in ["etcd-election-api", "etcd-election-api-proclaim"] {
        expected.extend(["graceful_handover_retrieved", "crash_handover_retrieved"].map(|n| (peer, n)));
        assert!(
            rows.iter()
                .any(|r| r["backend"] == "etcd" && r["name"] == "graceful_handover_vs_peer" && r["peer"] == peer),
            "no ratio to {peer} in:\n{stdout}"
        );
    }
    expected.extend(["graceful_retrieved_vs_peer", "crash_retrieved_vs_peer"].map(|n| ("etcd", n)));
    if flink_jars_present() {
        peers.extend(["flink-ha-zookeeper", "flink-ha-kubernetes"]);
        for (b, peer) in [
            ("zookeeper", "flink-ha-zookeeper"),
            ("kubernetes", "flink-ha-kubernetes"),
        ] {
            expected.extend(["graceful_handover_retrieved", "crash_handover_retrieved"].map(|n| (peer, n)));
            assert!(
                rows.iter()
                    .any(|r| r["backend"] == b && r["name"] == "graceful_retrieved_vs_peer" && r["peer"] == peer),
                "no ratio to {peer} in:\n{stdout}"
            );
        }
    } else {
        assert!(stderr.contains("Flink peer skipped"), "no skip message:\n{stderr}");
    }
    for peer in peers {
        expected.extend(
            [
                "graceful_handover_granted",
                "graceful_handover",
                "crash_handover_granted",
                "crash_handover",
                "crash_handover_minus_ttl",
            ]
            .map(|n| (peer, n)),
        );
    }
    for b in ["zookeeper", "etcd"] {
        expected.extend(
            [
                "graceful_granted_vs_peer",
                "graceful_handover_vs_peer",
                "crash_granted_vs_peer",
                "crash_handover_vs_peer",
            ]
            .map(|n| (b, n)),
        );
    }
    for (backend, name) in expected {
        assert!(
            seen.contains(&(backend.to_string(), name.to_string())),
            "no {name} for {backend} in:\n{stdout}"
        );
    }

    // Ratios are present where a comparison is made.
    for r in &rows {
        let name = r["name"].as_str().unwrap();
        let compared = name.ends_with("_vs_peer")
            || (r["backend"] != "embedded" && (name == "fenced_pointer_write" || name == "counter_increments"));
        if compared {
            assert!(r["ratio"].is_number() && r["ratio_of"].is_string(), "no ratio in {r}");
        }
    }
    // The closing table follows the JSON.
    assert!(stdout.contains("measurement"), "{stdout}");
}
