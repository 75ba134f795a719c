//! Secret hygiene: digest credentials never appear in `Debug` output, in errors, or in
//! any `tracing` output at TRACE level (all crates, zookeeper-client included), neither
//! in a successful run nor when the credentials are wrong.
//!
//! Current-thread runtimes: the log capture is the test thread's subscriber, and every
//! task (the client's connection task too) runs on that thread.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, Error, HaConfig, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP};
use ha_testkit::LogCapture;
use ha_zookeeper::{AclMode, TlsFiles, ZooKeeperBackend, ZooKeeperConfig};

const USER: &str = "ha-sec-user";
const PASSWORD: &str = "Zk-digest-pw-5b0d1e";
const WRONG_PASSWORD: &str = "Wrong-digest-pw-77aa";

fn digest(password: &str) -> String {
    format!("{USER}:{password}")
}

fn config(password: &str) -> ZooKeeperConfig {
    let mut c = common::config(&common::shared_server().connect_string(), common::SESSION_TIMEOUT);
    c.acl = AclMode::Creator;
    c.digest_auth = Some(digest(password));
    c.root = "/ha-secrets".into();
    c
}

#[test]
fn debug_of_configs_hides_credentials() {
    let mut c = ZooKeeperConfig::new("127.0.0.1:2181");
    c.digest_auth = Some(digest(PASSWORD));
    c.tls = Some(TlsFiles {
        ca_cert: Some("/etc/ha/ca.pem".into()),
        client_cert: Some("/etc/ha/client.pem".into()),
        client_key: Some("/etc/ha/client.key".into()),
    });
    let shown = format!("{c:?} {c:#?}");
    assert!(!shown.contains(PASSWORD) && !shown.contains(USER), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains("/etc/ha/ca.pem"),
        "{shown}"
    );

    // The flat config and the section view, with every secret-bearing key of every
    // backend and of the S3 storage set.
    let secrets = [
        (
            "high-availability.zookeeper.client.digest-auth",
            "zk-user:zk-pw-secret-1",
        ),
        ("high-availability.etcd.password", "etcd-pw-secret-2"),
        ("high-availability.storage.aws_secret_access_key", "s3-secret-key-3"),
        ("high-availability.storage.aws_session_token", "s3-session-token-4"),
        ("high-availability.storage.aws_access_key_id", "AKIA-secret-5"),
    ];
    let mut entries = BTreeMap::from([
        ("high-availability.type".to_string(), "zookeeper".to_string()),
        ("high-availability.storageDir".to_string(), "s3://bucket/ha".to_string()),
        (
            "high-availability.zookeeper.quorum".to_string(),
            "127.0.0.1:2181".to_string(),
        ),
        ("high-availability.etcd.username".to_string(), "etcd-user".to_string()),
    ]);
    for (k, v) in secrets {
        entries.insert(k.to_string(), v.to_string());
    }
    let ha = HaConfig::from_entries(entries).unwrap();
    let zk = ZooKeeperConfig::from_ha_config(&ha).unwrap();
    let shown = format!("{ha:?} {ha:#?} {:?} {zk:?}", ha.backend_options());
    for (key, secret) in secrets {
        assert!(!shown.contains(secret), "{key}: {shown}");
    }
    assert!(shown.contains("127.0.0.1:2181"), "{shown}");
}

/// A full run at TRACE: election, leader information, a job graph, the counter,
/// cleanup. The capture must have seen the client's own logs, and no credential.
#[tokio::test]
async fn successful_run_logs_no_credentials() {
    let capture = LogCapture::new();
    let _guard = capture.install();
    let cluster = ClusterId::random("seclog");
    let backend = ZooKeeperBackend::connect(&cluster.clone(), &config(PASSWORD))
        .await
        .unwrap();
    assert!(!format!("{backend:?}").contains(PASSWORD));
    let storage = StateStorage::open(&format!("memory://{cluster}"), &cluster, &Default::default()).unwrap();
    let ha = HaServices::new(Arc::new(backend), storage, 1);
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    e.confirm(&g, "addr").await.unwrap();
    let job = JobId::random();
    ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(
            &g.fence,
            &JobGraph {
                job_id: job.clone(),
                data: Bytes::from_static(b"graph"),
            },
        )
        .await
        .unwrap();
    ha.checkpoint_id_counter(&job)
        .await
        .unwrap()
        .get_and_increment(&g.fence)
        .await
        .unwrap();
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    let text = capture.text();
    assert!(
        text.contains("zookeeper_client") && text.contains("ZooKeeper session established"),
        "the capture did not see the client's logs:\n{text}"
    );
    capture.assert_absent(&[PASSWORD, &digest(PASSWORD)]);
}

/// The HA user name with a wrong password: the session is made (digest auth only
/// names an identity), but every access to the owner's znodes is refused. Neither the
/// errors nor the logs show either password.
#[tokio::test]
async fn wrong_password_errors_and_logs_carry_no_credentials() {
    let capture = LogCapture::new();
    let _guard = capture.install();
    let cluster = ClusterId::random("secwrong");
    let owner = ZooKeeperBackend::connect(&cluster.clone(), &config(PASSWORD))
        .await
        .unwrap();
    let storage = || StateStorage::open(&format!("memory://{cluster}"), &cluster, &Default::default()).unwrap();
    let ha = HaServices::new(Arc::new(owner), storage(), 1);
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    let job = JobId::random();
    ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(
            &g.fence,
            &JobGraph {
                job_id: job.clone(),
                data: Bytes::from_static(b"graph"),
            },
        )
        .await
        .unwrap();

    let wrong = ZooKeeperBackend::connect(&cluster.clone(), &config(WRONG_PASSWORD))
        .await
        .unwrap();
    let intruder = HaServices::new(Arc::new(wrong), storage(), 1);
    let mut errors = Vec::new();
    match intruder.job_graph_store().await {
        Ok(store) => match store.recover_job_graph(&job).await {
            Err(e) => errors.push(e),
            Ok(r) => panic!("read with the wrong password succeeded: {r:?}"),
        },
        Err(e) => errors.push(e),
    }
    match intruder.close_and_cleanup_all_data().await {
        Err(e) => errors.push(e),
        Ok(()) => panic!("cleanup with the wrong password succeeded"),
    }
    for err in &errors {
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PASSWORD) && !shown.contains(WRONG_PASSWORD), "{shown}");
    }
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    assert!(capture.lines() > 20);
    capture.assert_absent(&[PASSWORD, WRONG_PASSWORD]);
}
