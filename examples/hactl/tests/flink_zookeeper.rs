//! `hactl --flink` on ZooKeeper, against the znodes real Flink 2.3 wrote
//! (`fixtures/flink/zookeeper-znodes.jsonl`, dumped by `flink/FlinkHaWriter.java` from
//! its run with `fixtures/flink/zookeeper-config.yaml`, the ZooKeeper HA config of the
//! Flink docs), loaded into a real ZooKeeper. With the ephemeral znodes (leader
//! latch, `connection_info`, locks) made by a live session, the JobManager is
//! "running"; without them it is gone, as after a crash.

#![cfg(feature = "zookeeper")]
#![allow(clippy::unwrap_used)]

mod flink_common;

use base64::Engine;
use flink_common::{
    assert_jobs, assert_only_running_is_left, cleanup_yes, config, hactl, job, leaders, orphans, status, JobFiles,
    FINISHED, LEAKED, RUNNING,
};
use zookeeper_client as zk;

const BASE: &str = "/flink/cluster_one";
const SESSION: &str = "d8713fea-d925-4db4-aa07-3bd059ae9574";

/// Creates every znode of the fixture; ephemeral ones only with `live`, owned by the
/// returned client's session.
async fn load(connect: &str, live: bool) -> zk::Client {
    let client = zk::Client::connect(connect).await.unwrap();
    let text = std::fs::read_to_string(flink_common::fixture("zookeeper-znodes.jsonl")).unwrap();
    for line in text.lines() {
        let node: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = node["path"].as_str().unwrap();
        if path == "/" {
            continue;
        }
        let ephemeral = node["ephemeral"].as_bool().unwrap();
        if ephemeral && !live {
            continue;
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(node["data"].as_str().unwrap())
            .unwrap();
        let mode = if ephemeral {
            zk::CreateMode::Ephemeral
        } else {
            zk::CreateMode::Persistent
        };
        client
            .create(path, &data, &mode.with_acls(zk::Acls::anyone_all()))
            .await
            .unwrap();
    }
    client
}

fn rpc(name: &str) -> String {
    format!("pekko.tcp://flink@10.0.0.7:6123/user/rpc/{name}")
}

const FILES: JobFiles<'static> = JobFiles {
    running: [
        "submittedExecutionPlan8de0d24400cd",
        "completedCheckpointb0a45fdc7e3b",
        "completedCheckpoint872092a79428",
    ],
    leaked: "completedCheckpointe6230d9b7230",
    finished: ["submittedExecutionPlan98bf7d199801", "completedCheckpoint3c1521c7ede2"],
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_flink_cluster_is_read_field_by_field_and_nothing_is_cleaned() {
    let server = ha_testkit::ZooKeeperServer::start().unwrap();
    let _session = load(&server.connect_string(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "zookeeper-config.yaml",
        "127.0.0.1:21810",
        &server.connect_string(),
    );

    let s = status(&config);
    assert_eq!(s["store"], "zookeeper");
    assert_eq!(s["cluster_id"], "cluster_one");
    assert_eq!(s["leader_running"], true);
    assert!(
        s["holder"]["identity"]
            .as_str()
            .unwrap()
            .starts_with("_c_b2af8e1b-0bab-4cde-81ae-3eb66537f59c-latch-0000000000"),
        "{s:#}"
    );
    assert_eq!(
        leaders(&s),
        vec![
            ("dispatcher".into(), rpc("dispatcher_1"), SESSION.into()),
            (format!("job-{RUNNING}"), rpc("jobmanager_2"), SESSION.into()),
            ("resource_manager".into(), rpc("resourcemanager_0"), SESSION.into()),
            ("rest_server".into(), "http://10.0.0.7:8081".into(), SESSION.into()),
        ]
    );
    assert_jobs(&s, "file:/tmp/flink-ha/recovery/cluster_one", &FILES);
    // The finished job is the running leader's to clean up, and the leaked job's
    // checkpoint is still locked by the live session: shown, kept.
    assert_eq!(
        orphans(&s),
        vec![
            (format!("{BASE}/execution-plans/{FINISHED}"), true),
            (format!("{BASE}/jobs/{FINISHED}"), true),
            (format!("{BASE}/jobs/{LEAKED}"), true),
        ]
    );
    assert_eq!(s["errors"], serde_json::json!([]));
    // Flink's `creator` ACL (with SASL) is no ha-rs backend config (ha-rs wants digest
    // credentials for it) but a valid Flink config: it loads.
    let text = std::fs::read_to_string(&config).unwrap() + "high-availability.zookeeper.client.acl: creator\n";
    std::fs::write(&config, text).unwrap();
    assert_eq!(status(&config)["jobs"], s["jobs"]);

    let path = config.to_str().unwrap();
    let (code, out, err) = cleanup_yes(path, "/cluster_one");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to clean up"), "{out}");
    assert_eq!(status(&config)["leaders"], s["leaders"]);
    assert_eq!(status(&config)["jobs"], s["jobs"]);

    let (code, out, _) = hactl(&["--flink", "--config", path, "status"], "");
    assert_eq!(code, 0);
    // The table, for `--nocapture` readers.
    println!("{out}");
    assert!(out.contains("LEADER LOCK  running"), "{out}");
    assert!(
        out.contains(&format!(
            "checkpoint 3      {}",
            "file:/tmp/flink-ha/recovery/cluster_one/completedCheckpoint872092a79428"
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_jobmanager_is_gone_its_orphans_are_shown_and_cleaned_up() {
    let server = ha_testkit::ZooKeeperServer::start().unwrap();
    let session = load(&server.connect_string(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "zookeeper-config.yaml",
        "127.0.0.1:21810",
        &server.connect_string(),
    );

    let s = status(&config);
    assert_eq!(s["leader_running"], false);
    assert!(s["holder"].is_null());
    // The components' nodes are left, without leader information.
    assert_eq!(
        leaders(&s),
        [
            "dispatcher",
            &format!("job-{RUNNING}"),
            "resource_manager",
            "rest_server"
        ]
        .iter()
        .map(|c| (c.to_string(), String::new(), String::new()))
        .collect::<Vec<_>>()
    );
    let expected: Vec<(String, bool)> = [
        "leader/dispatcher".to_string(),
        format!("leader/job-{RUNNING}"),
        "leader/resource_manager".to_string(),
        "leader/rest_server".to_string(),
        format!("execution-plans/{FINISHED}"),
        format!("jobs/{FINISHED}"),
        format!("jobs/{LEAKED}"),
    ]
    .iter()
    .map(|k| (format!("{BASE}/{k}"), false))
    .collect();
    assert_eq!(orphans(&s), expected);

    let path = config.to_str().unwrap();
    // The same confirmation as `hactl cleanup`: an explicit cluster-id, typed again.
    let (code, _, err) = hactl(&["--flink", "--config", path, "cleanup", "--yes"], "");
    assert_eq!(code, 2);
    assert!(err.contains("--cluster-id"), "{err}");
    let (code, out, _) = hactl(
        &["--flink", "--config", path, "cleanup", "--cluster-id", "/cluster_one"],
        "wrong\n",
    );
    assert_eq!(code, 0);
    assert!(out.contains("aborted: nothing deleted"), "{out}");
    assert_eq!(orphans(&status(&config)).len(), 7);
    let (code, out, err) = hactl(
        &["--flink", "--config", path, "cleanup", "--cluster-id", "/cluster_one"],
        "cluster_one\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 7 orphaned record(s)"), "{out}");

    let after = status(&config);
    assert_eq!(orphans(&after), vec![]);
    assert_eq!(leaders(&after), vec![]);
    // The running job's records are untouched.
    assert_only_running_is_left(&after, &s);
    assert!(session
        .check_stat(&format!("{BASE}/jobs/{LEAKED}"))
        .await
        .unwrap()
        .is_none());
    assert!(session
        .check_stat(&format!("{BASE}/leader/latch"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_reported_with_its_key() {
    let server = ha_testkit::ZooKeeperServer::start().unwrap();
    let session = load(&server.connect_string(), false).await;
    let key = format!("{BASE}/jobs/{RUNNING}/checkpoints/0000000000000000003");
    session
        .set_data(&key, b"\xac\xed\x00\x05sr\x00\x05bogus", None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "zookeeper-config.yaml",
        "127.0.0.1:21810",
        &server.connect_string(),
    );
    let s = status(&config);
    let errors = s["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{s:#}");
    assert!(
        errors[0].as_str().unwrap().starts_with(&format!("{key}: truncated")),
        "{errors:?}"
    );
    let ids: Vec<u64> = checkpoints_with_ids(job(&s, RUNNING));
    assert_eq!(ids, vec![2, 3]);
}

fn checkpoints_with_ids(job: &serde_json::Value) -> Vec<u64> {
    job["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}
