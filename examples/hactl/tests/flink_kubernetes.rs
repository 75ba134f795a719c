//! `hactl --flink` on Kubernetes, against the ConfigMaps real Flink 2.3 wrote
//! (`fixtures/flink/kubernetes-configmaps.json`, read from the API emulator after
//! `flink/FlinkHaWriter.java` ran with `fixtures/flink/kubernetes-config.yaml`, the
//! Kubernetes HA config of the Flink docs), loaded into ha-testkit's API emulator.
//! With the leader annotation's `renewTime` set to now the JobManager is "running";
//! as dumped (renewed long ago) its lease has expired.

#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used)]

mod flink_common;

use flink_common::{
    assert_jobs, assert_only_running_is_left, cleanup_yes, config, hactl, job, leaders, orphans, status, JobFiles,
    FINISHED, LEAKED, RUNNING,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

const NAMESPACE: &str = "ha-test";
const CLUSTER_CM: &str = "cluster1337-cluster-config-map";
const SESSION: &str = "d1402e79-c6d7-4d53-b673-94346c2c12bd";
const LEADER: &str = "control-plane.alpha.kubernetes.io/leader";

struct Cluster {
    _emulator: ha_testkit::KubeApiEmulator,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    api: Api<ConfigMap>,
}

/// Starts an emulator holding the fixture's ConfigMaps; with `live`, the leader lease
/// was just renewed.
async fn cluster(live: bool) -> Cluster {
    let emulator = ha_testkit::KubeApiEmulator::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig_yaml(NAMESPACE)).unwrap();
    let config = config(
        dir.path(),
        "kubernetes-config.yaml",
        "/tmp/pack-emu.kubeconfig",
        kubeconfig.to_str().unwrap(),
    );
    let kube_config = kube::Config::new(emulator.url().parse().unwrap());
    let api: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(kube_config).unwrap(), NAMESPACE);
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(flink_common::fixture("kubernetes-configmaps.json")).unwrap())
            .unwrap();
    for item in list["items"].as_array().unwrap() {
        let mut cm: ConfigMap = serde_json::from_value(item.clone()).unwrap();
        cm.metadata.resource_version = None;
        cm.metadata.uid = None;
        cm.metadata.creation_timestamp = None;
        if live {
            if let Some(record) = cm.metadata.annotations.as_mut().and_then(|a| a.get_mut(LEADER)) {
                let mut r: serde_json::Value = serde_json::from_str(record).unwrap();
                r["renewTime"] = k8s_openapi::jiff::Timestamp::now().to_string().into();
                *record = r.to_string();
            }
        }
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    Cluster {
        _emulator: emulator,
        _dir: dir,
        config,
        api,
    }
}

fn rpc(name: &str) -> String {
    format!("pekko.tcp://flink@10.0.0.7:6123/user/rpc/{name}")
}

const FILES: JobFiles<'static> = JobFiles {
    running: [
        "submittedExecutionPlan2410dafdc20b",
        "completedCheckpoint0e284404f6ee",
        "completedCheckpoint39edc0dc3a01",
    ],
    leaked: "completedCheckpoint4ecfd3711ac6",
    finished: ["submittedExecutionPlan32023ff063a0", "completedCheckpoint68ad8667bd1d"],
};

fn expected_leaders() -> Vec<(String, String, String)> {
    vec![
        ("dispatcher".into(), rpc("dispatcher_1"), SESSION.into()),
        (format!("job-{RUNNING}"), rpc("jobmanager_2"), SESSION.into()),
        ("resourcemanager".into(), rpc("resourcemanager_0"), SESSION.into()),
        ("restserver".into(), "http://10.0.0.7:8081".into(), SESSION.into()),
    ]
}

/// Blocking hactl runs off the runtime's threads (the emulator runs on them).
async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_flink_cluster_is_read_field_by_field_and_only_the_leaked_job_is_cleaned() {
    let c = cluster(true).await;
    let config = c.config.clone();
    let s = run(move || status(&config)).await;
    assert_eq!(s["store"], "kubernetes");
    assert_eq!(s["cluster_id"], "cluster1337");
    assert_eq!(s["leader_running"], true, "{s:#}");
    assert_eq!(s["holder"]["identity"], "2dc2a16e-0a34-4ade-92d7-9967483e1544");
    assert_eq!(s["holder"]["lease_duration"], "PT15S");
    assert_eq!(leaders(&s), expected_leaders());
    assert_jobs(&s, "file:/tmp/flink-ha/recovery/default", &FILES);
    let (running, finished) = (job(&s, RUNNING).clone(), job(&s, FINISHED).clone());
    // The finished job is the running leader's to clean up; the leaked job is not.
    assert_eq!(
        orphans(&s),
        vec![
            (format!("{CLUSTER_CM}/executionPlan-{FINISHED}"), true),
            (format!("cluster1337-{FINISHED}-config-map"), true),
            (format!("cluster1337-{LEAKED}-config-map"), false),
        ]
    );
    assert_eq!(s["errors"], serde_json::json!([]));
    let path = c.config.to_str().unwrap().to_string();
    let (code, table, err) = run(move || hactl(&["--flink", "--config", &path, "status"], "")).await;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("LEADER LOCK  running"), "{table}");
    // The table, for `--nocapture` readers.
    println!("{table}");
    // Flink's own lease timings, written out, are no ha-rs backend config (ha-rs wants
    // lease > renew deadline) but a valid Flink config: it loads.
    let text = std::fs::read_to_string(&c.config).unwrap()
        + "high-availability.kubernetes.leader-election.lease-duration: 15 s\n\
           high-availability.kubernetes.leader-election.renew-deadline: 15 s\n";
    std::fs::write(&c.config, text).unwrap();
    let config = c.config.clone();
    assert_eq!(run(move || status(&config)).await["jobs"], s["jobs"]);

    let path = c.config.to_str().unwrap().to_string();
    let (code, out, err) = run(move || cleanup_yes(&path, "cluster1337")).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 1 orphaned record(s)"), "{out}");
    assert!(c
        .api
        .get_opt(&format!("cluster1337-{LEAKED}-config-map"))
        .await
        .unwrap()
        .is_none());
    // The running leader's data is untouched.
    let config = c.config.clone();
    let after = run(move || status(&config)).await;
    assert_eq!(leaders(&after), expected_leaders());
    assert_eq!(*job(&after, RUNNING), running);
    assert_eq!(*job(&after, FINISHED), finished);
    assert_eq!(orphans(&after).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_lease_expired_leader_entries_are_orphans_too() {
    let c = cluster(false).await;
    let config = c.config.clone();
    let s = run(move || status(&config)).await;
    assert_eq!(s["leader_running"], false);
    assert_eq!(leaders(&s), expected_leaders());
    let mut expected = vec![
        (format!("{CLUSTER_CM}/executionPlan-{FINISHED}"), false),
        (format!("cluster1337-{FINISHED}-config-map"), false),
        (format!("cluster1337-{LEAKED}-config-map"), false),
    ];
    for (component, _, _) in expected_leaders() {
        expected.push((format!("{CLUSTER_CM}/org.apache.flink.k8s.leader.{component}"), false));
    }
    assert_eq!(orphans(&s), expected);

    let path = c.config.to_str().unwrap().to_string();
    let p = path.clone();
    let (code, out, _) = run(move || {
        hactl(
            &["--flink", "--config", &p, "cleanup", "--cluster-id", "cluster1337"],
            "no\n",
        )
    })
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("aborted: nothing deleted"), "{out}");
    let (code, out, err) = run(move || {
        hactl(
            &["--flink", "--config", &path, "cleanup", "--cluster-id", "cluster1337"],
            "cluster1337\n",
        )
    })
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 7 orphaned record(s)"), "{out}");

    let cm = c.api.get(CLUSTER_CM).await.unwrap();
    let keys: Vec<&String> = cm.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, vec![&format!("executionPlan-{RUNNING}")]);
    let config = c.config.clone();
    let after = run(move || status(&config)).await;
    assert_eq!(orphans(&after), vec![]);
    assert_only_running_is_left(&after, &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_is_reported_with_its_key() {
    let c = cluster(false).await;
    let name = format!("cluster1337-{RUNNING}-config-map");
    let mut cm = c.api.get(&name).await.unwrap();
    cm.data
        .as_mut()
        .unwrap()
        .insert("checkpointID-0000000000000000003".into(), "rO0ABXNyAAVib2d1cw==".into());
    c.api.replace(&name, &PostParams::default(), &cm).await.unwrap();
    let config = c.config.clone();
    let s = run(move || status(&config)).await;
    let errors = s["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{s:#}");
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{name}/checkpointID-0000000000000000003: truncated")),
        "{errors:?}"
    );
}
